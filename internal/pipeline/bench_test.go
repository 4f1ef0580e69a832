package pipeline

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/kleinserve/kleinserve/internal/engine"
)

// BenchmarkGenerateTiny measures a whole request on the tiny model on CPU
// and reports the share of its time spent outside ONNX Runtime Run calls:
// tokenisation, noise, schedule, CFG and Euler arithmetic, tensor copies,
// safety preprocessing and PNG encoding. The goal is <= 2%.
func BenchmarkGenerateTiny(b *testing.B) {
	for _, bc := range []struct {
		name string
		req  engine.Request
	}{
		{"512x512_28steps_cfg", engine.Request{Prompt: "a lighthouse at dusk", GuidanceScale: 5, Steps: 28,
			Width: 512, Height: 512, NumImages: 1, EnableSafetyChecker: true, OutputFormat: engine.FormatPNG}},
		{"1024x768_28steps_cfg", engine.Request{Prompt: "a lighthouse at dusk", GuidanceScale: 5, Steps: 28,
			Width: 1024, Height: 768, NumImages: 1, EnableSafetyChecker: true, OutputFormat: engine.FormatPNG}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := openTiny(b)
			b.ResetTimer()
			var total, inORT time.Duration
			for i := 0; i < b.N; i++ {
				req := bc.req
				req.Seed = int64(i)
				start := time.Now()
				if _, err := e.Generate(context.Background(), req, nil); err != nil {
					b.Fatal(err)
				}
				total += time.Since(start)
				inORT += time.Duration(e.lastORTTime.Load())
			}
			b.ReportMetric(100*float64(total-inORT)/float64(total), "%outside-ort")
			b.ReportMetric(float64(inORT.Milliseconds())/float64(b.N), "ms-in-ort/op")
		})
	}
}

// BenchmarkConcurrentRequests compares four same-size requests one after
// another with four at once (sharing transformer calls) on the tiny model
// on CPU, in images per second.
func BenchmarkConcurrentRequests(b *testing.B) {
	const n = 4
	req := engine.Request{Prompt: "a lighthouse at dusk", GuidanceScale: 5, Steps: 14,
		Width: 256, Height: 256, NumImages: 1, OutputFormat: engine.FormatPNG}
	for _, mode := range []string{"one_at_a_time", "all_at_once"} {
		b.Run(mode, func(b *testing.B) {
			e := openTinyWith(b, func(c *Config) { c.MaxConcurrent = n })
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var wg sync.WaitGroup
				for k := 0; k < n; k++ {
					r := req
					r.Seed = int64(i*n + k)
					if mode == "one_at_a_time" {
						if _, err := e.Generate(context.Background(), r, nil); err != nil {
							b.Fatal(err)
						}
						continue
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						if _, err := e.Generate(context.Background(), r, nil); err != nil {
							b.Error(err)
						}
					}()
				}
				wg.Wait()
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "images/s")
			c := e.BatchCounts()
			b.ReportMetric(float64(c.Shared)/float64(max(c.Calls, 1)), "shared-call-share")
		})
	}
}
