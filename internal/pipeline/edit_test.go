package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/imageprep"
)

// syntheticReference is a deterministic w x h RGB image (seed varies it).
func syntheticReference(w, h, seed int) engine.ReferenceImage {
	ref := engine.ReferenceImage{Pix: make([]uint8, 3*w*h), Width: w, Height: h}
	for i := range ref.Pix {
		ref.Pix[i] = uint8((i*(7+seed) + i/(3*w)*(13+seed) + seed*31) % 251)
	}
	return ref
}

func TestResolveReferences(t *testing.T) {
	ref := func(w, h int) engine.ReferenceImage { return syntheticReference(w, h, 0) }
	for _, c := range []struct {
		name          string
		refs          []engine.ReferenceImage
		width, height int
		wantW, wantH  int
		wantErr       string // substring; "" for success
	}{
		{"no references keep the size", nil, 64, 48, 64, 48, ""},
		{"explicit size kept", []engine.ReferenceImage{ref(150, 90)}, 64, 48, 64, 48, ""},
		{"default size from the first reference", []engine.ReferenceImage{ref(150, 90), ref(64, 64)}, 0, 0, 144, 80, ""},
		{"each side defaults alone", []engine.ReferenceImage{ref(150, 90)}, 0, 48, 144, 48, ""},
		{"budget applies to the default size", []engine.ReferenceImage{ref(1100, 1000)}, 0, 0, 1072, 976, ""},
		{"too many", []engine.ReferenceImage{ref(64, 64), ref(64, 64), ref(64, 64), ref(64, 64), ref(64, 64)}, 64, 64, 0, 0, "at most 4 images"},
		{"too small", []engine.ReferenceImage{ref(64, 64), ref(63, 100)}, 64, 64, 0, 0, "references[1]: reference image not accepted: 63x100 is too small"},
		{"aspect ratio", []engine.ReferenceImage{ref(600, 64)}, 64, 64, 0, 0, "references[0]: reference image not accepted: 600x64 has aspect ratio 9.4:1"},
		{"pixel count", []engine.ReferenceImage{{Pix: make([]uint8, 10), Width: 64, Height: 64}}, 64, 64, 0, 0, "references[0]: 10 bytes for 64x64 RGB pixels"},
		{"default size too wide", []engine.ReferenceImage{{Pix: make([]uint8, 3*2896*362), Width: 2896, Height: 362}}, 0, 0, 0, 0, "taken from references[0] (2896x352)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req := engine.Request{Width: c.width, Height: c.height, References: c.refs}
			err := resolveReferences(&req)
			if c.wantErr != "" {
				if !errors.Is(err, engine.ErrInvalidRequest) || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("got %v, want an invalid-request error containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil || req.Width != c.wantW || req.Height != c.wantH {
				t.Fatalf("got %dx%d, %v; want %dx%d", req.Width, req.Height, err, c.wantW, c.wantH)
			}
		})
	}
}

func TestRefCacheBudgetAndLRU(t *testing.T) {
	latent := func(n int) *refLatent { return &refLatent{h: 1, w: n, tokens: make([]float32, n*128)} }
	key := func(b byte) refKey { return refKey{b} }
	c := newRefCache(3 * 512) // room for three 1x1 latents (128 float32, 512 bytes, each)
	ctx := context.Background()
	encodes := 0
	get := func(k byte, n int) *refLatent {
		l, err := c.get(ctx, key(k), func() (*refLatent, error) { encodes++; return latent(n), nil })
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	a := get(1, 1)
	get(2, 1)
	get(3, 1)
	if get(1, 1) != a || encodes != 3 {
		t.Fatalf("a cached latent was encoded again (%d encodes)", encodes)
	}
	get(4, 1) // evicts 2, the least recently used
	if _, n, used := c.snapshot(); n != 3 || used != 3*512 {
		t.Fatalf("%d entries, %d bytes; want 3 and %d", n, used, 3*512)
	}
	get(2, 1)
	if encodes != 5 {
		t.Fatalf("evicted entry not re-encoded: %d encodes", encodes)
	}
	get(9, 4) // larger than the whole budget: returned, not kept
	if _, n, used := c.snapshot(); n != 3 || used != 3*512 {
		t.Fatalf("an over-budget latent was kept: %d entries, %d bytes", n, used)
	}
	get(9, 4)
	if s, _, _ := c.snapshot(); s.Encodes != 7 || s.Hits != 1 {
		t.Fatalf("stats %+v, want 7 encodes and 1 hit", s)
	}
}

// Concurrent requests for one reference encode it once; a failed encoding
// is not shared but retried (by a waiter, or by the next request).
func TestRefCacheEncodesOnce(t *testing.T) {
	c := newRefCache(1 << 20)
	ctx := context.Background()
	release := make(chan struct{})
	var encodes atomic.Int32
	var wg sync.WaitGroup
	results := make([]*refLatent, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := c.get(ctx, refKey{7}, func() (*refLatent, error) {
				encodes.Add(1)
				<-release
				return &refLatent{h: 1, w: 1, tokens: make([]float32, 128)}, nil
			})
			if err != nil {
				t.Error(err)
			}
			results[i] = l
		}()
	}
	waitInFlight(c, refKey{7})
	close(release)
	wg.Wait()
	if encodes.Load() != 1 {
		t.Fatalf("%d encodings of one reference", encodes.Load())
	}
	for _, l := range results {
		if l != results[0] {
			t.Fatal("waiters got different latents")
		}
	}

	failed := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := c.get(ctx, refKey{8}, func() (*refLatent, error) {
			<-failed
			return nil, context.Canceled
		})
		done <- err
	}()
	waitInFlight(c, refKey{8})
	retried := make(chan *refLatent, 1)
	go func() {
		l, _ := c.get(ctx, refKey{8}, func() (*refLatent, error) {
			return &refLatent{h: 1, w: 1, tokens: make([]float32, 128)}, nil
		})
		retried <- l
	}()
	close(failed)
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("failed encoding: %v", err)
	}
	if l := <-retried; l == nil {
		t.Fatal("the waiter did not encode after the failure")
	}
	// A waiter whose own context ends stops waiting.
	block := make(chan struct{})
	go func() {
		_, _ = c.get(ctx, refKey{9}, func() (*refLatent, error) { <-block; return nil, errors.New("x") })
	}()
	waitInFlight(c, refKey{9})
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if _, err := c.get(short, refKey{9}, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiter with an ended context: %v", err)
	}
	close(block)
}

