package sampler

import (
	"math"
	"testing"
)

// Golden schedules printed by testdata/gen_golden.py from diffusers 0.42.1
// (FlowMatchEulerDiscreteScheduler.set_timesteps with the klein pipeline's
// linspace and compute_empirical_mu): float32 bit patterns.
var goldenSchedules = []struct {
	seq, steps int
	mu         float64
	sigmas     []uint32
}{
	{3072, 50, 1.9162195071890524, []uint32{0x3f800000, 0x3f7f3bc4, 0x3f7e7098, 0x3f7d9e20, 0x3f7cc3f3, 0x3f7be1a3, 0x3f7af6ba, 0x3f7a02b5, 0x3f79050e, 0x3f77fd2f, 0x3f76ea74, 0x3f75cc30, 0x3f74a1a5, 0x3f736a03, 0x3f72246b, 0x3f70cfe5, 0x3f6f6b66, 0x3f6df5c5, 0x3f6c6dc1, 0x3f6ad1f3, 0x3f6920d3, 0x3f6758ac, 0x3f6577a0, 0x3f637b90, 0x3f616229, 0x3f5f28cc, 0x3f5ccc88, 0x3f5a4a0e, 0x3f579da1, 0x3f54c300, 0x3f51b552, 0x3f4e6f0e, 0x3f4ae9d6, 0x3f471e48, 0x3f4303d4, 0x3f3e9076, 0x3f39b863, 0x3f346da2, 0x3f2e9f89, 0x3f283a01, 0x3f2124a9, 0x3f194194, 0x3f106ba4, 0x3f06743a, 0x3ef63fef, 0x3edc4424, 0x3ebe2ad5, 0x3e9ae432, 0x3e61f43f, 0x3df96c4a, 0x00000000}},
	{3072, 4, 2.204349832060362, []uint32{0x3f800000, 0x3f76eb76, 0x3f66904e, 0x3f405766, 0x00000000}},
	{4096, 50, 2.0233511571292637, []uint32{0x3f800000, 0x3f7f4fa6, 0x3f7e98f4, 0x3f7ddb91, 0x3f7d171e, 0x3f7c4b34, 0x3f7b7763, 0x3f7a9b33, 0x3f79b624, 0x3f78c7a6, 0x3f77cf27, 0x3f76cbfd, 0x3f75bd76, 0x3f74a2d0, 0x3f737b34, 0x3f7245b8, 0x3f71015c, 0x3f6fad08, 0x3f6e4787, 0x3f6ccf80, 0x3f6b437c, 0x3f69a1d7, 0x3f67e8bd, 0x3f661629, 0x3f6427d2, 0x3f621b2c, 0x3f5fed55, 0x3f5d9b0e, 0x3f5b20a6, 0x3f5879e9, 0x3f55a204, 0x3f52936d, 0x3f4f47bd, 0x3f4bb783, 0x3f47da0a, 0x3f43a510, 0x3f3f0c74, 0x3f3a01b5, 0x3f34735e, 0x3f2e4c3e, 0x3f27724e, 0x3f1fc545, 0x3f171c98, 0x3f0d44a1, 0x3f01fa92, 0x3ee9ccd4, 0x3ecb23be, 0x3ea6b42b, 0x3e7561e0, 0x3e08ed9f, 0x00000000}},
	{4096, 4, 2.291179894115571, []uint32{0x3f800000, 0x3f77a67b, 0x3f687c1f, 0x3f446737, 0x00000000}},
	{8192, 50, 1.8433265, []uint32{0x3f800000, 0x3f7f2cf9, 0x3f7e5299, 0x3f7d7079, 0x3f7c8630, 0x3f7b934a, 0x3f7a974c, 0x3f7991ae, 0x3f7881e5, 0x3f776750, 0x3f76414c, 0x3f750f22, 0x3f73d00d, 0x3f728338, 0x3f7127b9, 0x3f6fbc93, 0x3f6e40b1, 0x3f6cb2e4, 0x3f6b11e0, 0x3f695c38, 0x3f679058, 0x3f65ac85, 0x3f63aed4, 0x3f619521, 0x3f5f5d0e, 0x3f5d03f5, 0x3f5a86de, 0x3f57e276, 0x3f5512f7, 0x3f521426, 0x3f4ee12a, 0x3f4b7484, 0x3f47c7e2, 0x3f43d3ff, 0x3f3f9074, 0x3f3af370, 0x3f35f17f, 0x3f307d1d, 0x3f2a863d, 0x3f23f9b3, 0x3f1cc058, 0x3f14be00, 0x3f0bd006, 0x3f01cb52, 0x3eecf334, 0x3ed32b02, 0x3eb589ea, 0x3e9321b4, 0x3e55612c, 0x3de9e422, 0x00000000}},
	{3072, 1, 2.223140940204143, []uint32{0x3f800000, 0x00000000}},
	{256, 28, 1.7861099310319832, []uint32{0x3f800000, 0x3f7e6bad, 0x3f7cbdcb, 0x3f7af3d8, 0x3f790aff, 0x3f770001, 0x3f74cf2b, 0x3f72743a, 0x3f6fea40, 0x3f6d2b83, 0x3f6a3150, 0x3f66f3c8, 0x3f636993, 0x3f5f878c, 0x3f5b4049, 0x3f56837f, 0x3f513d2f, 0x3f4b5490, 0x3f44aa7c, 0x3f3d174e, 0x3f3467c0, 0x3f2a5851, 0x3f1e8e4a, 0x3f108cde, 0x3eff46e1, 0x3ed59f37, 0x3ea10f54, 0x3e3952a1, 0x00000000}},
	{16, 3, 1.952797189010341, []uint32{0x3f800000, 0x3f6f0aef, 0x3f476a4e, 0x00000000}},
	{4301, 20, 1.18469693, []uint32{0x3f800000, 0x3f7bf1cb, 0x3f779624, 0x3f72e40c, 0x3f6dd10d, 0x3f6850f3, 0x3f625566, 0x3f5bcd6a, 0x3f54a4c1, 0x3f4cc315, 0x3f440ae6, 0x3f3a5812, 0x3f2f7de1, 0x3f234447, 0x3f156418, 0x3f05818a, 0x3ee64857, 0x3ebb557f, 0x3e8870c9, 0x3e1658ae, 0x00000000}},
}

