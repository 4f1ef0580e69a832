package pipeline

import (
	"encoding/json"
	"math"
	"testing"
)

// klein4B is the real model's configuration (docs/model.md §1).
func klein4B(t *testing.T) *Architecture {
	var a Architecture
	err := json.Unmarshal([]byte(`{
	  "transformer": {"in_channels": 128, "num_layers": 5, "num_single_layers": 20, "attention_head_dim": 128,
	                  "num_attention_heads": 24, "joint_attention_dim": 7680, "mlp_ratio": 3.0},
	  "text_encoder": {"hidden_size": 2560, "intermediate_size": 9728, "num_attention_heads": 32,
	                   "num_key_value_heads": 8, "head_dim": 128},
	  "vae": {"block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "latent_channels": 32}}`), &a)
	if err != nil {
		t.Fatal(err)
	}
	return &a
}

// The golden figures of docs/model.md §9, to the digits given there.
func TestFLOPsMatchSpec(t *testing.T) {
	a := klein4B(t)
	for _, tc := range []struct {
		name      string
		got, want float64
		tol       float64
	}{
		{"transformer 1024x768", a.TransformerFLOPs(3072, 512) / 1e12, 25.96, 0.005},
		{"text encoder 27 layers", a.TextEncoderFLOPs(27, 512) / 1e12, 2.91, 0.005},
		{"vae decoder 1024x768", a.VAEDecoderFLOPs(1024, 768) / 1e12, 7.75, 0.005},
	} {
		if math.Abs(tc.got-tc.want) > tc.tol {
			t.Errorf("%s: %.4f TFLOP, spec says %.2f", tc.name, tc.got, tc.want)
		}
	}
	// 28 CFG steps (the endpoint's default): 56 forwards, 1.45 PFLOP, the
	// transformer work of one 1024x768 request that GPU timings are set
	// against (docs/model.md §9).
	if got := 56 * a.TransformerFLOPs(3072, 512) / 1e15; math.Abs(got-1.454) > 0.002 {
		t.Errorf("28 CFG steps: %.4f PFLOP", got)
	}
}

// TestLoRAFLOPs: the rank-32 and rank-1 costs on the 4B model at 1024x768
// (3072 image and 512 text tokens), against a count by hand: per token, a
// double block's pairs have 10·D+3·F = 58,368 in+out units, a single
// block's 6·D+3·F = 46,080 (D = 3072, F = 9216).
func TestLoRAFLOPs(t *testing.T) {
	a := klein4B(t)
	a.Transformer.TimestepChannels = 256
	perToken := 5*58368.0 + 20*46080.0
	io := 3072*(128+3072) + 512*(7680+3072) + 3072*(3072+128.0)
	perSample := 256 + 24*3072.0 // (256+D) + 2D + 7D + 7D + 4D + 3D
	want := 2 * 32 * (3584*perToken + io + perSample)
	if got := a.LoRAFLOPs(3072, 512, 32); math.Abs(got-want) > 1e-9*want {
		t.Fatalf("rank 32: %.10g FLOPs, by hand %.10g", got, want)
	}
	full := a.TransformerFLOPs(3072, 512)
	share32, share1 := a.LoRAFLOPs(3072, 512, 32)/full, a.LoRAFLOPs(3072, 512, 1)/full
	t.Logf("1024x768 forward: %.2f TFLOP; rank-32 LoRA +%.3f%% (%.3f TFLOP); rank-1 zero pairs +%.4f%%",
		full/1e12, 100*share32, a.LoRAFLOPs(3072, 512, 32)/1e12, 100*share1)
	if share1 > 0.001 {
		t.Fatalf("the no-LoRA pairs cost %.4f%% of a forward", 100*share1)
	}
}
