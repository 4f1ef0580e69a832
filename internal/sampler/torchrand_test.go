package sampler

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"testing"
)

// torchVectors is testdata/torch_randn.json, written by
// scripts/torch_noise_vectors.py from torch itself (see its header).
type torchVectors struct {
	Torch        string `json:"torch"`
	CPU          string `json:"cpu"`
	Sizes        []int  `json:"sizes"`
	LatentShapes []struct {
		Batch  int `json:"batch"`
		Width  int `json:"width"`
		Height int `json:"height"`
	} `json:"latent_shapes"`
	Randn []struct {
		Seed  int64    `json:"seed"`
		DType string   `json:"dtype"`
		SHA   []string `json:"sha"`
	} `json:"randn"`
	Examples []struct {
		Seed   int64    `json:"seed"`
		DType  string   `json:"dtype"`
		Values []string `json:"values"`
	} `json:"examples"`
	Sequence []struct {
		Seed  int64 `json:"seed"`
		Draws []struct {
			DType string `json:"dtype"`
			N     int    `json:"n"`
			SHA   string `json:"sha"`
		} `json:"draws"`
	} `json:"sequence"`
	Latents []struct {
		Seed   int64    `json:"seed"`
		DType  string   `json:"dtype"`
		Noise  []string `json:"noise"`
		Packed []string `json:"packed"`
	} `json:"latents"`
	Kernel struct {
		Radius  string   `json:"radius"`
		AngleU1 []uint32 `json:"angle_u1"`
		Angle   []string `json:"angle"`
	} `json:"kernel"`
}

func loadTorchVectors(t *testing.T) *torchVectors {
	t.Helper()
	raw, err := os.ReadFile("testdata/torch_randn.json")
	if err != nil {
		t.Fatal(err)
	}
	var v torchVectors
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Randn) == 0 || len(v.Latents) == 0 || len(v.Sequence) == 0 || len(v.Examples) == 0 {
		t.Fatal("testdata/torch_randn.json has empty sections")
	}
	return &v
}

func parseDType(t *testing.T, s string) TorchDType {
	t.Helper()
	switch s {
	case "float32":
		return TorchFloat32
	case "bfloat16":
		return TorchBFloat16
	}
	t.Fatalf("unknown dtype %q", s)
	return 0
}

