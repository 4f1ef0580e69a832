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
