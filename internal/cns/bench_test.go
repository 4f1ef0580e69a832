package cns

import (
	"fmt"
	"runtime"
	"testing"
)

// CNS cost per step at 1024×768: packed 48×64×128, unpacked 96×128×32.
func benchSampler(b *testing.B, workers int) *Sampler {
	b.Helper()
	p := activeParams()
	return mustSampler(b, Config{Params: p, Sigmas: mustSigmas(b, 3072, 50), Height: 48, Width: 64,
		Seeds: []int64{42}, Workers: workers})
}

// BenchmarkCNSStep is the whole CNS step (white draw, FFT coloring, SDE
// update) on the calling goroutine: the CPU time CNS adds per step.
func BenchmarkCNSStep1024x768(b *testing.B) {
	s := benchSampler(b, 1)
	x, v := sinPattern(3072*128), sinPattern(3072*128)
	i := 0
	for b.Loop() {
		if err := s.Step(10+i%30, x, v); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkCNSNoise is the noise synthesis alone, with 1 and with GOMAXPROCS
// workers (wall time; it can run while the GPU computes the step's
// velocity).
func BenchmarkCNSNoise1024x768(b *testing.B) {
	for _, workers := range []int{1, runtime.GOMAXPROCS(0)} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			s := benchSampler(b, workers)
			xi := make([]float32, 3072*128)
			i := 0
			for b.Loop() {
				if _, err := s.Noise(10+i%30, xi); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkCNSUpdate is the SDE update with precomputed noise: what remains
// on the critical path when Noise overlaps the model call.
func BenchmarkCNSUpdate1024x768(b *testing.B) {
	s := benchSampler(b, 1)
	x, v, xi := sinPattern(3072*128), sinPattern(3072*128), sinPattern(3072*128)
	for b.Loop() {
		if err := s.StepWithNoise(20, x, v, xi); err != nil {
			b.Fatal(err)
		}
	}
}
