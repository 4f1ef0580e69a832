package pipeline

import (
	"bytes"
	"context"
	"errors"
	"image/png"
	"sync"
	"testing"
	"time"

	"github.com/kleinserve/kleinserve/internal/engine"
)

// TestConcurrentGenerationsShareTransformerCalls runs five requests at once
// on an engine with five slots: three of one size (CFG, no CFG, two images
// with a negative prompt and fewer steps), one of another size, and one
// that is canceled at step 3. The same-size loops share transformer calls,
// and every finished image equals the one the request gives alone. The
// calls' rows change as loops join and leave, so it runs with each io
// binding: the host tensors bound, device tensors filled by copies (the
// GPU's code path, on host memory) and none.
func TestConcurrentGenerationsShareTransformerCalls(t *testing.T) {
	staged := stagedOnHost
	for _, mode := range []struct {
		name  string
		io    IOBinding
		place *ioPlacement
	}{{"io_binding", IOBindingOn, nil}, {"io_binding_staged", IOBindingOn, &staged}, {"no_io_binding", IOBindingOff, nil}} {
		t.Run(mode.name, func(t *testing.T) { concurrentGenerationsShareCalls(t, mode.io, mode.place) })
	}
}

func concurrentGenerationsShareCalls(t *testing.T, io IOBinding, place *ioPlacement) {
	e := openTinyWith(t, func(c *Config) { c.MaxConcurrent, c.IOBinding = 5, io })
	if place != nil {
		e.ioPlace = *place
	}
	reqs := []engine.Request{
		{Prompt: "a lighthouse at dusk", GuidanceScale: 5, Steps: 12, Width: 256, Height: 192, NumImages: 1, Seed: 1},
		{Prompt: "a red fox in snow", GuidanceScale: 1, Steps: 12, Width: 256, Height: 192, NumImages: 1, Seed: 2},
		{Prompt: "", NegativePrompt: "blurry", GuidanceScale: 3.5, Steps: 9, Width: 256, Height: 192, NumImages: 2, Seed: 3},
		{Prompt: "another size", GuidanceScale: 4, Steps: 12, Width: 128, Height: 128, NumImages: 1, Seed: 4},
		{Prompt: "canceled at step 3", GuidanceScale: 5, Steps: 12, Width: 256, Height: 192, NumImages: 1, Seed: 5},
	}
	const canceled = 4
	for i := range reqs {
		reqs[i].OutputFormat = engine.FormatPNG
	}

	solo := generateAlone(t, e, reqs[:canceled])
	before := e.batcher.batchCounts()
	if before.Shared != 0 {
		t.Fatalf("one-at-a-time generations shared %d calls", before.Shared)
	}

	results, errs := generateTogether(e, reqs, map[int]int{canceled: 3})
	counts := e.batcher.batchCounts()
	shared := counts.Shared - before.Shared
	t.Logf("concurrent phase: %d transformer calls, %d shared by several generations", counts.Calls-before.Calls, shared)
	if shared == 0 {
		t.Fatal("no transformer call was shared")
	}
	if !errors.Is(errs[canceled], engine.ErrCanceled) {
		t.Fatalf("canceled request: %v", errs[canceled])
	}
	requireSameAsAlone(t, results[:canceled], errs[:canceled], solo)
	if len(e.batcher.groups) != 0 {
		t.Fatalf("%d grid groups left after every loop ended", len(e.batcher.groups))
	}
}

// generateAlone runs each request by itself, one after the other.
func generateAlone(t *testing.T, e *Engine, reqs []engine.Request) []*engine.Result {
	t.Helper()
	solo := make([]*engine.Result, len(reqs))
	for i, req := range reqs {
		res, err := e.Generate(context.Background(), req, nil)
		if err != nil {
			t.Fatal(err)
		}
		solo[i] = res
	}
	return solo
}

// generateTogether runs the requests at once. Every loop waits at step 1
// until all of them got there, so their denoising overlaps however the
// scheduler runs the goroutines. Request i is canceled at step cancelAt[i]
// when that is set.
func generateTogether(e *Engine, reqs []engine.Request, cancelAt map[int]int) ([]*engine.Result, []error) {
	var atStep1 sync.WaitGroup
	atStep1.Add(len(reqs))
	allThere := make(chan struct{})
	go func() { atStep1.Wait(); close(allThere) }()
	results := make([]*engine.Result, len(reqs))
	errs := make([]error, len(reqs))
	var wg sync.WaitGroup
	for i, req := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			results[i], errs[i] = e.Generate(ctx, req, func(p engine.Progress) {
				if p.Step == 1 {
					atStep1.Done()
					select {
					case <-allThere:
					case <-time.After(time.Minute):
					}
				}
				if step, ok := cancelAt[i]; ok && p.Step == step {
					cancel()
				}
			})
		}()
	}
	wg.Wait()
	return results, errs
}

// requireSameAsAlone fails unless every request succeeded with the images
// it gives alone (solo), bit for bit.
func requireSameAsAlone(t *testing.T, results []*engine.Result, errs []error, solo []*engine.Result) {
	t.Helper()
	for i := range solo {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		if len(results[i].Images) != len(solo[i].Images) {
			t.Fatalf("request %d: %d images, alone %d", i, len(results[i].Images), len(solo[i].Images))
		}
		for k := range solo[i].Images {
			if d := maxPixelDiff(t, results[i].Images[k].Data, solo[i].Images[k].Data); d != 0 {
				t.Errorf("request %d image %d: differs from the request alone by up to %d/255", i, k, d)
			}
		}
	}
}

// maxPixelDiff decodes two PNGs and returns their largest channel difference.
func maxPixelDiff(t *testing.T, a, b []byte) int {
	t.Helper()
	ia, err := png.Decode(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	ib, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if ia.Bounds() != ib.Bounds() {
		t.Fatalf("sizes %v and %v", ia.Bounds(), ib.Bounds())
	}
	worst := 0
	r := ia.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			r1, g1, b1, _ := ia.At(x, y).RGBA()
			r2, g2, b2, _ := ib.At(x, y).RGBA()
			for _, d := range []int{int(r1>>8) - int(r2>>8), int(g1>>8) - int(g2>>8), int(b1>>8) - int(b2>>8)} {
				worst = max(worst, d, -d)
			}
		}
	}
	return worst
}