func TestSigmasBitExactAgainstDiffusers(t *testing.T) {
	for _, g := range goldenSchedules {
		if mu := EmpiricalMu(g.seq, g.steps); mu != g.mu {
			t.Errorf("EmpiricalMu(%d,%d) = %v, diffusers %v", g.seq, g.steps, mu, g.mu)
		}
		s, err := Sigmas(g.seq, g.steps)
		if err != nil {
			t.Fatalf("Sigmas(%d,%d): %v", g.seq, g.steps, err)
		}
		if len(s) != len(g.sigmas) {
			t.Fatalf("Sigmas(%d,%d): %d values, want %d", g.seq, g.steps, len(s), len(g.sigmas))
		}
		for i, v := range s {
			if math.Float32bits(v) != g.sigmas[i] {
				t.Errorf("Sigmas(%d,%d)[%d] = %#08x (%v), diffusers %#08x", g.seq, g.steps, i,
					math.Float32bits(v), v, g.sigmas[i])
			}
		}
	}
}

// The schedule values of docs/model.md §5, to the printed 1e-6.
func TestSigmasSpecTable(t *testing.T) {
	spec50 := []float64{1.000000, 0.997006, 0.993906, 0.990694, 0.987365, 0.983912, 0.980327, 0.976604, 0.972733, 0.968707, 0.964515, 0.960147, 0.955591, 0.950836, 0.945868, 0.940672, 0.935233, 0.929531, 0.923550, 0.917266, 0.910657, 0.903697, 0.896357, 0.888604, 0.880404, 0.871716, 0.862496, 0.852693, 0.842249, 0.831100, 0.819173, 0.806382, 0.792631, 0.777806, 0.761777, 0.744392, 0.725470, 0.704798, 0.682122, 0.657135, 0.629466, 0.598657, 0.564142, 0.525211, 0.480957, 0.430207, 0.371421, 0.302522, 0.220658, 0.121789, 0.000000}
	cases := []struct {
		seq, steps int
		mu         float64
		sigmas     []float64
	}{
		{3072, 50, 1.916220, spec50},
		{3072, 4, 2.204350, []float64{1.0, 0.964530, 0.900639, 0.751334, 0}},
		{4096, 50, 2.023351, nil},
		{4096, 4, 2.291180, []float64{1.0, 0.967384, 0.908144, 0.767200, 0}},
	}
	for _, c := range cases {
		if mu := EmpiricalMu(c.seq, c.steps); math.Abs(mu-c.mu) > 5e-7 {
			t.Errorf("mu(%d,%d) = %.7f, spec %.6f", c.seq, c.steps, mu, c.mu)
		}
		if c.seq == 3072 && c.steps == 50 {
			if e := math.Exp(EmpiricalMu(c.seq, c.steps)); math.Abs(e-6.795221) > 5e-7 {
				t.Errorf("exp(mu) = %.7f, spec 6.795221", e)
			}
		}
		s, err := Sigmas(c.seq, c.steps)
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range c.sigmas {
			if math.Abs(float64(s[i])-want) > 1e-6 {
				t.Errorf("sigma(%d,%d)[%d] = %.7f, spec %.6f", c.seq, c.steps, i, s[i], want)
			}
		}
	}
	// The jump of mu at the 4300-token branch (docs/model.md §5).
	if mu := EmpiricalMu(8192, 50); math.Abs(mu-1.8433) > 5e-5 {
		t.Errorf("mu(8192,50) = %v, spec 1.8433", mu)
	}
}

