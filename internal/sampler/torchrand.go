package sampler

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/mathext/prng"
)

// Torch-compatible noise: the values torch.randn draws from
// torch.Generator("cpu").manual_seed(seed), bit for bit, so that a seed
// reproduces the initial latents of a diffusers script. docs/seeds.md has
// the user-facing rules; this file records how torch 2.15 computes them.
//
// torch's CPU generator is a 32-bit Mersenne Twister (MT19937) seeded with
// init_genrand from the low 32 bits of the 64-bit seed. A float uniform is
// the low 24 bits of one 32-bit draw times 2^-24; a double uniform is the
// low 53 bits of (first draw << 32 | second draw) times 2^-53.
//
// torch.randn then takes one of two paths:
//
//   - fewer than 16 elements: per element, a double-precision Box–Muller
//     (u1, u2 double uniforms; r = sqrt(-2 log1p(-u2)); r·cos(2π u1) now and
//     r·sin(2π u1) cached in the generator for the next scalar draw),
//     rounded to the tensor's dtype;
//   - 16 or more contiguous elements: uniforms for the whole tensor first,
//     then each run of 16 becomes 8 Box–Muller pairs, lane j pairing element
//     j (u1 → radius from log(1-u1)) with element j+8 (u2 → angle 2π u2), in
//     float32 with the AVX2 kernels of ATen's avx_mathfun.h (Cephes' single
//     precision logf and sincosf). A length that is not a multiple of 16
//     gets 16 fresh uniforms for its last 16 elements, recomputed on top of
//     what was there. A bfloat16 tensor draws and transforms each run of 16
//     in float32 and rounds to bfloat16; its tail takes the 16 draws that
//     follow the last full run, where a float32 tensor first skips the
//     n mod 16 uniforms it had already drawn for the tail.
//
// The float32 kernels are reproduced here instruction by instruction from
// the machine code of torch 2.15.0's x86-64 wheel (the function ATen
// dispatches to on every CPU with AVX2, AVX-512 included), with its fused
// multiply-adds where the compiler contracted them, and checked against that
// compiled kernel on all 2^24 values of each of its two inputs
// (TestBoxMuller16AllInputsMatchTorch). A CPU without AVX2 (and
// ARM) runs libm's logf/sinf/cosf instead and draws slightly different
// values; those are not reproduced.

// TorchDType selects the torch.randn dtype whose draw is reproduced: the
// dtype diffusers draws the initial latents in is the pipeline's dtype.
type TorchDType int

const (
	// TorchFloat32 is torch.float32.
	TorchFloat32 TorchDType = iota
	// TorchBFloat16 is torch.bfloat16; values are returned as float32.
	TorchBFloat16
)

func (d TorchDType) String() string {
	switch d {
	case TorchFloat32:
		return "float32"
	case TorchBFloat16:
		return "bfloat16"
	}
	return fmt.Sprintf("TorchDType(%d)", int(d))
}

// torchVectorMin is the element count from which torch.randn fills a
// contiguous tensor in runs of 16 instead of one element at a time.
const torchVectorMin = 16

// TorchGenerator is a torch.Generator("cpu") after manual_seed: the
// Mersenne Twister and the cached second value of the scalar Box–Muller,
// which carries over between draws exactly as in torch. The zero value is
// not seeded; use NewTorchGenerator.
type TorchGenerator struct {
	mt      prng.MT19937
	next    float64 // r·sin(θ) of the last scalar Box–Muller pair
	hasNext bool
}

// NewTorchGenerator returns the generator torch.Generator("cpu").manual_seed(seed)
// creates. torch takes the seed's 64-bit two's-complement bits (a negative
// Python int is accepted as int64) and seeds the Mersenne Twister with the
// low 32 of them, so seeds that differ by a multiple of 2^32 draw the same
// numbers.
func NewTorchGenerator(seed int64) *TorchGenerator {
	g := &TorchGenerator{}
	g.mt.Seed(uint64(seed)) // init_genrand with the low 32 bits
	return g
}

// uniform32 is at::uniform_real_distribution<float>(0, 1): 24 random bits.
func (g *TorchGenerator) uniform32() float32 {
	return float32(g.mt.Uint32()&(1<<24-1)) * 0x1p-24
}

