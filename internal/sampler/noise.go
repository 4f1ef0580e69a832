package sampler

import "math/bits"

// Philox4x32-10 constants (Salmon et al., "Parallel random numbers: as easy
// as 1, 2, 3", SC'11; Random123).
const (
	philoxM0 = 0xD2511F53
	philoxM1 = 0xCD9E8D57
	philoxW0 = 0x9E3779B9 // golden ratio
	philoxW1 = 0xBB67AE85 // sqrt(3) - 1
)

// Philox4x32 is the Philox4x32-10 block function: it maps a 128-bit counter
// and a 64-bit key to 128 random bits. Distinct (counter, key) pairs give
// independent outputs, so any element of a stream can be computed without
// the ones before it.
func Philox4x32(ctr [4]uint32, key [2]uint32) [4]uint32 {
	c0, c1, c2, c3 := ctr[0], ctr[1], ctr[2], ctr[3]
	k0, k1 := key[0], key[1]
	for r := 0; r < 10; r++ {
		if r > 0 {
			k0 += philoxW0
			k1 += philoxW1
		}
		hi0, lo0 := bits.Mul32(philoxM0, c0)
		hi1, lo1 := bits.Mul32(philoxM1, c2)
		c0, c1, c2, c3 = hi1^c1^k0, lo1, hi0^c3^k1, lo0
	}
	return [4]uint32{c0, c1, c2, c3}
}

// philox4x32Times4 is Philox4x32 applied to four counters with one key,
// with the rounds of the four interleaved.
func philox4x32Times4(ctr *[4][4]uint32, key [2]uint32) [4][4]uint32 {
	a0, a1, a2, a3 := ctr[0][0], ctr[0][1], ctr[0][2], ctr[0][3]
	b0, b1, b2, b3 := ctr[1][0], ctr[1][1], ctr[1][2], ctr[1][3]
	c0, c1, c2, c3 := ctr[2][0], ctr[2][1], ctr[2][2], ctr[2][3]
	d0, d1, d2, d3 := ctr[3][0], ctr[3][1], ctr[3][2], ctr[3][3]
	k0, k1 := key[0], key[1]
	for r := 0; r < 10; r++ {
		if r > 0 {
			k0 += philoxW0
			k1 += philoxW1
		}
		ah0, al0 := bits.Mul32(philoxM0, a0)
		ah1, al1 := bits.Mul32(philoxM1, a2)
		bh0, bl0 := bits.Mul32(philoxM0, b0)
		bh1, bl1 := bits.Mul32(philoxM1, b2)
		ch0, cl0 := bits.Mul32(philoxM0, c0)
		ch1, cl1 := bits.Mul32(philoxM1, c2)
		dh0, dl0 := bits.Mul32(philoxM0, d0)
		dh1, dl1 := bits.Mul32(philoxM1, d2)
		a0, a1, a2, a3 = ah1^a1^k0, al1, ah0^a3^k1, al0
		b0, b1, b2, b3 = bh1^b1^k0, bl1, bh0^b3^k1, bl0
		c0, c1, c2, c3 = ch1^c1^k0, cl1, ch0^c3^k1, cl0
		d0, d1, d2, d3 = dh1^d1^k0, dl1, dh0^d3^k1, dl0
	}
	return [4][4]uint32{{a0, a1, a2, a3}, {b0, b1, b2, b3}, {c0, c1, c2, c3}, {d0, d1, d2, d3}}
}

// Stream tags: the fourth counter word, which keeps the noise streams of
// one seed disjoint.
const (
	// StreamInitialNoise tags the initial latent noise.
	StreamInitialNoise uint32 = 0
	// StreamCNS tags Colored Noise Sampling's per-step white noise ("CNS").
	StreamCNS uint32 = 0x434E53
)

// SeedKey turns a request seed into a Philox key (low word, high word of its
// two's-complement bits).
func SeedKey(seed int64) [2]uint32 {
	u := uint64(seed)
	return [2]uint32{uint32(u), uint32(u >> 32)}
}

// NormalStream is a deterministic, counter-based stream of standard normal
// float32 values. Element j of the stream is computed from Philox block
// j/4 with counter (lo32(j/4), hi32(j/4), Sub, Stream) and the key, then
// Box–Muller: the block's words (a, b, c, d) give
//
//	u(x)  = (x + 0.5) / 2^32                       in (0, 1)
//	n0,n1 = sqrt(-2 ln u(a)) · (cos, sin)(2π u(b))
//	n2,n3 = sqrt(-2 ln u(c)) · (cos, sin)(2π u(d))
//
// in float64 (with the portable kernels of boxmuller.go), each rounded to
// float32. Element j is lane j%4.
type NormalStream struct {
	Key    [2]uint32
	Stream uint32 // stream tag (StreamInitialNoise, StreamCNS, ...)
	Sub    uint32 // sub-stream, e.g. the denoising step for CNS
}

// Fill writes stream elements 0..len(dst)-1 into dst.
func (s NormalStream) Fill(dst []float32) { s.FillAt(dst, 0) }

// FillAt writes stream elements start..start+len(dst)-1 into dst, so that a
// long stream can be produced in independent chunks (e.g. by several
// goroutines) with the same result as one Fill.
func (s NormalStream) FillAt(dst []float32, start uint64) {
	j := start
	i := 0
	// Leading partial block.
	if lane := int(j & 3); lane != 0 && len(dst) > 0 {
		var blk [4]float32
		s.block(j>>2, &blk)
		for ; lane < 4 && i < len(dst); lane++ {
			dst[i] = blk[lane]
			i++
			j++
		}
	}
	// Four blocks at a time: Philox's rounds form a serial dependency chain,
	// so interleaving independent counters is what makes it fast.
	for ; i+16 <= len(dst); i += 16 {
		s.block4(j>>2, (*[16]float32)(dst[i:i+16]))
		j += 16
	}
	for ; i+4 <= len(dst); i += 4 {
		s.block(j>>2, (*[4]float32)(dst[i:i+4]))
		j += 4
	}
	if i < len(dst) {
		var blk [4]float32
		s.block(j>>2, &blk)
		copy(dst[i:], blk[:len(dst)-i])
	}
}

// block4 is four consecutive blocks starting at block n.
func (s NormalStream) block4(n uint64, out *[16]float32) {
	var ctr [4][4]uint32
	for k := range ctr {
		m := n + uint64(k)
		ctr[k] = [4]uint32{uint32(m), uint32(m >> 32), s.Sub, s.Stream}
	}
	r := philox4x32Times4(&ctr, s.Key)
	for k := range r {
		out[4*k], out[4*k+1] = boxMuller(r[k][0], r[k][1])
		out[4*k+2], out[4*k+3] = boxMuller(r[k][2], r[k][3])
	}
}

func (s NormalStream) block(n uint64, out *[4]float32) {
	r := Philox4x32([4]uint32{uint32(n), uint32(n >> 32), s.Sub, s.Stream}, s.Key)
	out[0], out[1] = boxMuller(r[0], r[1])
	out[2], out[3] = boxMuller(r[2], r[3])
}

// InitialNoise fills dst with one image's initial latent noise, laid out
// (128, h, w) in C order, from the given seed. Image k of a batch uses seed
// base+k on its own slice, so any image can be regenerated alone.
func InitialNoise(seed int64, dst []float32) {
	NormalStream{Key: SeedKey(seed), Stream: StreamInitialNoise}.Fill(dst)
}
