package pipeline

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/kleinserve/kleinserve/internal/engine"
)

// BenchmarkIOBinding measures a step of the denoising loop (transformer
// call, CFG, Euler step) of the tiny model on the CPU (CFG, 16 steps, one
// ONNX Runtime thread) with io binding off, on (the CPU binds the host
// tensors) and staged (device tensors of the CPU allocator filled by
// copies: the GPU's code path on host memory), alternating the three so
// that load on the machine hits them alike. A step is the time between two
// progress callbacks, in thread CPU time (threadCPU: ONNX Runtime runs on
// the caller's thread) and wall time; the ratios are against off.
func BenchmarkIOBinding(b *testing.B) {
	for _, size := range []struct {
		name string
		w, h int
	}{{"256x256", 256, 256}, {"1024x768", 1024, 768}} {
		b.Run(size.name, func(b *testing.B) {
			req := engine.Request{Prompt: "a lighthouse at dusk", GuidanceScale: 5, Steps: 16,
				Width: size.w, Height: size.h, NumImages: 1, OutputFormat: engine.FormatPNG}
			modes := []struct {
				name  string
				io    IOBinding
				place ioPlacement
			}{{"off", IOBindingOff, ioPlacement{}}, {"on", IOBindingOn, ioPlacement{}}, {"staged", IOBindingOn, stagedOnHost}}
			engines := make([]*Engine, len(modes))
			for i, m := range modes {
				engines[i] = openTinyWith(b, func(c *Config) { c.IOBinding = m.io })
				engines[i].ioPlace = m.place
			}
			runtime.LockOSThread() // Generate runs ONNX Runtime on this thread: threadCPU counts it
			defer runtime.UnlockOSThread()
			cpu := make([][]time.Duration, len(modes))
			wall := make([][]time.Duration, len(modes))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for k, e := range engines {
					var lastCPU time.Duration
					var last time.Time
					r := req
					r.Seed = int64(i)
					_, err := e.Generate(context.Background(), r, func(p engine.Progress) {
						now, c := time.Now(), threadCPU(b)
						if p.Step > 1 { // the first step also pays for the tensors' allocation
							cpu[k] = append(cpu[k], c-lastCPU)
							wall[k] = append(wall[k], now.Sub(last))
						}
						last, lastCPU = now, c
					})
					if err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			for k, m := range modes {
				b.ReportMetric(float64(median(cpu[k]).Microseconds())/1000, "cpu-ms/step-"+m.name)
				if k > 0 {
					b.ReportMetric(float64(median(cpu[k]))/float64(median(cpu[0])), "cpu-ratio-"+m.name)
					b.ReportMetric(float64(median(wall[k]))/float64(median(wall[0])), "wall-ratio-"+m.name)
				}
			}
		})
	}
}
