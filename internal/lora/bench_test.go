package lora

import (
	"fmt"
	"testing"
)

// klein4BTargets is the 4B model's target list (5 double and 20 single
// blocks, width D = 3072, MLP F = 9216, text width 7680).
func klein4BTargets(b *testing.B) *Targets {
	const D, F = 3072, 9216
	list := []Target{
		{"time_guidance_embed.timestep_embedder.linear_1", 256, D}, {"time_guidance_embed.timestep_embedder.linear_2", D, D},
		{"double_stream_modulation_img.linear", D, 6 * D}, {"double_stream_modulation_txt.linear", D, 6 * D},
		{"single_stream_modulation.linear", D, 3 * D}, {"x_embedder", 128, D}, {"context_embedder", 7680, D},
	}
	for n := 0; n < 5; n++ {
		for _, m := range []string{"to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"} {
			list = append(list, Target{fmt.Sprintf("transformer_blocks.%d.attn.%s", n, m), D, D})
		}
		for _, ff := range []string{"ff", "ff_context"} {
			list = append(list, Target{fmt.Sprintf("transformer_blocks.%d.%s.linear_in", n, ff), D, 2 * F},
				Target{fmt.Sprintf("transformer_blocks.%d.%s.linear_out", n, ff), F, D})
		}
	}
	for n := 0; n < 20; n++ {
		list = append(list, Target{fmt.Sprintf("single_transformer_blocks.%d.attn.to_qkv_mlp_proj", n), D, 3*D + 2*F},
			Target{fmt.Sprintf("single_transformer_blocks.%d.attn.to_out", n), D + F, D})
	}
	list = append(list, Target{"norm_out.linear", D, 2 * D}, Target{"proj_out", D, 128})
	t, err := NewTargets(list)
	if err != nil {
		b.Fatal(err)
	}
	return t
}

// BenchmarkStackKlein4B: stacking a rank-32 LoRA at every one of the 4B
// model's 109 targets into graph inputs, the CPU work a LoRA set costs once
// before its inputs are kept (the pipeline then writes them into the
// graph's tensors).
func BenchmarkStackKlein4B(b *testing.B) {
	t := klein4BTargets(b)
	const r = 32
	ad := &Adapter{}
	values := 0
	for i := 0; i < t.Len(); i++ {
		tg := t.At(i)
		ad.Factors = append(ad.Factors, Factor{Target: i, Rank: r, A: make([]float32, r*tg.In), B: make([]float32, tg.Out*r), Scale: 1})
		values += r * (tg.In + tg.Out)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		Stack(t, []Weighted{{ad, 1}})
	}
	b.ReportMetric(float64(values)/1e6, "Mvalues")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(values), "ns/value")
}
