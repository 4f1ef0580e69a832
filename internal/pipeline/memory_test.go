package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/kleinserve/kleinserve/internal/engine"
)

// Memory is measured in child processes (this test binary, re-run with
// memoryChildEnv set), one per case, so that peaks do not mix: the child
// opens the tiny model, resets the kernel's peak-RSS mark
// (/proc/self/clear_refs) and reports VmHWM above the RSS it had then.

const memoryChildEnv = "KLEINSERVE_MEMORY_CHILD"

// memoryCase is what a child runs.
type memoryCase struct {
	Width, Height, Images, Steps int
	Budget                       int64 // 0: none
	Release                      MemoryRelease
	Concurrent                   int // requests at once (default 1)
	Repeat                       int // further requests after the first, timed
	CancelAt                     int // cancel the first request(s) after this step (0: never)
}

// memoryResult is what a child reports, memory in bytes.
type memoryResult struct {
	Idle     int64 // RSS after Open
	Peak     int64 // VmHWM during the first request(s), above Idle
	After    int64 // RSS after the first request(s)
	AfterAll int64 // RSS after the repeats
	Estimate MemoryEstimate
	NextCPU  float64 // seconds of CPU per repeated request
	NextWall float64 // seconds per repeated request
	// Spans are each concurrent request's first step and end, in seconds
	// from the start.
	Spans [][2]float64
}

func procStatus(key string) (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			kb, err := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/self/status has no %s", key)
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// TestMemoryChild is the child's side; it does nothing in a normal run.
func TestMemoryChild(t *testing.T) {
	spec := os.Getenv(memoryChildEnv)
	if spec == "" {
		t.Skip("runs as a child of the memory tests")
	}
	var c memoryCase
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		t.Fatal(err)
	}
	man, err := LoadManifest(tinyModelDir)
	if err != nil {
		t.Fatal(err)
	}
	adm := NewAdmission(man, AdmissionConfig{Budget: c.Budget})
	e := openTinyWith(t, func(cfg *Config) {
		cfg.MemoryRelease, cfg.Admission, cfg.MaxConcurrent = c.Release, adm, max(c.Concurrent, 1)
	})
	req := engine.Request{Prompt: "a lighthouse at dusk", GuidanceScale: 5, Steps: max(c.Steps, 1),
		Width: c.Width, Height: c.Height, NumImages: max(c.Images, 1), EnableSafetyChecker: true,
		OutputFormat: engine.FormatPNG, Acceleration: engine.AccelerationNone}
	t0 := time.Now()
	var spans [][2]float64
	generate := func(seed int64) {
		var wg sync.WaitGroup
		spans = make([][2]float64, max(c.Concurrent, 1))
		for k := range spans {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := req
				r.Seed = seed + int64(k)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				progress := func(p engine.Progress) {
					if p.Step == 1 {
						spans[k][0] = time.Since(t0).Seconds()
					}
					if p.Step == c.CancelAt && seed == 1 {
						cancel()
					}
				}
				_, err := e.Generate(ctx, r, progress)
				if canceled := c.CancelAt > 0 && seed == 1; canceled != errors.Is(err, engine.ErrCanceled) || (!canceled && err != nil) {
					t.Errorf("generate (cancel at step %d): %v", c.CancelAt, err)
				}
				spans[k][1] = time.Since(t0).Seconds()
			}()
		}
		wg.Wait()
	}
	res := memoryResult{Estimate: adm.Estimate(&req)}
	if res.Idle, err = procStatus("VmRSS"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Fatalf("reset the peak RSS: %v", err)
	}
	generate(1)
	res.Spans = spans
	hwm, _ := procStatus("VmHWM")
	res.Peak = hwm - res.Idle
	res.After, _ = procStatus("VmRSS")
	cpu, start := cpuSeconds(), time.Now()
	for i := range c.Repeat {
		generate(int64(100 + i))
	}
	if c.Repeat > 0 {
		res.NextCPU = (cpuSeconds() - cpu) / float64(c.Repeat)
		res.NextWall = time.Since(start).Seconds() / float64(c.Repeat)
	}
	res.AfterAll, _ = procStatus("VmRSS")
	out, _ := json.Marshal(res)
	fmt.Printf("MEMORY-RESULT %s\n", out)
}

