package sampler

import "math"

// RoundBF16 rounds a float32 to the nearest bfloat16 value (ties to even) and
// returns it as a float32, exactly as torch's float32 -> bfloat16 conversion.
// NaN stays NaN (canonical quiet NaN 0x7fc0), infinities stay infinite and
// values beyond the bfloat16 range round to infinity.
func RoundBF16(f float32) float32 {
	return math.Float32frombits(uint32(BF16Bits(f)) << 16)
}

// BF16Bits returns the 16-bit bfloat16 encoding of f (round to nearest even).
func BF16Bits(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN
		return 0x7fc0 | uint16(b>>16)&0x8000
	}
	// Adding 0x7fff plus the lowest kept bit rounds half to even: a tie
	// carries into the kept bits only when that bit is odd.
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// BF16FromBits returns the float32 value of a bfloat16 encoding.
func BF16FromBits(h uint16) float32 {
	return math.Float32frombits(uint32(h) << 16)
}

// RoundBF16Slice rounds every element of x to bfloat16 in place, which is
// how a float32 buffer emulates a bfloat16 tensor.
func RoundBF16Slice(x []float32) {
	for i, v := range x {
		x[i] = RoundBF16(v)
	}
}