// uniform64 is at::uniform_real_distribution<double>(0, 1): 53 random bits
// of a 64-bit draw (the first 32-bit draw is the high word).
func (g *TorchGenerator) uniform64() float64 {
	return float64(g.mt.Uint64()&(1<<53-1)) * 0x1p-53
}

// normal64 is at::normal_distribution<double>(0, 1), the per-element path.
func (g *TorchGenerator) normal64() float64 {
	if g.hasNext {
		g.hasNext = false
		return g.next + 0 // mean 0 added as torch does (turns -0 into +0)
	}
	u1 := g.uniform64()
	u2 := g.uniform64()
	r := math.Sqrt(-2 * math.Log1p(-u2))
	sin, cos := math.Sincos(2 * math.Pi * u1)
	g.next, g.hasNext = r*sin, true
	return r*cos + 0
}

// Randn fills dst with what torch.randn(len(dst), generator=g, dtype=dtype)
// returns, and advances g as torch does, so that successive calls
// reproduce successive draws from one torch generator. The shape of the
// tensor does not matter, only its element count: a contiguous
// (B, C, H, W) tensor is dst in C order.
func (g *TorchGenerator) Randn(dst []float32, dtype TorchDType) {
	n := len(dst)
	round := func(v float32) float32 { return v }
	if dtype == TorchBFloat16 {
		round = RoundBF16
	}
	if n < torchVectorMin {
		for i := range dst {
			// double -> dtype; for bfloat16 through float, as c10::BFloat16 converts
			dst[i] = round(float32(g.normal64()))
		}
		return
	}
	// torch draws every uniform before transforming, but uniform i only
	// ever feeds element i, so transforming run by run is the same.
	var run [16]float32
	full := n &^ 15
	for i := 0; i < full; i += 16 {
		for k := range run {
			run[k] = g.uniform32()
		}
		boxMuller16(&run)
		out := dst[i : i+16]
		for k, v := range run {
			out[k] = round(v)
		}
	}
	if full == n {
		return
	}
	if dtype == TorchFloat32 {
		// The float32 path drew uniforms for the partial run before
		// redrawing the last 16.
		for range n - full {
			g.mt.Uint32()
		}
	}
	for k := range run {
		run[k] = g.uniform32()
	}
	boxMuller16(&run)
	out := dst[n-16:]
	for k, v := range run {
		out[k] = round(v)
	}
}

// TorchRandn fills dst with torch.randn(len(dst), dtype=float32,
// generator=torch.Generator("cpu").manual_seed(seed)).
func TorchRandn(seed int64, dst []float32) {
	NewTorchGenerator(seed).Randn(dst, TorchFloat32)
}

// TorchLatentNoise fills dst, laid out (batch, 128, h, w) channel-first in
// C order like the per-image slices of InitialNoise, with the initial noise
// diffusers' Flux2KleinPipeline draws for a batch of that many images of
// h*16 x w*16 pixels with generator=torch.Generator("cpu").manual_seed(seed)
// and the given latent dtype: one torch.randn over the whole batch from one
// generator (num_images_per_prompt images included), so image k depends on
// the batch before it and is not the image of any seed drawn alone. Pack
// turns it into the transformer's token layout, as the pipeline's
// _pack_latents does.
func TorchLatentNoise(dst []float32, seed int64, dtype TorchDType, batch, h, w int) error {
	if batch < 1 || h < 1 || w < 1 {
		return fmt.Errorf("sampler: TorchLatentNoise: dimensions must be positive, got batch %d h %d w %d", batch, h, w)
	}
	if dtype != TorchFloat32 && dtype != TorchBFloat16 {
		return fmt.Errorf("sampler: TorchLatentNoise: unsupported dtype %v", dtype)
	}
	if want := batch * PackedChannels * h * w; len(dst) != want {
		return fmt.Errorf("sampler: TorchLatentNoise: want %d values (batch %d, %d channels, %dx%d), got %d", want, batch, PackedChannels, h, w, len(dst))
	}
	NewTorchGenerator(seed).Randn(dst, dtype)
	return nil
}