// runMemoryChild runs one case in a child process.
func runMemoryChild(t testing.TB, c memoryCase) memoryResult {
	t.Helper()
	if _, err := os.Stat("/proc/self/clear_refs"); err != nil {
		t.Skipf("no /proc/self/clear_refs to measure peaks with: %v", err)
	}
	spec, _ := json.Marshal(c)
	cmd := exec.Command(os.Args[0], "-test.run=^TestMemoryChild$", "-test.v", "-test.timeout=20m")
	cmd.Env = append(os.Environ(), memoryChildEnv+"="+string(spec))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("child %s: %v\n%s", spec, err, out.String())
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if v, ok := strings.CutPrefix(line, "MEMORY-RESULT "); ok {
			var r memoryResult
			if err := json.Unmarshal([]byte(v), &r); err != nil {
				t.Fatal(err)
			}
			return r
		}
	}
	if strings.Contains(out.String(), "--- SKIP") {
		t.Skipf("child skipped:\n%s", out.String())
	}
	t.Fatalf("child %s reported nothing:\n%s", spec, out.String())
	return memoryResult{}
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// The admission estimate covers the measured peak of whole requests on the
// tiny model, and is not far above it.
func TestMemoryEstimateCoversPeak(t *testing.T) {
	for _, c := range []memoryCase{
		{Width: 512, Height: 512},
		{Width: 1024, Height: 768},
		{Width: 768, Height: 768, Images: 2},
		{Width: 1024, Height: 1024},
		// A budget that holds only a tiled decode (1024-pixel tiles).
		{Width: 1536, Height: 1024, Budget: 3 << 30},
	} {
		r := runMemoryChild(t, c)
		ratio := float64(r.Estimate.Peak) / float64(r.Peak)
		t.Logf("%dx%d x%d (decoder tile %d): measured peak %.0f MiB above idle %.0f MiB, estimate %.0f MiB: %.2fx",
			c.Width, c.Height, max(c.Images, 1), r.Estimate.DecodeTile, mib(r.Peak), mib(r.Idle), mib(r.Estimate.Peak), ratio)
		if r.Estimate.Peak < r.Peak {
			t.Errorf("%dx%d x%d: estimate %.0f MiB below the measured peak %.0f MiB", c.Width, c.Height, max(c.Images, 1),
				mib(r.Estimate.Peak), mib(r.Peak))
		}
		if ratio > 2 {
			t.Errorf("%dx%d x%d: estimate %.2fx the measured peak", c.Width, c.Height, max(c.Images, 1), ratio)
		}
		if c.Budget > 0 && r.Estimate.DecodeTile == 0 {
			t.Errorf("%dx%d under a %.0f MiB budget: decoded whole", c.Width, c.Height, mib(c.Budget))
		}
	}
}

// After a 1024x768 request the process returns to within 2x of its idle
// RSS; without memory release it stays at the request's peak.
func TestMemoryReturnedAfterRequest(t *testing.T) {
	c := memoryCase{Width: 1024, Height: 768}
	r := runMemoryChild(t, c)
	t.Logf("idle %.0f MiB, peak +%.0f MiB, after the request %.0f MiB (%.2fx idle)",
		mib(r.Idle), mib(r.Peak), mib(r.After), float64(r.After)/float64(r.Idle))
	if r.After > 2*r.Idle {
		t.Errorf("RSS after the request %.0f MiB, more than twice the idle %.0f MiB", mib(r.After), mib(r.Idle))
	}
	c.Release = ReleaseNone
	before := runMemoryChild(t, c)
	t.Logf("without release: idle %.0f MiB, after the request %.0f MiB", mib(before.Idle), mib(before.After))
	if before.After <= 2*before.Idle {
		t.Errorf("without release the RSS returned too (%.0f MiB): the check above proves nothing", mib(before.After))
	}
	// A request canceled before its final transformer call.
	canceled := runMemoryChild(t, memoryCase{Width: 1024, Height: 768, Steps: 4, CancelAt: 2})
	t.Logf("canceled after step 2 of 4: peak +%.0f MiB, after %.0f MiB", mib(canceled.Peak), mib(canceled.After))
	if canceled.After > 2*canceled.Idle {
		t.Errorf("RSS after a canceled request %.0f MiB, more than twice the idle %.0f MiB", mib(canceled.After), mib(canceled.Idle))
	}
}

