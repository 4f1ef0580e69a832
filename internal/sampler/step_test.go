package sampler

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"testing"
)

// ramp reproduces gen_golden.py's ramp(): ((i*mul) % mod - off) / div in
// float32, exactly representable inputs shared with the Python generator.
func ramp(n int, mul, mod, off int64, div float32) []float32 {
	out := make([]float32, n)
	for i := range out {
		k := (int64(i)*mul)%mod - off
		out[i] = float32(k) / div
	}
	return out
}

func digest(x []float32) string {
	b := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func bf16Copy(x []float32) []float32 {
	y := append([]float32(nil), x...)
	RoundBF16Slice(y)
	return y
}

// Digests printed by testdata/gen_golden.py from torch 2.15 CPU.
func TestCFGMatchesTorch(t *testing.T) {
	pos := ramp(4096, 7919, 2001, 1000, 337)
	neg := ramp(4096, 104729, 1999, 999, 411)
	cases := []struct {
		g          float64
		fp32, bf16 string
	}{
		{4.0, "8667c3cd40a2aa9bdbb25f27287846b123229753004fb8231154e8ced67b2a2a", "e4691097275ad1067d9bb327e22504840ea656419e38ab1ff00a31e0f3dc5dd9"},
		{4.3, "4d4f34ea4d66419bd1c7a32104633c1f3a2adb9baa6a5009b02abc6d2a4ec295", "77764667be557d02ba022b41c6b3f49a3bbbadd3f15d10f8898c1266fd9728b2"},
	}
	for _, c := range cases {
		dst := make([]float32, len(pos))
		if err := CFG(dst, pos, neg, c.g); err != nil {
			t.Fatal(err)
		}
		if d := digest(dst); d != c.fp32 {
			t.Errorf("CFG g=%v fp32 digest %s, torch %s", c.g, d, c.fp32)
		}
		pb, nb := bf16Copy(pos), bf16Copy(neg)
		if err := CFGBF16(dst, pb, nb, c.g); err != nil {
			t.Fatal(err)
		}
		if d := digest(dst); d != c.bf16 {
			t.Errorf("CFG g=%v bf16 digest %s, torch %s", c.g, d, c.bf16)
		}
		// In place into the negative buffer gives the same values.
		nb2 := bf16Copy(neg)
		if err := CFGBF16(nb2, pb, nb2, c.g); err != nil {
			t.Fatal(err)
		}
		if d := digest(nb2); d != c.bf16 {
			t.Errorf("CFG in place g=%v differs", c.g)
		}
	}
	// Operand order: g=1 returns pos, g=0 returns neg.
	dst := make([]float32, len(pos))
	_ = CFG(dst, pos, neg, 0)
	for i := range dst {
		if dst[i] != neg[i] {
			t.Fatalf("CFG g=0 [%d] = %v, want neg %v", i, dst[i], neg[i])
		}
	}
	if err := CFG(dst[:3], pos, neg, 4); err == nil {
		t.Error("CFG with mismatched lengths: want error")
	}
}

func TestUsesCFG(t *testing.T) {
	for g, want := range map[float64]bool{0: false, 1: false, 1.0000001: true, 4: true} {
		if UsesCFG(g) != want {
			t.Errorf("UsesCFG(%v) = %v", g, !want)
		}
	}
}

func TestEulerMatchesTorch(t *testing.T) {
	s, err := Sigmas(3072, 50)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		i          int
		fp32, bf16 string
	}{
		{0, "af0428b39102f7acc1202686fef7031e5d912de4e864e7d5e4a1898a2db23357", "e572f4edc7895b3d8ef80fd2ae6430da47da569b6ee9165937bd6cca3e3eab17"},
		{25, "afd4b1e82848caee4d87c010c531edbab3f6e467ad20ce4f04fc388e2631a1af", "aec7a4db60ca06fca0de7be30ceeeba1750afe29beba1b7adb8e5a1ee1bab5ac"},
		{49, "13ac1ed4a8c92d506550f1f99e0918849b18639d5bc1b8d8e7dbbd77d4a5ab62", "96b77ba429d5d36453c64f3e81e2d8bec6f8004793c8a56dc3a43dd82f54dadc"},
	}
	for _, c := range cases {
		x := ramp(4096, 7919, 2001, 1000, 337)
		v := ramp(4096, 104729, 1999, 999, 411)
		if err := (EulerStepper{Sigmas: s}).Step(c.i, x, v); err != nil {
			t.Fatal(err)
		}
		if d := digest(x); d != c.fp32 {
			t.Errorf("Euler step %d fp32 digest %s, torch %s", c.i, d, c.fp32)
		}
		xb := bf16Copy(ramp(4096, 7919, 2001, 1000, 337))
		vb := bf16Copy(v)
		if err := (EulerStepper{Sigmas: s, BF16: true}).Step(c.i, xb, vb); err != nil {
			t.Fatal(err)
		}
		if d := digest(xb); d != c.bf16 {
			t.Errorf("Euler step %d bf16 digest %s, torch %s", c.i, d, c.bf16)
		}
	}
	if err := (EulerStepper{Sigmas: s}).Step(50, make([]float32, 4), make([]float32, 4)); err == nil {
		t.Error("step past the schedule: want error")
	}
	if err := Euler(make([]float32, 4), make([]float32, 3), 1, 0.5); err == nil {
		t.Error("Euler with mismatched lengths: want error")
	}
}

// The last step lands on the model's clean estimate x - sigma*v.
func TestEulerFinalStepIsCleanEstimate(t *testing.T) {
	x := []float32{0.5, -1.25, 3}
	v := []float32{2, 0.75, -1}
	sigma := float32(0.121789)
	want := make([]float32, 3)
	for i := range x {
		want[i] = x[i] + float32(-sigma*v[i])
	}
	if err := Euler(x, v, sigma, 0); err != nil {
		t.Fatal(err)
	}
	for i := range x {
		if x[i] != want[i] {
			t.Errorf("[%d] = %v, want %v", i, x[i], want[i])
		}
	}
}

func TestStepHelpersDoNotAllocate(t *testing.T) {
	x, v, d := ramp(4096, 7919, 2001, 1000, 337), ramp(4096, 104729, 1999, 999, 411), make([]float32, 4096)
	st := EulerStepper{Sigmas: []float32{1, 0.5, 0}, BF16: true}
	if a := testing.AllocsPerRun(10, func() {
		_ = CFG(d, x, v, 4)
		_ = CFGBF16(d, x, v, 4)
		_ = Euler(x, v, 0.5, 0.4)
		_ = st.Step(0, x, v)
		InitialNoise(3, d)
	}); a != 0 {
		t.Errorf("%v allocations per call", a)
	}
}
