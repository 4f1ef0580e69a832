// Command bench measures the kleinserve pipeline on one model directory:
// per-phase median times (text encoding, each transformer step, VAE decode,
// safety, image encoding), achieved TFLOP/s against a stated peak, and peak
// memory (GPU through nvidia-smi when the provider is CUDA, else the
// process's resident set).
//
//	go run ./cmd/bench -models models/klein-4b-random -provider cuda -size 1024x768 -steps 28
//
// FLOPs count multiply-adds as 2 and ignore element-wise work (the
// convention of docs/model.md §9), so "share of peak" compares with dense
// matrix peak.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/kleinserve/kleinserve/internal/cns"
	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/pipeline"
	"github.com/kleinserve/kleinserve/internal/sampler"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// report is the JSON form of one benchmark (also printed as a table).
type report struct {
	Model        string             `json:"model"`
	Provider     string             `json:"provider"`
	Precision    string             `json:"precision"`
	Size         string             `json:"size"`
	Steps        int                `json:"steps"`
	Batch        int                `json:"batch"`
	CFG          bool               `json:"cfg"`
	Acceleration string             `json:"acceleration"`
	Runs         int                `json:"runs"`
	PeakTFLOPS   float64            `json:"peak_tflops"`
	Phases       map[string]phase   `json:"phases"`
	EndToEnd     float64            `json:"end_to_end_s"`
	PeakMemory   map[string]float64 `json:"peak_memory_gib"`
	Throughput   *throughput        `json:"throughput,omitempty"`
}

// throughput compares N requests one at a time with N at once (same-size
// generations sharing transformer calls), in images per second.
type throughput struct {
	Concurrency int     `json:"concurrency"`
	OneAtATime  float64 `json:"one_at_a_time_images_per_s"`
	Concurrent  float64 `json:"concurrent_images_per_s"`
	SharedCalls int     `json:"shared_calls"`
	TotalCalls  int     `json:"transformer_calls"`
}

