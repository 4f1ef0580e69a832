package sampler

import "math"

// Box–Muller with its own logarithm and sine/cosine: polynomial kernels in
// float64 with every product rounded explicitly (no FMA contraction), so the
// stream is bit-identical on every architecture and about three times faster
// than math.Log plus math.Sincos. Both kernels are accurate to a few 1e-16
// relative, far below the float32 rounding applied to their results.

const (
	inv2p32 = 1.0 / (1 << 32)
	ln2Hi   = 6.93147180369123816490e-01 // high bits of ln 2 (exact in 33 bits)
	ln2Lo   = 1.90821492927058770002e-10 // ln 2 - ln2Hi
)

// boxMuller maps two uniform 32-bit words to two standard normals.
func boxMuller(a, b uint32) (float32, float32) {
	u1 := (float64(a) + 0.5) * inv2p32
	u2 := (float64(b) + 0.5) * inv2p32
	r := math.Sqrt(-2 * logUnit(u1))
	s, c := sinCosTurns(u2)
	return float32(r * c), float32(r * s)
}

// logUnit returns ln(u) for u in (0, 1]: u = m·2^e with m in [√½, √2), and
// ln m = 2·atanh(s) = 2(s + s³/3 + s⁵/5 + …), s = (m−1)/(m+1), |s| < 0.1716.
func logUnit(u float64) float64 {
	// Branch-free on purpose: with random input every data-dependent branch
	// here would be mispredicted half the time.
	bits := math.Float64bits(u)
	e := int64(bits>>52&0x7ff) - 1023
	mbits := bits&^(0x7ff<<52) | 1023<<52 // m in [1, 2)
	// adj = 1 when m > √2: then halve m (exponent - 1) and bump e.
	adj := (math.Float64bits(math.Sqrt2) - mbits) >> 63
	m := math.Float64frombits(mbits - adj<<52)
	e += int64(adj)
	s := (m - 1) / (m + 1)
	z := s * s
	// Odd series up to s^19 (remainder < z^10/21 < 2e-17), evaluated with
	// Estrin's scheme: the Horner chain's latency dominated the whole
	// generator.
	z2 := z * z
	z4 := z2 * z2
	z8 := z4 * z4
	e0 := float64(z*(1.0/3)) + 1
	e1 := float64(z*(1.0/7)) + 1.0/5
	e2 := float64(z*(1.0/11)) + 1.0/9
	e3 := float64(z*(1.0/15)) + 1.0/13
	e4 := float64(z*(1.0/19)) + 1.0/17
	f0 := float64(z2*e1) + e0
	f1 := float64(z2*e3) + e2
	p := float64(z8*e4) + (float64(z4*f1) + f0)
	lnm := float64(2*s) * p
	fe := float64(e)
	return float64(fe*ln2Hi) + (float64(fe*ln2Lo) + lnm)
}

// sinCosTurns returns sin(2πt) and cos(2πt) for t in [0, 1]. t·4 is split
// into a quadrant q and a remainder f in [−½, ½]; x = f·π/2 lies in
// [−π/4, π/4] where Taylor series to x^17 / x^18 are below 1e-16.
func sinCosTurns(t float64) (sin, cos float64) {
	v := t * 4 // exact
	q := math.Floor(v + 0.5)
	x := (v - q) * (math.Pi / 2)
	z := x * x
	s := -1.0 / 355687428096000 // -1/17!
	s = float64(s*z) + 1.0/1307674368000
	s = float64(s*z) - 1.0/6227020800
	s = float64(s*z) + 1.0/39916800
	s = float64(s*z) - 1.0/362880
	s = float64(s*z) + 1.0/5040
	s = float64(s*z) - 1.0/120
	s = float64(s*z) + 1.0/6
	sn := x - float64(float64(x*z)*s)
	c := 1.0 / 6402373705728000 // 1/18!
	c = float64(c*z) - 1.0/20922789888000
	c = float64(c*z) + 1.0/87178291200
	c = float64(c*z) - 1.0/479001600
	c = float64(c*z) + 1.0/3628800
	c = float64(c*z) - 1.0/40320
	c = float64(c*z) + 1.0/720
	c = float64(c*z) - 1.0/24
	c = float64(c*z) + 0.5
	cs := 1 - float64(z*c)
	// Rotate by the quadrant without branches: odd quadrants swap sine and
	// cosine, and the sign bits follow the quadrant table
	// q=0: (s, c), 1: (c, −s), 2: (−s, −c), 3: (−c, s).
	qi := uint64(int64(q)) & 3
	swap := -(qi & 1)
	sb, cb := math.Float64bits(sn), math.Float64bits(cs)
	sinBits := (sb &^ swap) | (cb & swap)
	cosBits := (cb &^ swap) | (sb & swap)
	sinBits ^= (qi >> 1) << 63
	cosBits ^= ((qi + 1) >> 1 & 1) << 63
	return math.Float64frombits(sinBits), math.Float64frombits(cosBits)
}
