package lora

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/x448/float16"
)

// st is a tensor to write into a test safetensors file.
type st struct {
	dtype DType
	shape []int
	vals  []float32
}

// encode writes a safetensors file: tensors in name order, contiguous.
func encode(t testing.TB, tensors map[string]st, meta map[string]string) []byte {
	t.Helper()
	header := map[string]any{}
	if meta != nil {
		header["__metadata__"] = meta
	}
	var body []byte
	names := make([]string, 0, len(tensors))
	for n := range tensors {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		s := tensors[n]
		begin := len(body)
		for _, v := range s.vals {
			switch s.dtype {
			case F32:
				body = binary.LittleEndian.AppendUint32(body, math.Float32bits(v))
			case F16:
				body = binary.LittleEndian.AppendUint16(body, float16.Fromfloat32(v).Bits())
			case BF16:
				body = binary.LittleEndian.AppendUint16(body, uint16(math.Float32bits(v)>>16))
			}
		}
		header[n] = map[string]any{"dtype": s.dtype, "shape": s.shape, "data_offsets": []int{begin, len(body)}}
	}
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
	return append(append(out, h...), body...)
}

// rawFile assembles a file from a literal header and body.
func rawFile(header string, body []byte) []byte {
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	return append(append(out, header...), body...)
}

func randVals(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// tinyTargets is the tiny model's target list (models/tiny, 2 double and 2
// single blocks, width 32), as the transformer graph declares it.
func tinyTargets(t testing.TB) *Targets {
	t.Helper()
	list := []Target{
		{"time_guidance_embed.timestep_embedder.linear_1", 256, 32},
		{"time_guidance_embed.timestep_embedder.linear_2", 32, 32},
		{"double_stream_modulation_img.linear", 32, 192},
		{"double_stream_modulation_txt.linear", 32, 192},
		{"single_stream_modulation.linear", 32, 96},
		{"x_embedder", 128, 32},
		{"context_embedder", 24, 32},
	}
	for b := 0; b < 2; b++ {
		p := "transformer_blocks." + string(rune('0'+b)) + "."
		for _, m := range []string{"attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "attn.add_q_proj",
			"attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out"} {
			list = append(list, Target{p + m, 32, 32})
		}
		list = append(list, Target{p + "ff.linear_in", 32, 192}, Target{p + "ff.linear_out", 96, 32},
			Target{p + "ff_context.linear_in", 32, 192}, Target{p + "ff_context.linear_out", 96, 32})
	}
	for b := 0; b < 2; b++ {
		p := "single_transformer_blocks." + string(rune('0'+b)) + "."
		list = append(list, Target{p + "attn.to_qkv_mlp_proj", 32, 288}, Target{p + "attn.to_out", 128, 32})
	}
	list = append(list, Target{"norm_out.linear", 32, 64}, Target{"proj_out", 32, 128})
	tg, err := NewTargets(list)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}