type phase struct {
	MedianS     float64 `json:"median_s"`
	TFLOP       float64 `json:"tflop,omitempty"`
	TFLOPS      float64 `json:"tflops,omitempty"`
	ShareOfPeak float64 `json:"share_of_peak,omitempty"`
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	models := fs.String("models", "models/tiny", "model directory")
	provider := fs.String("provider", "cpu", "cpu, cuda or tensorrt")
	deviceID := fs.Int("device-id", 0, "CUDA device")
	ortLib := fs.String("ort-lib", "", "path of libonnxruntime.so")
	threads := fs.Int("threads", 0, "CPU intra-op threads")
	size := fs.String("size", "1024x768", "WIDTHxHEIGHT")
	steps := fs.Int("steps", 28, "inference steps")
	guidance := fs.Float64("guidance", 5, "guidance scale (> 1: CFG, two forwards a step)")
	batch := fs.Int("batch", 1, "images per request")
	accel := fs.String("acceleration", string(engine.AccelerationNone), "none, regular or high")
	runs := fs.Int("runs", 3, "measured runs")
	warmup := fs.Int("warmup", 1, "unmeasured runs first")
	peak := fs.Float64("peak-tflops", 989, "dense peak of the device in TFLOP/s (H100 SXM bf16: 989)")
	format := fs.String("format", "png", "output format")
	jsonOut := fs.String("json", "", "also write the report as JSON to this file")
	concurrency := fs.Int("concurrency", 1, "also compare this many requests one at a time with all at once (> 1)")
	ioBinding := fs.String("io-binding", pipeline.IOBindingOn.String(), "the transformer's inputs and outputs bound on the device (on) or copied by each Run (off); docs/iobinding.md")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ioMode, err := pipeline.ParseIOBinding(*ioBinding)
	if err != nil {
		return err
	}
	w, h, err := parseSize(*size)
	if err != nil {
		return err
	}
	log := zerolog.New(os.Stderr).Level(zerolog.WarnLevel)
	e, err := pipeline.Open(ctx, pipeline.Config{ModelDir: *models, LibraryPath: *ortLib, Provider: *provider,
		DeviceID: *deviceID, IntraOpThreads: *threads, Logger: log, MaxConcurrent: max(*concurrency, 1), IOBinding: ioMode})
	if err != nil {
		return err
	}
	defer e.Close()
	arch := e.Architecture()

	mem := newMemoryWatch(*provider, *deviceID)
	defer mem.stop()

	newRequest := func(i int) engine.Request {
		return engine.Request{
			// A new prompt each run, so the text encoder really runs (the
			// empty negative prompt stays cached, as in production).
			Prompt:        fmt.Sprintf("a lighthouse on a cliff at dusk, photograph, run %d", i),
			GuidanceScale: *guidance, Steps: *steps, Width: w, Height: h, NumImages: *batch, Seed: int64(i),
			Acceleration: engine.Acceleration(*accel), EnableSafetyChecker: true,
			OutputFormat: engine.OutputFormat(*format), CNS: cns.DefaultParams(),
		}
	}
	var textS, denoiseS, decodeS, safetyS, encodeS, totalS, stepS []float64
	for i := 0; i < *warmup+*runs; i++ {
		req := newRequest(i)
		var steps []float64
		start := time.Now()
		res, err := e.Generate(ctx, req, func(p engine.Progress) { steps = append(steps, p.StepTime.Seconds()) })
		if err != nil {
			return err
		}
		if i < *warmup {
			continue
		}
		t := res.Timings
		totalS = append(totalS, time.Since(start).Seconds())
		textS, denoiseS = append(textS, t.TextEncoding.Seconds()), append(denoiseS, t.Denoising.Seconds())
		decodeS, safetyS = append(decodeS, t.Decoding.Seconds()), append(safetyS, t.Safety.Seconds())
		encodeS, stepS = append(encodeS, t.Encoding.Seconds()), append(stepS, steps...)
	}

	forwards := float64(*batch)
	cfg := sampler.UsesCFG(*guidance)
	if cfg {
		forwards *= 2
	}
	info := e.Info()
	rep := report{Model: info.Model, Provider: info.Provider, Precision: info.Precision, Size: *size, Steps: *steps,
		Batch: *batch, CFG: cfg, Acceleration: *accel, Runs: *runs, PeakTFLOPS: *peak, Phases: map[string]phase{},
		EndToEnd: median(totalS), PeakMemory: mem.stop()}
	add := func(name string, secs []float64, flop float64) {
		p := phase{MedianS: median(secs), TFLOP: flop / 1e12}
		if flop > 0 && p.MedianS > 0 {
			p.TFLOPS = flop / 1e12 / p.MedianS
			p.ShareOfPeak = p.TFLOPS / *peak
		}
		rep.Phases[name] = p
	}
	add("text_encoding", textS, arch.TextEncoderFLOPs(e.TextLayers(), e.TextLength()))
	tokens := (w / engine.SizeMultiple) * (h / engine.SizeMultiple)
	add("transformer_step", stepS, forwards*arch.TransformerFLOPs(tokens, e.TextLength()))
	add("denoising", denoiseS, float64(*steps)*forwards*arch.TransformerFLOPs(tokens, e.TextLength()))
	add("vae_decode", decodeS, float64(*batch)*arch.VAEDecoderFLOPs(w, h))
	add("safety", safetyS, 0)
	add("encode", encodeS, 0)
	if *concurrency > 1 {
		if rep.Throughput, err = measureThroughput(ctx, e, *concurrency, *runs, *batch, newRequest); err != nil {
			return err
		}
	}
	printReport(out, rep)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	}
	return nil
}

// measureThroughput times rounds of n requests, first one after another,
// then all at once, on the same engine (opened with MaxConcurrent n).
func measureThroughput(ctx context.Context, e *pipeline.Engine, n, rounds, batch int, newRequest func(int) engine.Request) (*throughput, error) {
	seq, con := time.Duration(0), time.Duration(0)
	next := 1000
	for range rounds {
		start := time.Now()
		for range n {
			if _, err := e.Generate(ctx, newRequest(next), nil); err != nil {
				return nil, err
			}
			next++
		}
		seq += time.Since(start)
	}
	mid := e.BatchCounts()
	for range rounds {
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := time.Now()
		for k := range n {
			req := newRequest(next + k)
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[k] = e.Generate(ctx, req, nil)
			}()
		}
		wg.Wait()
		con += time.Since(start)
		next += n
		for _, err := range errs {
			if err != nil {
				return nil, err
			}
		}
	}
	after := e.BatchCounts()
	images := float64(rounds * n * batch)
	return &throughput{Concurrency: n, OneAtATime: images / seq.Seconds(), Concurrent: images / con.Seconds(),
		SharedCalls: after.Shared - mid.Shared, TotalCalls: after.Calls - mid.Calls}, nil
}

