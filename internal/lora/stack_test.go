package lora

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestStackComputesTheSumOfUpdates: for random inputs x, x·A·B with the
// stacked inputs equals the sum over adapters of scale·alpha/r·x·Aᵀ·Bᵀ with
// each file's own factors; a target no adapter touches adds zero.
func TestStackComputesTheSumOfUpdates(t *testing.T) {
	tg := tinyTargets(t)
	rng := rand.New(rand.NewPCG(5, 5))
	p1 := randomBFL(t, tg, 3, 11)
	ad1, err := convertBytes(t, tg, layout(t, tg, "kohya", p1, 3, 6)) // alpha/r = 2
	if err != nil {
		t.Fatal(err)
	}
	ad2, err := convertBytes(t, tg, encode(t, map[string]st{
		"transformer.proj_out.lora_A.weight": {F32, []int{5, 32}, randVals(rng, 5*32)},
		"transformer.proj_out.lora_B.weight": {F32, []int{128, 5}, randVals(rng, 128*5)},
	}, nil))
	if err != nil {
		t.Fatal(err)
	}
	ws := []Weighted{{ad1, 0.7}, {ad2, -1.3}}
	s := Stack(tg, ws)
	for i := 0; i < tg.Len(); i++ {
		tgt := tg.At(i)
		R := s.Ranks[i]
		if len(s.A[i]) != tgt.In*R || len(s.B[i]) != R*tgt.Out {
			t.Fatalf("%s: sizes %d %d for rank %d", tgt.Module, len(s.A[i]), len(s.B[i]), R)
		}
		x := randVals(rng, tgt.In)
		got := make([]float64, tgt.Out)
		u := make([]float64, R)
		for k := 0; k < R; k++ {
			for j := 0; j < tgt.In; j++ {
				u[k] += float64(x[j]) * float64(s.A[i][j*R+k])
			}
		}
		for o := range got {
			for k := 0; k < R; k++ {
				got[o] += u[k] * float64(s.B[i][k*tgt.Out+o])
			}
		}
		want := make([]float64, tgt.Out)
		touched := false
		for _, w := range ws {
			for _, f := range w.Adapter.Factors {
				if f.Target != i {
					continue
				}
				touched = true
				for o := range want {
					var acc float64
					for k := 0; k < f.Rank; k++ {
						var d float64
						for j := 0; j < tgt.In; j++ {
							d += float64(f.A[k*tgt.In+j]) * float64(x[j])
						}
						acc += float64(f.B[o*f.Rank+k]) * d
					}
					want[o] += w.Scale * float64(f.Scale) * acc
				}
			}
		}
		if !touched && R != 1 {
			t.Fatalf("%s: untouched target has rank %d, want a rank-1 zero pair", tgt.Module, R)
		}
		for o := range want {
			if d := math.Abs(got[o] - want[o]); d > 1e-4*(1+math.Abs(want[o])) {
				t.Fatalf("%s[%d]: %v, want %v", tgt.Module, o, got[o], want[o])
			}
		}
	}
	if s.Ranks[tg.index["proj_out"]] != 3+5 {
		t.Fatalf("proj_out rank %d, want the two adapters' 3+5", s.Ranks[tg.index["proj_out"]])
	}
	zero := Stack(tg, nil)
	for i := range zero.A {
		for _, v := range append(zero.A[i], zero.B[i]...) {
			if v != 0 || zero.Ranks[i] != 1 {
				t.Fatal("no-LoRA inputs must be rank-1 zeros")
			}
		}
	}
}

func TestCheckScale(t *testing.T) {
	for _, s := range []float64{MinScale, -1, 0, DefaultScale, MaxScale} {
		if err := CheckScale(s); err != nil {
			t.Errorf("%v: %v", s, err)
		}
	}
	for _, s := range []float64{MinScale - 0.01, MaxScale + 1, math.NaN(), math.Inf(1)} {
		if CheckScale(s) == nil {
			t.Errorf("%v accepted", s)
		}
	}
}

func TestTargetsFromInputs(t *testing.T) {
	names := []string{"hidden_states", "x_embedder.lora_A", "x_embedder.lora_B", "transformer_blocks.0.attn.to_q.lora_A",
		"transformer_blocks.0.attn.to_q.lora_B"}
	dims := [][]int{{-1, -1, 128}, {128, -1}, {-1, 32}, {32, -1}, {-1, 32}}
	tg, err := TargetsFromInputs(names, dims)
	if err != nil || tg.Len() != 2 || tg.At(0) != (Target{"x_embedder", 128, 32}) {
		t.Fatalf("%v %v", tg, err)
	}
	// BFL and kohya names of what the model has resolve; of what it lacks, do not.
	if len(tg.resolve("img_in", false)) != 1 || len(tg.resolve("img_in", true)) != 1 ||
		len(tg.resolve("double_blocks.0.img_attn.qkv", false)) != 0 {
		t.Fatal("alias resolution")
	}
	if tg, err := TargetsFromInputs(names[:1], dims[:1]); tg != nil || err != nil {
		t.Fatalf("a graph without LoRA inputs: %v %v", tg, err)
	}
	if _, err := TargetsFromInputs(names[:2], dims[:2]); err == nil {
		t.Fatal("lora_A without lora_B accepted")
	}
	if _, err := TargetsFromInputs(names[:3], [][]int{{1}, {128, 4}, {4, 32}}); err == nil {
		t.Fatal("a fixed rank accepted")
	}
}
