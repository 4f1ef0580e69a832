package sampler

import (
	"math"
	"testing"
)

func TestRoundBF16Cases(t *testing.T) {
	cases := []struct {
		in   uint32
		want uint16
	}{
		{0x3f800000, 0x3f80},                        // 1.0 exact
		{0x3f808000, 0x3f80},                        // tie, lower kept bit even: round down
		{0x3f818000, 0x3f82},                        // tie, lower kept bit odd: round up
		{0x3f808001, 0x3f81},                        // just above the tie
		{0x3f807fff, 0x3f80},                        // just below the tie
		{0x80000000, 0x8000},                        // -0
		{0x7f800000, 0x7f80},                        // +inf
		{0xff800000, 0xff80},                        // -inf
		{0x7f7fffff, 0x7f80},                        // max float32 rounds to inf
		{0x7fc00000, 0x7fc0},                        // quiet NaN
		{0x7f800001, 0x7fc0},                        // signalling NaN becomes quiet
		{0x00000001, 0x0000},                        // smallest subnormal rounds to 0
		{0x00008000, 0x0000},                        // subnormal tie to even
		{0x00018000, 0x0002},                        // subnormal tie to odd rounds up
		{math.Float32bits(1000 * 0.997006), 0x4479}, // 997.006 -> 996
	}
	for _, c := range cases {
		if got := BF16Bits(math.Float32frombits(c.in)); got != c.want {
			t.Errorf("BF16Bits(%#08x) = %#04x, want %#04x", c.in, got, c.want)
		}
	}
	if v := RoundBF16(996.5); v != 996 {
		t.Errorf("RoundBF16(996.5) = %v", v)
	}
	if !math.IsNaN(float64(RoundBF16(float32(math.NaN())))) {
		t.Error("NaN lost")
	}
}

// Against torch's float32 -> bfloat16 conversion over every 65521st float32
// bit pattern that is not a NaN (testdata/gen_golden.py). NaN payloads are
// not compared: torch's vectorised CPU path writes 0xffff for every NaN, its
// scalar path 0x7fc0; RoundBF16 keeps the sign and quiets the NaN.
func TestRoundBF16MatchesTorch(t *testing.T) {
	var xs []float32
	for u := uint64(0); u < 1<<32; u += 65521 {
		f := math.Float32frombits(uint32(u))
		if math.IsNaN(float64(f)) {
			continue
		}
		xs = append(xs, RoundBF16(f))
	}
	if len(xs) != 65295 {
		t.Fatalf("sample has %d patterns", len(xs))
	}
	const want = "a5938b5b36388017ac09abe901c383aa8dbdefb43b66df22c82e89ac876c637d"
	if d := digest(xs); d != want {
		t.Errorf("digest %s, torch %s", d, want)
	}
}

func TestRoundBF16Idempotent(t *testing.T) {
	for u := uint64(0); u < 1<<32; u += 7919 {
		f := math.Float32frombits(uint32(u))
		r := RoundBF16(f)
		if math.IsNaN(float64(f)) {
			continue
		}
		if RoundBF16(r) != r {
			t.Fatalf("not idempotent at %#08x", u)
		}
		if math.Float32bits(r)&0xffff != 0 {
			t.Fatalf("low bits kept at %#08x", u)
		}
		// Relative error at most 2^-8 for normal numbers.
		if a := math.Abs(float64(f)); a >= 0x1p-126 && !math.IsInf(float64(r), 0) && math.Abs(float64(r)-float64(f)) > a/256 {
			t.Fatalf("%v rounded to %v", f, r)
		}
	}
}