// Two concurrent generations (-workers 2) that do not fit the budget
// together run one after the other, and the process's peak stays inside
// the budget. Without a budget the same two requests run at once (sharing
// transformer calls) and peak higher.
func TestConcurrentGenerationsShareBudget(t *testing.T) {
	const budget = 3 << 30
	overlap := func(s [][2]float64) bool { return s[0][0] < s[1][1] && s[1][0] < s[0][1] }
	c := memoryCase{Width: 1024, Height: 1024, Concurrent: 2, Budget: budget}
	r := runMemoryChild(t, c)
	t.Logf("two 1024x1024 requests at once, budget %.0f MiB (estimate %.0f MiB each): peak %.0f MiB, spans %v",
		mib(budget), mib(r.Estimate.Peak), mib(r.Peak), r.Spans)
	if 2*r.Estimate.Peak <= budget || r.Estimate.Peak > budget {
		t.Fatalf("the budget must hold one estimate (%.0f MiB) and not two", mib(r.Estimate.Peak))
	}
	if overlap(r.Spans) {
		t.Errorf("the two requests ran at the same time: %v", r.Spans)
	}
	if r.Peak > budget {
		t.Errorf("peak %.0f MiB above the budget %.0f MiB", mib(r.Peak), mib(budget))
	}
	c.Budget = 0
	free := runMemoryChild(t, c)
	t.Logf("the same without a budget: peak %.0f MiB, spans %v", mib(free.Peak), free.Spans)
	if !overlap(free.Spans) {
		t.Errorf("without a budget the two requests did not run at once (%v): the check above proves nothing", free.Spans)
	}
}

// The C API indices in ortmem_cgo.go reach AddRunConfigEntry and ORT's own
// error path: an empty key comes back with ORT's message. (That the option
// takes effect is TestMemoryReturnedAfterRequest.)
func TestRunConfigEntry(t *testing.T) {
	openTiny(t)
	if err := loadORTAPI(ortProcess.lib); err != nil {
		t.Fatal(err)
	}
	ro, err := ort.NewRunOptions()
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Destroy()
	if err := addRunConfigEntry(ro, runOptionArenaShrink, "cpu:0"); err != nil {
		t.Fatalf("valid entry: %v", err)
	}
	err = addRunConfigEntry(ro, "", "v")
	if err == nil || !strings.Contains(err.Error(), "Config key is empty") {
		t.Fatalf("empty key: want ORT's error, got %v", err)
	}
}

// BenchmarkMemoryRelease compares, on the tiny model at 1024x768, what the
// process holds after a request and how long the next request takes, with
// ONNX Runtime's arenas kept (before), shrunk after each request (the
// default) and off. Steps: KLEINSERVE_BENCH_STEPS (default 28).
func BenchmarkMemoryRelease(b *testing.B) {
	steps := 28
	if v, err := strconv.Atoi(os.Getenv("KLEINSERVE_BENCH_STEPS")); err == nil && v > 0 {
		steps = v
	}
	modes := []MemoryRelease{ReleaseNone, ReleaseShrink, ReleaseNoArena}
	cpu := map[MemoryRelease][]float64{}
	wall := map[MemoryRelease][]float64{}
	for i := 0; i < b.N; i++ {
		for _, m := range modes { // interleaved, so that load on the machine hits every mode alike
			r := runMemoryChild(b, memoryCase{Width: 1024, Height: 768, Steps: steps, Release: m, Repeat: 1})
			b.Logf("%s: idle %.0f MiB, after one request %.0f MiB, after two %.0f MiB, peak +%.0f MiB; next request %.2f s CPU, %.2f s wall",
				m, mib(r.Idle), mib(r.After), mib(r.AfterAll), mib(r.Peak), r.NextCPU, r.NextWall)
			cpu[m] = append(cpu[m], r.NextCPU)
			wall[m] = append(wall[m], r.NextWall)
			b.ReportMetric(mib(r.After), m.String()+"-after-MiB")
		}
	}
	median := func(v []float64) float64 {
		s := append([]float64(nil), v...)
		sort.Float64s(s)
		return s[len(s)/2]
	}
	for _, m := range modes[1:] {
		b.ReportMetric(median(cpu[m])/median(cpu[ReleaseNone]), m.String()+"-cpu-ratio")
		b.ReportMetric(median(wall[m])/median(wall[ReleaseNone]), m.String()+"-wall-ratio")
	}
}

// TestEveryGraphReturnsWhatItGrew: an edit runs all five graphs; after it
// every session has its arena release set up and none keeps what the
// request grew (the VAE encoder once had neither).
func TestEveryGraphReturnsWhatItGrew(t *testing.T) {
	e := openTiny(t)
	req := engine.Request{Prompt: "edit", GuidanceScale: 4, Steps: 2, Width: 64, Height: 64, NumImages: 1,
		OutputFormat: engine.FormatPNG, References: []engine.ReferenceImage{syntheticReference(64, 64, 1)}}
	if _, err := e.Generate(context.Background(), req, nil); err != nil {
		t.Fatal(err)
	}
	for i, g := range e.sessions() {
		if g.shrink == nil {
			t.Errorf("%s: no arena release set up", graphNames()[i])
		}
		if g.grown.Load() {
			t.Errorf("%s: keeps the memory the request grew", graphNames()[i])
		}
	}
}