// Constants of ATen's avx_mathfun.h as the float32 bit patterns in torch's
// binary (Cephes' single-precision logf and sinf/cosf coefficients).
var (
	amSqrtHalf = math.Float32frombits(0x3f3504f3) // 0.707106781186547524
	amLogP     = [9]float32{
		math.Float32frombits(0x3d9021bb), // 7.0376836292e-2
		math.Float32frombits(0xbdebd1b8), // -1.1514610310e-1
		math.Float32frombits(0x3def251a), // 1.1676998740e-1
		math.Float32frombits(0xbdfe5d4f), // -1.2420140846e-1
		math.Float32frombits(0x3e11e9bf), // 1.4249322787e-1
		math.Float32frombits(0xbe2aae50), // -1.6668057665e-1
		math.Float32frombits(0x3e4cceac), // 2.0000714765e-1
		math.Float32frombits(0xbe7ffffc), // -2.4999993993e-1
		math.Float32frombits(0x3eaaaaaa), // 3.3333331174e-1
	}
	amLogQ1 = math.Float32frombits(0xb95e8083) // -2.12194440e-4
	amLogQ2 = math.Float32frombits(0x3f318000) // 0.693359375
	amTwoPi = math.Float32frombits(0x40c90fdb) // float32(2π)
	amFOPI  = math.Float32frombits(0x3fa2f983) // 4/π
	amDP1   = math.Float32frombits(0xbf490000) // -0.78515625
	amDP2   = math.Float32frombits(0xb97da000) // -2.4187564849853515625e-4
	amDP3   = math.Float32frombits(0xb3222169) // -3.77489497744594108e-8
	amCosP  = [3]float32{
		math.Float32frombits(0x37ccf5ce), // 2.443315711809948e-5
		math.Float32frombits(0xbab6061a), // -1.388731625493765e-3
		math.Float32frombits(0x3d2aaaa5), // 4.166664568298827e-2
	}
	amSinP = [3]float32{
		math.Float32frombits(0xb94ca1f9), // -1.9515295891e-4
		math.Float32frombits(0x3c08839e), // 8.3321608736e-3
		math.Float32frombits(0xbe2aaaa3), // -1.6666654611e-1
	}
)

// boxMuller16 turns a run of 16 uniforms in [0, 1) into 16 standard
// normals in place, as torch's vectorised normal fill does: lane j uses
// radius sqrt(-2 log(1 - u[j])) and angle 2π u[j+8], and writes the cosine
// normal to j and the sine normal to j+8.
func boxMuller16(u *[16]float32) {
	for j := 0; j < 8; j++ {
		lg := amLog(1 - u[j])
		r := float32(math.Sqrt(float64(lg * -2))) // sqrt in float64 rounds to float32 correctly
		sin, cos := amSincos(amTwoPi * u[j+8])
		// The kernel ends with fma(n, std, mean) = n·1 + 0, which only
		// turns −0 into +0.
		u[j] = float32(r*cos) + 0
		u[j+8] = float32(r*sin) + 0
	}
}

// amLog is avx_mathfun's log256_ps on one lane, for x = 1 - u in
// [2^-24, 1]: the kernel's clamp to the smallest normal and its NaN for
// x <= 0 never apply there. Products feeding a sum are rounded explicitly
// with float32(...) unless torch's binary fuses them (fma32), since Go may
// otherwise fuse them on some architectures.
func amLog(x float32) float32 {
	bits := math.Float32bits(x)
	e := float32(int32(bits>>23)-127) + 1
	x = math.Float32frombits(bits&^0x7f800000 | 0x3f000000) // mantissa in [0.5, 1)
	var tmp float32
	if x < amSqrtHalf {
		e--
		tmp = x
	}
	x = (x - 1) + tmp
	z := float32(x * x)
	y := fma32(amLogP[0], x, amLogP[1])
	for _, p := range amLogP[2:] {
		y = fma32(y, x, p)
	}
	t := float32(e * amLogQ1)
	y = float32(y * x)
	y = fma32(y, z, t)
	y = fma32(-z, 0.5, y)
	x += y
	return fma32(e, amLogQ2, x)
}