func TestSigmasProperties(t *testing.T) {
	for _, seq := range []int{1, 64, 3072, 4300, 4301, 16384} {
		for _, n := range []int{1, 2, 4, 28, 50, 200} {
			s, err := Sigmas(seq, n)
			if err != nil {
				t.Fatal(err)
			}
			if len(s) != n+1 || s[0] != 1 || s[n] != 0 {
				t.Fatalf("Sigmas(%d,%d): len %d first %v last %v", seq, n, len(s), s[0], s[n])
			}
			for i := 1; i <= n; i++ {
				if !(s[i] < s[i-1]) {
					t.Fatalf("Sigmas(%d,%d) not strictly decreasing at %d: %v >= %v", seq, n, i, s[i], s[i-1])
				}
			}
		}
	}
	if _, err := Sigmas(3072, 0); err == nil {
		t.Error("Sigmas with 0 steps: want error")
	}
	if _, err := Sigmas(0, 10); err == nil {
		t.Error("Sigmas with 0 tokens: want error")
	}
}

// Timestep inputs for the 3072-token, 50-step schedule, from torch CPU
// (testdata/gen_golden.py): fp32 `timesteps/1000`, bf16 `bf16(t)/1000`, and
// the CUDA kernel's reciprocal multiplication emulated on the CPU.
var (
	goldenTimestepFP32 = []uint32{0x3f800000, 0x3f7f3bc4, 0x3f7e7098, 0x3f7d9e20, 0x3f7cc3f3, 0x3f7be1a3, 0x3f7af6ba, 0x3f7a02b5, 0x3f79050e, 0x3f77fd2f, 0x3f76ea74, 0x3f75cc30, 0x3f74a1a5, 0x3f736a03, 0x3f72246a, 0x3f70cfe5, 0x3f6f6b66, 0x3f6df5c5, 0x3f6c6dc1, 0x3f6ad1f3, 0x3f6920d3, 0x3f6758ac, 0x3f6577a0, 0x3f637b90, 0x3f616229, 0x3f5f28cc, 0x3f5ccc88, 0x3f5a4a0e, 0x3f579da1, 0x3f54c300, 0x3f51b552, 0x3f4e6f0e, 0x3f4ae9d6, 0x3f471e48, 0x3f4303d4, 0x3f3e9076, 0x3f39b863, 0x3f346da2, 0x3f2e9f89, 0x3f283a01, 0x3f2124a9, 0x3f194194, 0x3f106ba4, 0x3f06743a, 0x3ef63fef, 0x3edc4424, 0x3ebe2ad5, 0x3e9ae432, 0x3e61f43f, 0x3df96c4a}
	goldenTimestepBF16 = []uint32{0x3f800000, 0x3f7f0000, 0x3f7e0000, 0x3f7e0000, 0x3f7d0000, 0x3f7c0000, 0x3f7b0000, 0x3f7a0000, 0x3f790000, 0x3f780000, 0x3f770000, 0x3f760000, 0x3f750000, 0x3f740000, 0x3f720000, 0x3f710000, 0x3f700000, 0x3f6e0000, 0x3f6d0000, 0x3f6a0000, 0x3f690000, 0x3f670000, 0x3f650000, 0x3f630000, 0x3f610000, 0x3f5f0000, 0x3f5d0000, 0x3f5a0000, 0x3f580000, 0x3f550000, 0x3f520000, 0x3f4f0000, 0x3f4b0000, 0x3f470000, 0x3f430000, 0x3f3e0000, 0x3f390000, 0x3f340000, 0x3f2f0000, 0x3f280000, 0x3f210000, 0x3f1a0000, 0x3f100000, 0x3f060000, 0x3ef60000, 0x3edc0000, 0x3ebe0000, 0x3e9b0000, 0x3e620000, 0x3dfa0000}
	goldenTimestepCUDA = []uint32{0x3f800000, 0x3f7f3bc4, 0x3f7e7098, 0x3f7d9e21, 0x3f7cc3f3, 0x3f7be1a4, 0x3f7af6bb, 0x3f7a02b6, 0x3f79050f, 0x3f77fd30, 0x3f76ea74, 0x3f75cc31, 0x3f74a1a6, 0x3f736a04, 0x3f72246b, 0x3f70cfe6, 0x3f6f6b67, 0x3f6df5c5, 0x3f6c6dc1, 0x3f6ad1f3, 0x3f6920d4, 0x3f6758ad, 0x3f6577a0, 0x3f637b91, 0x3f61622a, 0x3f5f28cc, 0x3f5ccc89, 0x3f5a4a0f, 0x3f579da1, 0x3f54c301, 0x3f51b553, 0x3f4e6f0f, 0x3f4ae9d7, 0x3f471e48, 0x3f4303d5, 0x3f3e9076, 0x3f39b864, 0x3f346da2, 0x3f2e9f8a, 0x3f283a02, 0x3f2124a9, 0x3f194195, 0x3f106ba4, 0x3f06743b, 0x3ef63fef, 0x3edc4425, 0x3ebe2ad6, 0x3e9ae433, 0x3e61f440, 0x3df96c4b}
)