// waitInFlight returns once an encoding of key is in progress.
func waitInFlight(c *refCache, key refKey) {
	for {
		c.mu.Lock()
		_, ok := c.flight[key]
		c.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// The second edit with the same reference finds its latents cached: the
// VAE encoder does not run again, and the image is the same.
func TestEditReferenceCacheHit(t *testing.T) {
	e := openTiny(t)
	req := engine.Request{Prompt: "make it blue", GuidanceScale: 4, Steps: 2, Width: 64, Height: 48, NumImages: 1,
		Seed: 3, OutputFormat: engine.FormatPNG, References: []engine.ReferenceImage{syntheticReference(100, 72, 1)}}
	first, err := e.Generate(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	s1, n, _ := e.refCache.snapshot()
	// A copy of the pixels: the key is the content, not the slice.
	req.References = []engine.ReferenceImage{syntheticReference(100, 72, 1)}
	second, err := e.Generate(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	s2 := e.ReferenceCacheStats()
	if s1.Encodes != 1 || n != 1 || s2.Encodes != 1 || s2.Hits != s1.Hits+1 || s2.Entries != 1 || s2.Bytes != 4*6*128*4 {
		t.Fatalf("cache stats %+v then %+v (%d entries): want one encoding of a 4x6 grid, then a hit", s1, s2, n)
	}
	if !bytes.Equal(first.Images[0].Data, second.Images[0].Data) {
		t.Fatal("the cached reference gave another image")
	}
	req.References = []engine.ReferenceImage{syntheticReference(100, 72, 2)}
	if _, err := e.Generate(context.Background(), req, nil); err != nil {
		t.Fatal(err)
	}
	if s3, _, _ := e.refCache.snapshot(); s3.Encodes != 2 {
		t.Fatalf("another reference was not encoded: %+v", s3)
	}
}

// TestConcurrentEditsShareTransformerCalls runs four requests at once on
// one 64x48 grid: two edits whose references differ but have the same
// grids (they share calls), an edit with other grids and a text-to-image
// request (neither can join them). Every image equals the request alone.
func TestConcurrentEditsShareTransformerCalls(t *testing.T) {
	e := openTinyWith(t, func(c *Config) { c.MaxConcurrent = 4 })
	base := engine.Request{GuidanceScale: 4, Steps: 6, Width: 64, Height: 48, NumImages: 1, OutputFormat: engine.FormatPNG}
	reqs := make([]engine.Request, 4)
	for i := range reqs {
		reqs[i] = base
		reqs[i].Seed = int64(10 + i)
	}
	reqs[0].Prompt, reqs[0].References = "edit a", []engine.ReferenceImage{syntheticReference(100, 72, 1), syntheticReference(64, 64, 2)}
	reqs[1].Prompt, reqs[1].References = "edit b", []engine.ReferenceImage{syntheticReference(96, 64, 3), syntheticReference(70, 70, 4)}
	reqs[1].GuidanceScale = 1
	reqs[1].NumImages = 2
	reqs[2].Prompt, reqs[2].References = "edit c", []engine.ReferenceImage{syntheticReference(64, 96, 5)}
	reqs[3].Prompt = "no references"
	if a, b := preparedGrids(reqs[0].References), preparedGrids(reqs[1].References); a != b {
		t.Fatalf("requests 0 and 1 should have the same grids: %s vs %s", a, b)
	}

	solo := generateAlone(t, e, reqs)
	before := e.batcher.batchCounts()
	results, errs := generateTogether(e, reqs, nil)
	counts := e.batcher.batchCounts()
	shared := counts.Shared - before.Shared
	t.Logf("concurrent phase: %d transformer calls, %d shared", counts.Calls-before.Calls, shared)
	if shared == 0 {
		t.Fatal("the two edits with the same reference grids shared no call")
	}
	// Only requests 0 and 1 can share: at most their 6 steps.
	if shared > 6 {
		t.Fatalf("%d shared calls: requests with other grids were mixed in", shared)
	}
	requireSameAsAlone(t, results, errs, solo)
	if len(e.batcher.groups) != 0 {
		t.Fatalf("%d groups left after every loop ended", len(e.batcher.groups))
	}
}

// preparedGrids is the grid layout references prepare to.
func preparedGrids(refs []engine.ReferenceImage) string {
	var s []string
	for _, r := range refs {
		w, h := imageprep.ProcessedSize(r.Width, r.Height)
		s = append(s, fmt.Sprintf("%dx%d", h/16, w/16))
	}
	return strings.Join(s, ",")
}