func printReport(out io.Writer, r report) {
	fmt.Fprintf(out, "%s on %s (%s), %s, %d steps, batch %d, cfg %v, acceleration %s, median of %d runs\n",
		r.Model, r.Provider, r.Precision, r.Size, r.Steps, r.Batch, r.CFG, r.Acceleration, r.Runs)
	fmt.Fprintf(out, "%-17s %10s %10s %10s %8s\n", "phase", "median s", "TFLOP", "TFLOP/s", "of peak")
	for _, name := range []string{"text_encoding", "transformer_step", "denoising", "vae_decode", "safety", "encode"} {
		p := r.Phases[name]
		fmt.Fprintf(out, "%-17s %10.4f %10.3f %10.2f %7.1f%%\n", name, p.MedianS, p.TFLOP, p.TFLOPS, 100*p.ShareOfPeak)
	}
	fmt.Fprintf(out, "%-17s %10.4f\n", "end_to_end", r.EndToEnd)
	keys := make([]string, 0, len(r.PeakMemory))
	for k := range r.PeakMemory {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(out, "peak %s memory: %.2f GiB\n", k, r.PeakMemory[k])
	}
	if t := r.Throughput; t != nil {
		fmt.Fprintf(out, "throughput, %d requests: one at a time %.3f img/s, all at once %.3f img/s (x%.2f; %d of %d transformer calls shared)\n",
			t.Concurrency, t.OneAtATime, t.Concurrent, t.Concurrent/t.OneAtATime, t.SharedCalls, t.TotalCalls)
	}
}

func parseSize(s string) (int, int, error) {
	ws, hs, ok := strings.Cut(s, "x")
	w, err1 := strconv.Atoi(ws)
	h, err2 := strconv.Atoi(hs)
	if !ok || err1 != nil || err2 != nil || w <= 0 || h <= 0 {
		return 0, 0, fmt.Errorf("-size %q: want WIDTHxHEIGHT", s)
	}
	return w, h, nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// memoryWatch samples GPU memory with nvidia-smi every 100 ms while the
// benchmark runs (CUDA), and reads the process's peak resident set.
type memoryWatch struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	gpuMiB float64
	once   sync.Once
	result map[string]float64
}

func newMemoryWatch(provider string, device int) *memoryWatch {
	ctx, cancel := context.WithCancel(context.Background())
	m := &memoryWatch{cancel: cancel, done: make(chan struct{})}
	if provider == pipeline.ProviderCPU {
		close(m.done)
		return m
	}
	go func() {
		defer close(m.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			b, err := exec.CommandContext(ctx, "nvidia-smi", "--query-gpu=memory.used",
				"--format=csv,noheader,nounits", "-i", strconv.Itoa(device)).Output()
			m.mu.Lock()
			if err == nil {
				if v, perr := strconv.ParseFloat(strings.TrimSpace(string(b)), 64); perr == nil && v > m.gpuMiB {
					m.gpuMiB = v
				}
			}
			m.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return m
}

// stop ends sampling and returns the peaks in GiB.
func (m *memoryWatch) stop() map[string]float64 {
	m.once.Do(func() {
		m.cancel()
		<-m.done
		m.result = map[string]float64{}
		if rss := peakRSSKiB(); rss > 0 {
			m.result["host_rss"] = float64(rss) / (1 << 20)
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.gpuMiB > 0 {
			m.result["gpu"] = m.gpuMiB / 1024
		}
	})
	return m.result
}

// peakRSSKiB reads VmHWM (the resident-set high-water mark) of this process.
func peakRSSKiB() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			v, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return v
		}
	}
	return 0
}