// amSincos is avx_mathfun's sincos256_ps on one lane, for theta = 2π u in
// [0, 2π) (so without the kernel's handling of a negative argument):
// Cephes' reduction by π/4 in three parts and the two polynomials, selected
// per octant.
func amSincos(theta float32) (sin, cos float32) {
	xa := theta
	j := int32(float32(xa * amFOPI)) // cvttps2dq: truncation
	j = (j + 1) &^ 1
	y := float32(j)
	signSin := uint32(j&4) << 29
	useSin := j&2 == 0
	x := fma32(y, amDP1, xa)
	x = fma32(amDP2, y, x)
	x = fma32(y, amDP3, x)
	signCos := uint32(^(j-2)&4) << 29
	z := float32(x * x)
	half := float32(z * 0.5)
	c := fma32(amCosP[0], z, amCosP[1])
	c = fma32(c, z, amCosP[2])
	c = float32(z * c)
	c = fma32(z, c, -half)
	c++
	s := fma32(amSinP[0], z, amSinP[1])
	s = fma32(s, z, amSinP[2])
	s = float32(z * s)
	s = fma32(x, s, x)
	// The kernel selects with bit masks and then adds and subtracts the
	// masked values; the zeros it adds are +0.
	var sinPart, cosPart float32
	if useSin {
		sinPart = s
	} else {
		cosPart = c
	}
	sinv := sinPart + cosPart
	cosv := (s - sinPart) + (c - cosPart)
	sin = math.Float32frombits(math.Float32bits(sinv) ^ signSin)
	cos = math.Float32frombits(math.Float32bits(cosv) ^ signCos)
	return sin, cos
}

// fma32 is a·b+c as the vfmadd instructions compute it, through float64:
// the product is exact there, and the sum is rounded to float64 and then to
// float32. That double rounding differs from the instruction's single
// rounding only when the float64 sum falls exactly on a float32 halfway
// point without being exact; on this kernel it never does, for any of the
// 2^24 possible values of either input (TestBoxMuller16AllInputsMatchTorch
// runs them all against torch's kernel). Written this way it is inlined.
func fma32(a, b, c float32) float32 {
	return float32(float64(a)*float64(b) + float64(c))
}

// NoiseSource names how a seed becomes initial noise.
type NoiseSource string

// Noise sources.
const (
	// NoiseTorch draws the whole batch from torch.Generator("cpu")
	// seeded with the request's seed, as diffusers does: a seed gives the
	// picture a diffusers script gives (docs/seeds.md).
	NoiseTorch NoiseSource = "torch"
	// NoisePhilox is the earlier stream: image k from Philox keyed by
	// seed+k, so each image of a batch can be regenerated alone.
	NoisePhilox NoiseSource = "philox"
)

// ImageSeed is the seed of image k of a batch in per-image streams (Philox
// initial noise, CNS noise): seed+k, so that each image can be reproduced
// alone.
func ImageSeed(seed int64, k int) int64 { return seed + int64(k) }

// NoiseSources lists the sources, the default first.
func NoiseSources() []NoiseSource { return []NoiseSource{NoiseTorch, NoisePhilox} }

// BatchNoise fills dst, laid out (batch, 128, h, w), with the initial noise
// of a request with this seed. bf16 asks for the noise a bfloat16 pipeline
// draws (torch source only; Philox noise is drawn in float32 either way).
func BatchNoise(src NoiseSource, dst []float32, seed int64, bf16 bool, batch, h, w int) error {
	switch src {
	case NoiseTorch:
		dtype := TorchFloat32
		if bf16 {
			dtype = TorchBFloat16
		}
		return TorchLatentNoise(dst, seed, dtype, batch, h, w)
	case NoisePhilox:
		per := PackedChannels * h * w
		if batch < 1 || len(dst) != batch*per {
			return fmt.Errorf("sampler: philox noise: %d values for batch %d of %dx%d", len(dst), batch, h, w)
		}
		for k := 0; k < batch; k++ {
			InitialNoise(ImageSeed(seed, k), dst[k*per:(k+1)*per])
		}
		return nil
	}
	return fmt.Errorf("sampler: unknown noise source %q", string(src))
}