// shortSHA is the vector files' digest: the first 16 hex digits of the
// SHA-256 of the values as little-endian float32.
func shortSHA(x []float32) string {
	h := sha256.New()
	var b [4]byte
	for _, v := range x {
		binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
		h.Write(b[:])
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func TestTorchRandnMatchesTorch(t *testing.T) {
	v := loadTorchVectors(t)
	seeds := map[int64]bool{}
	for _, c := range v.Randn {
		seeds[c.Seed] = true
		if len(c.SHA) != len(v.Sizes) {
			t.Fatalf("seed %d %s: %d digests for %d sizes", c.Seed, c.DType, len(c.SHA), len(v.Sizes))
		}
		dt := parseDType(t, c.DType)
		for i, n := range v.Sizes {
			got := make([]float32, n)
			NewTorchGenerator(c.Seed).Randn(got, dt)
			if s := shortSHA(got); s != c.SHA[i] {
				t.Errorf("seed %d %s n=%d: digest %s, torch %s (first %v)", c.Seed, c.DType, n, s, c.SHA[i], got[:min(n, 4)])
			}
		}
	}
	// The required seeds are among them.
	for _, s := range []int64{0, 1, 42, 1<<31 - 1, 1 << 32, 1<<53 - 1, -1} {
		if !seeds[s] {
			t.Errorf("seed %d missing from the vectors", s)
		}
	}
	if len(seeds) < 20 {
		t.Errorf("%d distinct seeds in the vectors, want at least 20", len(seeds))
	}
}

func TestTorchRandnExamples(t *testing.T) {
	v := loadTorchVectors(t)
	for _, c := range v.Examples {
		got := make([]float32, len(c.Values))
		NewTorchGenerator(c.Seed).Randn(got, parseDType(t, c.DType))
		for i, h := range c.Values {
			var want uint32
			if _, err := fmt.Sscanf(h, "%08x", &want); err != nil {
				t.Fatal(err)
			}
			if math.Float32bits(got[i]) != want {
				t.Errorf("seed %d %s n=%d [%d] = %#08x (%v), torch %#08x (%v)", c.Seed, c.DType, len(got), i,
					math.Float32bits(got[i]), got[i], want, math.Float32frombits(want))
			}
		}
	}
}

func TestTorchGeneratorSequence(t *testing.T) {
	v := loadTorchVectors(t)
	for _, c := range v.Sequence {
		g := NewTorchGenerator(c.Seed)
		for k, d := range c.Draws {
			got := make([]float32, d.N)
			g.Randn(got, parseDType(t, d.DType))
			if s := shortSHA(got); s != d.SHA {
				t.Errorf("seed %d draw %d (%s, n=%d): digest %s, torch %s", c.Seed, k, d.DType, d.N, s, d.SHA)
			}
		}
	}
}

func TestTorchLatentNoiseMatchesDiffusers(t *testing.T) {
	v := loadTorchVectors(t)
	if len(v.LatentShapes) == 0 {
		t.Fatal("no latent shapes")
	}
	for _, c := range v.Latents {
		if testing.Short() && c.Seed != 42 {
			continue
		}
		dt := parseDType(t, c.DType)
		for i, s := range v.LatentShapes {
			h, w := s.Height/Downscale, s.Width/Downscale
			n := s.Batch * PackedChannels * h * w
			noise, packed := make([]float32, n), make([]float32, n)
			if err := TorchLatentNoise(noise, c.Seed, dt, s.Batch, h, w); err != nil {
				t.Fatal(err)
			}
			if err := Pack(packed, noise, s.Batch, PackedChannels, h, w); err != nil {
				t.Fatal(err)
			}
			name := fmt.Sprintf("seed %d %s batch %d %dx%d", c.Seed, c.DType, s.Batch, s.Width, s.Height)
			if got := shortSHA(noise); got != c.Noise[i] {
				t.Errorf("%s: noise digest %s, torch %s", name, got, c.Noise[i])
			}
			if got := shortSHA(packed); got != c.Packed[i] {
				t.Errorf("%s: packed digest %s, diffusers %s", name, got, c.Packed[i])
			}
		}
	}
}

// A float uniform has 2^24 possible values, so the float32 kernel can be
// compared with torch's compiled one on every input: each u1 with angle 0
// (the output is the radius) and each u2 at two fixed radii.
func TestBoxMuller16AllInputsMatchTorch(t *testing.T) {
	if testing.Short() {
		t.Skip("2^24 inputs per sweep")
	}
	k := loadTorchVectors(t).Kernel
	if len(k.AngleU1) == 0 || len(k.AngleU1) != len(k.Angle) {
		t.Fatal("kernel sweeps missing")
	}
	sweep := func(fill func(run *[16]float32, base uint32), lanes int) string {
		h := sha256.New()
		var run [16]float32
		var b [64]byte
		for base := uint32(0); base < 1<<24; base += 8 {
			fill(&run, base)
			boxMuller16(&run)
			for i, v := range run[:lanes] {
				binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
			}
			h.Write(b[:4*lanes])
		}
		return hex.EncodeToString(h.Sum(nil))[:16]
	}
	got := sweep(func(run *[16]float32, base uint32) {
		for j := range 8 {
			run[j], run[j+8] = float32(base+uint32(j))*0x1p-24, 0
		}
	}, 8)
	if got != k.Radius {
		t.Errorf("radius sweep digest %s, torch %s", got, k.Radius)
	}
	for i, u1 := range k.AngleU1 {
		got := sweep(func(run *[16]float32, base uint32) {
			for j := range 8 {
				run[j], run[j+8] = float32(u1)*0x1p-24, float32(base+uint32(j))*0x1p-24
			}
		}, 16)
		if got != k.Angle[i] {
			t.Errorf("angle sweep at u1 = %d·2^-24: digest %s, torch %s", u1, got, k.Angle[i])
		}
	}
}

// The reference cases of testdata/reference/seeds let diffusers' pipeline
// draw its own noise from the seed; it recorded what it drew.
func TestTorchLatentNoiseMatchesReferencePipeline(t *testing.T) {
	const dir = "../../testdata/reference/seeds"
	raw, err := os.ReadFile(dir + "/index.json")
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		Cases []struct {
			Name      string `json:"name"`
			Width     int    `json:"width"`
			Height    int    `json:"height"`
			NumImages int    `json:"num_images"`
			Seed      int64  `json:"seed"`
			Arrays    map[string]struct {
				File  string `json:"file"`
				DType string `json:"dtype"`
				Shape []int  `json:"shape"`
			} `json:"arrays"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Cases) == 0 {
		t.Fatal("no cases")
	}
	for _, c := range idx.Cases {
		a := c.Arrays["pipeline_noise"]
		b, err := os.ReadFile(dir + "/" + a.File)
		if err != nil {
			t.Fatal(err)
		}
		h, w := c.Height/Downscale, c.Width/Downscale
		got := make([]float32, c.NumImages*PackedChannels*h*w)
		if a.DType != "float32" || len(b) != 4*len(got) {
			t.Fatalf("%s: pipeline_noise is %s with %d bytes, want float32 with %d", c.Name, a.DType, len(b), 4*len(got))
		}
		if err := TorchLatentNoise(got, c.Seed, TorchFloat32, c.NumImages, h, w); err != nil {
			t.Fatal(err)
		}
		for i, v := range got {
			if want := binary.LittleEndian.Uint32(b[4*i:]); math.Float32bits(v) != want {
				t.Fatalf("%s (seed %d): value %d = %#08x, the pipeline drew %#08x", c.Name, c.Seed, i, math.Float32bits(v), want)
			}
		}
	}
}

func TestTorchLatentNoiseRejectsBadInput(t *testing.T) {
	dst := make([]float32, 2*PackedChannels*3*4)
	for name, err := range map[string]error{
		"zero batch": TorchLatentNoise(dst, 1, TorchFloat32, 0, 3, 4),
		"negative h": TorchLatentNoise(dst, 1, TorchFloat32, 2, -3, 4),
		"short dst":  TorchLatentNoise(dst[:10], 1, TorchFloat32, 2, 3, 4),
		"long dst":   TorchLatentNoise(append(dst, 0), 1, TorchFloat32, 2, 3, 4),
		"bad dtype":  TorchLatentNoise(dst, 1, TorchDType(7), 2, 3, 4),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if err := TorchLatentNoise(dst, 1, TorchFloat32, 2, 3, 4); err != nil {
		t.Errorf("valid input: %v", err)
	}
}

// torch seeds its Mersenne Twister with the low 32 bits of the seed.
func TestTorchSeedUsesLow32Bits(t *testing.T) {
	for _, pair := range [][2]int64{{0, 1 << 32}, {42, 1<<32 + 42}, {-1, 1<<32 - 1}, {math.MinInt64, 0}} {
		a, b := make([]float32, 40), make([]float32, 40)
		TorchRandn(pair[0], a)
		TorchRandn(pair[1], b)
		for i := range a {
			if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
				t.Fatalf("seeds %d and %d differ at %d", pair[0], pair[1], i)
			}
		}
	}
}

// MT19937's published check value: the 10000th output for the default seed
// 5489 is 4123659995 (C++ [rand.predef]).
func TestTorchGeneratorMT19937(t *testing.T) {
	g := NewTorchGenerator(5489)
	var x uint32
	for range 10000 {
		x = g.mt.Uint32()
	}
	if x != 4123659995 {
		t.Fatalf("10000th MT19937 output = %d, want 4123659995", x)
	}
}

// The batch is one draw: image k of a batch is not the noise of any seed
// drawn alone, and image 0 of a batch is the single-image noise.
func TestTorchLatentNoiseBatchIsOneDraw(t *testing.T) {
	const h, w = 4, 4
	per := PackedChannels * h * w
	batch := make([]float32, 3*per)
	if err := TorchLatentNoise(batch, 7, TorchFloat32, 3, h, w); err != nil {
		t.Fatal(err)
	}
	one := make([]float32, per)
	if err := TorchLatentNoise(one, 7, TorchFloat32, 1, h, w); err != nil {
		t.Fatal(err)
	}
	for i := range one {
		if one[i] != batch[i] {
			t.Fatalf("image 0 of the batch differs from the single image at %d", i)
		}
	}
	next := make([]float32, per)
	TorchRandn(8, next)
	same := 0
	for i := range next {
		if next[i] == batch[per+i] {
			same++
		}
	}
	if same > per/100 {
		t.Errorf("image 1 of seed 7 shares %d of %d values with seed 8", same, per)
	}
}

// fma32 keeps the low bits of the product that a separate multiply and
// add would lose.
func TestFMA32Fuses(t *testing.T) {
	a := float32(1 + 0x1p-12) // a² = 1 + 2^-11 + 2^-24 needs 25 bits
	if got, want := fma32(a, a, -1), float32(0x1p-11+0x1p-24); got != want {
		t.Errorf("fma32(1+2^-12, 1+2^-12, -1) = %g, want %g", got, want)
	}
	if unfused := float32(a*a) - 1; unfused == float32(0x1p-11+0x1p-24) {
		t.Errorf("the case does not tell fused from unfused")
	}
}

// Against BenchmarkInitialNoise1024x768 (the Philox stream) for the same
// latent: one 1024x768 image, (1, 128, 48, 64).
func BenchmarkTorchLatentNoise1024x768(b *testing.B) {
	x := make([]float32, benchN)
	b.SetBytes(4 * benchN)
	for b.Loop() {
		if err := TorchLatentNoise(x, 42, TorchFloat32, 1, 48, 64); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTorchLatentNoiseBF16_1024x768(b *testing.B) {
	x := make([]float32, benchN)
	b.SetBytes(4 * benchN)
	for b.Loop() {
		if err := TorchLatentNoise(x, 42, TorchBFloat16, 1, 48, 64); err != nil {
			b.Fatal(err)
		}
	}
}