func TestTransformerTimestep(t *testing.T) {
	s, err := Sigmas(3072, 50)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		if got := math.Float32bits(TransformerTimestep(s[i], false)); got != goldenTimestepFP32[i] {
			t.Errorf("fp32 timestep %d = %#08x, torch %#08x", i, got, goldenTimestepFP32[i])
		}
		if got := math.Float32bits(TransformerTimestep(s[i], true)); got != goldenTimestepBF16[i] {
			t.Errorf("bf16 timestep %d = %#08x, torch %#08x", i, got, goldenTimestepBF16[i])
		}
		if got := math.Float32bits(TransformerTimestepCUDA(s[i], false)); got != goldenTimestepCUDA[i] {
			t.Errorf("cuda fp32 timestep %d = %#08x, torch %#08x", i, got, goldenTimestepCUDA[i])
		}
	}
	// docs/model.md §5: the bf16 path gives time values 1000, 996, 992, 992, 988.
	for i, want := range []float32{1000, 996, 992, 992, 988} {
		if got := RoundBF16(TransformerTimestep(s[i], true) * 1000); got != want {
			t.Errorf("bf16 time value %d = %v, spec %v", i, got, want)
		}
	}
	// In bf16 the CPU division and the CUDA reciprocal agree for every
	// representable non-negative timestep up to 1000.
	for h := uint16(0); h < 0x7f80; h++ {
		v := BF16FromBits(h)
		if v > 1000 {
			break
		}
		a := RoundBF16(v / 1000)
		b := RoundBF16(v * float32(1.0/1000.0))
		if a != b {
			t.Fatalf("bf16 %v: division %v, reciprocal %v", v, a, b)
		}
	}
}
