package pipeline

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/lora"
)

// baseTinyEnv names a model directory with the pre-LoRA transformer:
//
//	python scripts/export_onnx.py --tiny --lora none --out /tmp/tiny-base --tokenizer-from …
//
// (its transformer.onnx is byte-identical to the one models/tiny had before
// the LoRA inputs).
const baseTinyEnv = "KLEINSERVE_BASE_TINY"

// pairTimes collects an alternating comparison of a and b: wall and thread
// CPU time of each run.
type pairTimes struct{ wallA, wallB, cpuA, cpuB []time.Duration }

// run times fa, then fb.
func (p *pairTimes) run(b *testing.B, fa, fb func() error) {
	for k, f := range []func() error{fa, fb} {
		start, cpu := time.Now(), threadCPU(b)
		if err := f(); err != nil {
			b.Fatal(err)
		}
		wall, used := time.Since(start), threadCPU(b)-cpu
		if k == 0 {
			p.wallA, p.cpuA = append(p.wallA, wall), append(p.cpuA, used)
		} else {
			p.wallB, p.cpuB = append(p.wallB, wall), append(p.cpuB, used)
		}
	}
}

// generate runs req on e and drops the result.
func generate(e *Engine, req engine.Request) error {
	_, err := e.Generate(context.Background(), req, nil)
	return err
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// pairedRatios reports how much slower a is than b from runs taken in
// adjacent pairs: the median of the per-pair ratios (robust to load that
// drifts over the run, as on a shared machine) and the ratio of the two
// fastest runs (robust to load spikes).
func pairedRatios(bm *testing.B, a, b []time.Duration) {
	r := make([]float64, len(a))
	for i := range a {
		r[i] = float64(a[i]) / float64(b[i])
	}
	slices.Sort(r)
	bm.ReportMetric(r[len(r)/2], "ratio")
	bm.ReportMetric(float64(slices.Min(a))/float64(slices.Min(b)), "ratio-of-min")
}

// threadCPU is the CPU time the calling OS thread has used. With one
// intra-op thread ONNX Runtime runs a graph on the caller's thread, so on a
// locked thread this counts a Run's work and not the time other processes
// of a shared machine take from it.
func threadCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkLoRANoLoRAOverhead compares one CFG transformer forward (batch
// 2, the Velocity call) of models/tiny, which carries rank-1 zero pairs at
// every linear, with the pre-LoRA export, alternating the two so that load
// on the machine hits both alike, in thread CPU time (threadCPU) and in
// wall time. The bound is 2% (ratio 1.02).
func BenchmarkLoRANoLoRAOverhead(b *testing.B) {
	dir := os.Getenv(baseTinyEnv)
	if dir == "" {
		b.Skipf("set %s to a --lora none export of the tiny model", baseTinyEnv)
	}
	withLoRA := openTiny(b)
	base := openTinyWith(b, func(c *Config) { c.ModelDir = dir })
	if base.lora.targets != nil {
		b.Fatalf("%s has LoRA inputs", dir)
	}
	for _, size := range []struct {
		name string
		h, w int
	}{{"256x256", 16, 16}, {"512x512", 32, 32}, {"1024x768", 48, 64}} {
		b.Run(size.name, func(b *testing.B) {
			ctx := context.Background()
			fl, relL, err := withLoRA.Velocity(ctx, "a lighthouse", "", 4, size.h, size.w)
			if err != nil {
				b.Fatal(err)
			}
			defer relL()
			fb, relB, err := base.Velocity(ctx, "a lighthouse", "", 4, size.h, size.w)
			if err != nil {
				b.Fatal(err)
			}
			defer relB()
			x := make([]float32, size.h*size.w*128)
			rng := rand.New(rand.NewPCG(1, 1))
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			vl, vb := make([]float32, len(x)), make([]float32, len(x))
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var p pairTimes
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p.run(b, func() error { return fl(ctx, x, 0.5, vl) }, func() error { return fb(ctx, x, 0.5, vb) })
			}
			b.StopTimer()
			tl, tb, cl, cb := p.wallA, p.wallB, p.cpuA, p.cpuB
			if !slices.Equal(vl, vb) {
				b.Fatalf("the LoRA graph without LoRA differs from the base graph (relative %.3g)", relErr(vl, vb))
			}
			b.ReportMetric(float64(median(cb).Microseconds())/1000, "cpu-ms-base")
			b.ReportMetric(float64(median(cl).Microseconds())/1000, "cpu-ms-lora-graph")
			b.ReportMetric(float64(median(cl))/float64(median(cb)), "cpu-ratio")
			pairedRatios(b, tl, tb)
		})
	}
}

// BenchmarkLoRANoLoRARequest is the same comparison for whole requests,
// the requests of BenchmarkGenerateTiny (28 CFG steps, safety checker on),
// alternating between the pre-LoRA export and models/tiny.
func BenchmarkLoRANoLoRARequest(b *testing.B) {
	dir := os.Getenv(baseTinyEnv)
	if dir == "" {
		b.Skipf("set %s to a --lora none export of the tiny model", baseTinyEnv)
	}
	withLoRA := openTiny(b)
	base := openTinyWith(b, func(c *Config) { c.ModelDir = dir })
	for _, size := range []struct {
		name string
		w, h int
	}{{"512x512", 512, 512}, {"1024x768", 1024, 768}} {
		b.Run(size.name, func(b *testing.B) {
			req := engine.Request{Prompt: "a lighthouse at dusk", GuidanceScale: 5, Steps: 28, Width: size.w,
				Height: size.h, NumImages: 1, EnableSafetyChecker: true, OutputFormat: engine.FormatPNG}
			runtime.LockOSThread() // Generate runs ONNX Runtime on this thread: threadCPU counts it
			defer runtime.UnlockOSThread()
			var p pairTimes
			for i := 0; i < b.N; i++ {
				req.Seed = int64(i)
				p.run(b, func() error { return generate(withLoRA, req) }, func() error { return generate(base, req) })
			}
			tl, tb, cl, cb := p.wallA, p.wallB, p.cpuA, p.cpuB
			b.ReportMetric(float64(median(cb).Milliseconds()), "cpu-ms-base")
			b.ReportMetric(float64(median(cl).Milliseconds()), "cpu-ms-lora-graph")
			b.ReportMetric(float64(median(cl))/float64(median(cb)), "cpu-ratio")
			pairedRatios(b, tl, tb)
		})
	}
}

// writeRandomLoRA writes a diffusers-layout LoRA of the given rank at every
// target of e's transformer (F32, scale 1), as a LoRA directory file.
func writeRandomLoRA(t testing.TB, e *Engine, dir, name string, rank int, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 9))
	header := map[string]any{}
	var body []byte
	type ent struct {
		key   string
		shape []int
	}
	var ents []ent
	for i := 0; i < e.lora.targets.Len(); i++ {
		tg := e.lora.targets.At(i)
		ents = append(ents, ent{"transformer." + tg.Module + ".lora_A.weight", []int{rank, tg.In}},
			ent{"transformer." + tg.Module + ".lora_B.weight", []int{tg.Out, rank}})
	}
	for _, en := range ents {
		n := en.shape[0] * en.shape[1]
		begin := len(body)
		std := 1 / math.Sqrt(float64(en.shape[1]))
		for j := 0; j < n; j++ {
			body = binary.LittleEndian.AppendUint32(body, math.Float32bits(float32(rng.NormFloat64()*std*0.3)))
		}
		header[en.key] = map[string]any{"dtype": "F32", "shape": en.shape, "data_offsets": []int{begin, len(body)}}
	}
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	out := append(binary.LittleEndian.AppendUint64(nil, uint64(len(h))), h...)
	if err := os.WriteFile(filepath.Join(dir, name), append(out, body...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// openTinyWithLoRAs opens the tiny model with a LoRA directory holding two
// random rank-r LoRAs over every target, a.safetensors and b.safetensors.
func openTinyWithLoRAs(b *testing.B, rank int) *Engine {
	dir := b.TempDir()
	var store *lora.Store
	e := openTinyWith(b, func(c *Config) {
		var err error
		if store, err = lora.NewStore(lora.StoreConfig{Dir: dir}); err != nil {
			b.Fatal(err)
		}
		c.LoRA = store
	})
	b.Cleanup(func() { _ = store.Close() })
	writeRandomLoRA(b, e, dir, "a.safetensors", rank, 1)
	writeRandomLoRA(b, e, dir, "b.safetensors", rank, 2)
	return e
}

// BenchmarkLoRARank32 runs a whole request (CFG, 8 steps, no safety) with
// a rank-32 LoRA at every target against the same request without LoRA,
// alternating, and reports their ratio (thread CPU time and wall time) next
// to the LoRA's FLOP share of a transformer forward (flops.go,
// loraflops.go). On the tiny model rank 32 is the full width of most
// linears, so the share is large; the 4B model's is 1.08% at 1024x768.
func BenchmarkLoRARank32(b *testing.B) {
	e := openTinyWithLoRAs(b, 32)
	for _, size := range []struct {
		name string
		w, h int
	}{{"256x256", 256, 256}, {"512x512", 512, 512}} {
		b.Run(size.name, func(b *testing.B) {
			req := engine.Request{Prompt: "a lighthouse", GuidanceScale: 4, Steps: 8, Width: size.w, Height: size.h,
				NumImages: 1, OutputFormat: engine.FormatPNG}
			withL := req
			withL.LoRAs = []engine.LoRA{{Path: "a", Scale: 1}}
			for _, r := range []engine.Request{req, withL} { // warm: prompt cache, adapter conversion
				if _, err := e.Generate(context.Background(), r, nil); err != nil {
					b.Fatal(err)
				}
			}
			runtime.LockOSThread() // Generate runs ONNX Runtime on this thread: threadCPU counts it
			defer runtime.UnlockOSThread()
			var p pairTimes
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p.run(b, func() error { return generate(e, req) }, func() error { return generate(e, withL) })
			}
			b.StopTimer()
			tn, tl, cn, cl := p.wallA, p.wallB, p.cpuA, p.cpuB
			b.ReportMetric(float64(median(cl))/float64(median(cn)), "cpu-ratio")
			S := (size.w / 16) * (size.h / 16)
			a := e.Architecture()
			share := (a.LoRAFLOPs(S, e.TextLength(), 32) - a.LoRAFLOPs(S, e.TextLength(), 1)) / a.TransformerFLOPs(S, e.TextLength())
			b.ReportMetric(float64(median(tn).Microseconds())/1000, "ms-no-lora")
			b.ReportMetric(float64(median(tl).Microseconds())/1000, "ms-rank32")
			pairedRatios(b, tl, tn)
			b.ReportMetric(100*share, "%flop-share")
		})
	}
}

// BenchmarkLoRASwitch measures what changing LoRA between consecutive
// requests costs: requests alternating between two rank-32 LoRAs against
// requests repeating one (both converted and their inputs built before the
// clock starts: recent sets are kept). The engine keeps its one
// transformer session (TestLoRASwitchKeepsTheSession). prepare-ms is what a
// set no recent request used costs once: loading the file from the LoRA
// directory (converting it is not counted: memo), stacking and building
// its inputs.
func BenchmarkLoRASwitch(b *testing.B) {
	e := openTinyWithLoRAs(b, 32)
	req := engine.Request{Prompt: "a lighthouse", GuidanceScale: 4, Steps: 4, Width: 256, Height: 256,
		NumImages: 1, OutputFormat: engine.FormatPNG}
	with := func(p string) engine.Request { r := req; r.LoRAs = []engine.LoRA{{Path: p, Scale: 1}}; return r }
	for _, r := range []engine.Request{with("a"), with("b")} {
		if _, err := e.Generate(context.Background(), r, nil); err != nil {
			b.Fatal(err)
		}
	}
	var same, alt, prep []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for k, p := range []string{"a", "a", "b", "a"} { // a→a is "same"; a→b and b→a are switches
			start := time.Now()
			if _, err := e.Generate(context.Background(), with(p), nil); err != nil {
				b.Fatal(err)
			}
			d := time.Since(start)
			switch k {
			case 1:
				same = append(same, d)
			case 2, 3:
				alt = append(alt, d)
			}
		}
		start := time.Now()
		set, err := e.lora.prepare(context.Background(), with("b").LoRAs)
		if err != nil {
			b.Fatal(err)
		}
		lt, err := newLoRATensors(e.dit.floatT, e.lora.targets, lora.Stack(e.lora.targets, set.ws), e.lora.switched, true)
		if err != nil {
			b.Fatal(err)
		}
		prep = append(prep, time.Since(start))
		_ = lt.destroy()
	}
	b.StopTimer()
	b.ReportMetric(float64(median(same).Microseconds())/1000, "ms-same-lora")
	b.ReportMetric(float64(median(alt).Microseconds())/1000, "ms-switched")
	b.ReportMetric(float64(median(alt)-median(same))/1e6, "switch-ms")
	b.ReportMetric(float64(median(prep).Microseconds())/1000, "prepare-ms")
}
