package sampler

import "testing"

// One 1024x768 image: packed latent 3072 tokens x 128 channels.
const benchN = 3072 * PackedChannels

func BenchmarkInitialNoise1024x768(b *testing.B) {
	x := make([]float32, benchN)
	b.SetBytes(4 * benchN)
	for b.Loop() {
		InitialNoise(42, x)
	}
}

func BenchmarkCFG1024x768(b *testing.B) {
	pos, neg, dst := ramp(benchN, 7919, 2001, 1000, 337), ramp(benchN, 104729, 1999, 999, 411), make([]float32, benchN)
	b.SetBytes(4 * benchN)
	for b.Loop() {
		_ = CFG(dst, pos, neg, 4)
	}
}

func BenchmarkEuler1024x768(b *testing.B) {
	x, v := ramp(benchN, 7919, 2001, 1000, 337), ramp(benchN, 104729, 1999, 999, 411)
	b.SetBytes(4 * benchN)
	for b.Loop() {
		_ = Euler(x, v, 0.5, 0.49)
	}
}

func BenchmarkPackUnpack1024x768(b *testing.B) {
	x, y := ramp(benchN, 7919, 2001, 1000, 337), make([]float32, benchN)
	b.SetBytes(8 * benchN)
	for b.Loop() {
		_ = Pack(y, x, 1, PackedChannels, 48, 64)
		_ = Unpack(x, y, 1, PackedChannels, 48, 64)
	}
}
