package pipeline

import (
	"context"
	"testing"
	"time"

	"github.com/kleinserve/kleinserve/internal/engine"
)

// BenchmarkEditReferenceCache measures an edit request with one 512x512
// reference on the tiny model (CPU), with the reference's latents found in
// the cache (hit: the same image each time) and not (miss: a new image each
// time, so the VAE encoder runs). It reports the reference phase
// (preparation + VAE encoding) per request besides the whole request.
func BenchmarkEditReferenceCache(b *testing.B) {
	req := engine.Request{Prompt: "make it a watercolour", GuidanceScale: 4, Steps: 4, Width: 256, Height: 256,
		NumImages: 1, OutputFormat: engine.FormatPNG}
	for _, mode := range []string{"miss", "hit"} {
		b.Run(mode, func(b *testing.B) {
			e := openTiny(b)
			r := req
			r.References = []engine.ReferenceImage{syntheticReference(512, 512, 0)}
			if _, err := e.Generate(context.Background(), r, nil); err != nil { // warm: sessions, prompt cache, this reference
				b.Fatal(err)
			}
			var refPhase time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if mode == "miss" {
					r.References = []engine.ReferenceImage{syntheticReference(512, 512, i+1)}
				}
				res, err := e.Generate(context.Background(), r, nil)
				if err != nil {
					b.Fatal(err)
				}
				refPhase += res.Timings.ReferenceEncoding
			}
			b.StopTimer()
			s := e.ReferenceCacheStats()
			if want := int64(1); mode == "hit" && s.Encodes != want {
				b.Fatalf("hits ran the VAE encoder: %d encodings", s.Encodes)
			}
			b.ReportMetric(float64(refPhase.Microseconds())/1000/float64(b.N), "ms-reference/op")
			b.ReportMetric(float64(s.Encodes-1)/float64(b.N), "encodes/op")
		})
	}
}
