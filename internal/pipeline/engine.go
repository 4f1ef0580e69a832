package pipeline

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	ort "github.com/yalue/onnxruntime_go"

	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/sampler"
)

// Config selects a model directory and how to run it.
type Config struct {
	ModelDir       string
	LibraryPath    string // libonnxruntime.so; empty: DefaultLibraryPaths
	Provider       string // cpu, cuda, tensorrt
	DeviceID       int
	IntraOpThreads int // 0: ONNX Runtime's default (all cores)
	InterOpThreads int
	// Noise is how a seed becomes initial noise (default sampler.NoiseTorch:
	// the noise diffusers draws with that seed).
	Noise sampler.NoiseSource
	// PromptCacheBytes bounds the prompt embeddings kept, least recently
	// used first out (default DefaultPromptCacheBytes; negative: none).
	PromptCacheBytes int64
	// Admission checks each request against the memory budget and shares
	// the budget among concurrent generations (admission.go); nil: no
	// budget.
	Admission *Admission
	// MaxConcurrent is how many generations run at once (default 1).
	// Concurrent generations of the same size share transformer calls.
	MaxConcurrent int
	// BatchWait bounds how long a denoising step waits, with the device
	// idle, for the other generations of its size to join its call
	// (default 20ms; only matters when MaxConcurrent > 1).
	BatchWait time.Duration
	// ReferenceCacheBytes bounds the VAE latents of reference images kept
	// for later edits (default DefaultReferenceCacheBytes).
	ReferenceCacheBytes int64
	// LoRA loads the files requests name in engine.Request.LoRAs (nil:
	// requests with LoRAs are refused); LoRAMemoryBytes bounds the
	// converted adapters kept in memory (0: 1 GiB). See lora.go.
	LoRA            LoRALoader
	LoRAMemoryBytes int64
	// Sessions, when set, shares graph sessions with the other engines of
	// the process whose graphs are byte-identical (a variant's text
	// encoder); nil: this engine's own.
	Sessions *SessionPool
	// MemoryRelease is what happens to the memory a request grew (default
	// ReleaseShrink; see memory.go).
	MemoryRelease MemoryRelease
	// IOBinding is how the denoising loop's transformer calls bind their
	// inputs and outputs (default IOBindingOn: device-resident on a GPU;
	// see iobind.go).
	IOBinding IOBinding
	Logger    zerolog.Logger
}

// Engine runs FLUX.2 [klein] graphs with ONNX Runtime. Up to
// Config.MaxConcurrent generations run at once (default one: a single
// accelerator is nearly saturated by one denoising loop at full size);
// those of the same size share each transformer call (ditBatcher). Further
// callers wait for a slot or give up when their context ends.
type Engine struct {
	cfg        Config
	man        *Manifest
	tok        promptTokenizer
	text       *graphSession
	dit        *graphSession
	vae        *graphSession
	vaeEnc     *graphSession
	safety     *graphSession
	gamma      *gammaSource
	cache      *embedCache
	refCache   *refCache
	batcher    *ditBatcher
	lora       *loraState
	slots      chan struct{} // one token per generation that may run
	ready      bool          // the slots were filled (Open succeeded)
	info       engine.Info
	ortVersion string
	// debugFinalLatents, when set (tests only), receives the packed
	// latents after the last step.
	debugFinalLatents func([]float32)
	// lastORTTime is the time the last finished generation spent inside
	// ONNX Runtime Run calls (benchmarks read it).
	lastORTTime atomic.Int64
	// ioPlace is where the transformer's bound values live (IOBindingOn).
	ioPlace ioPlacement
	log     zerolog.Logger
}

var _ engine.Engine = (*Engine)(nil)

// Open loads, validates and prepares a model directory. Any mismatch
// between the manifest, the ONNX files and this code fails here.
func Open(ctx context.Context, cfg Config) (_ *Engine, err error) {
	if cfg.PromptCacheBytes == 0 {
		cfg.PromptCacheBytes = DefaultPromptCacheBytes
	}
	if cfg.Provider == "" {
		cfg.Provider = ProviderCPU
	}
	if cfg.Noise == "" {
		cfg.Noise = sampler.NoiseTorch
	}
	if !slices.Contains(sampler.NoiseSources(), cfg.Noise) {
		return nil, fmt.Errorf("unknown noise source %q", string(cfg.Noise))
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 1
	}
	if cfg.BatchWait <= 0 {
		cfg.BatchWait = 20 * time.Millisecond
	}
	if cfg.ReferenceCacheBytes <= 0 {
		cfg.ReferenceCacheBytes = DefaultReferenceCacheBytes
	}
	if cfg.IOBinding != IOBindingOn && cfg.IOBinding != IOBindingOff {
		return nil, fmt.Errorf("unknown io binding %d (want IOBindingOn or IOBindingOff)", int(cfg.IOBinding))
	}
	lib, err := findLibrary(cfg.LibraryPath)
	if err != nil {
		return nil, err
	}
	man, err := LoadManifest(cfg.ModelDir)
	if err != nil {
		return nil, err
	}
	if cfg.Admission == nil {
		cfg.Admission = NewAdmission(man, AdmissionConfig{Provider: cfg.Provider})
	}
	// Validate every graph before spending time and memory on sessions.
	floatTypes := map[string]string{}
	var verrs []error
	for _, name := range graphNames() {
		ft, err := validateGraph(cfg.ModelDir, name, man)
		verrs = append(verrs, err)
		floatTypes[name] = ft
	}
	if err := errors.Join(verrs...); err != nil {
		return nil, fmt.Errorf("model %s does not match what kleinserve runs:\n%w", cfg.ModelDir, err)
	}
	tok, err := loadTokenizer(man.Path(cfg.ModelDir, TokenizerDir), man.Text)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	gamma, err := loadGammaSource(cfg.ModelDir)
	if err != nil {
		return nil, err
	}
	version, err := acquireORT(lib)
	if err != nil {
		return nil, err
	}
	e := &Engine{
		cfg: cfg, man: man, tok: tok, gamma: gamma, ortVersion: version,
		cache: newEmbedCache(max(cfg.PromptCacheBytes, 0)), refCache: newRefCache(cfg.ReferenceCacheBytes),
		slots: make(chan struct{}, cfg.MaxConcurrent),
		log:   cfg.Logger,
	}
	e.batcher = newDiTBatcher(e, cfg.BatchWait)
	defer func() {
		if err != nil {
			_ = e.Close()
		}
	}()
	if e.lora, err = newLoRAState(man, cfg, floatTypes[GraphTransformer]); err != nil {
		return nil, err
	}
	settings := sessionSettings{Provider: cfg.Provider, DeviceID: cfg.DeviceID,
		IntraOpThreads: cfg.IntraOpThreads, InterOpThreads: cfg.InterOpThreads,
		NoCPUArena: cfg.MemoryRelease == ReleaseNoArena, NoMemPattern: cfg.MemoryRelease == ReleaseShrink}
	for _, g := range []struct {
		name string
		dst  **graphSession
	}{{GraphTextEncoder, &e.text}, {GraphTransformer, &e.dit}, {GraphVAEDecoder, &e.vae}, {GraphVAEEncoder, &e.vaeEnc}, {GraphSafetyChecker, &e.safety}} {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("open model: %w", err)
		}
		start := time.Now()
		open := func() (*graphSession, error) {
			return openGraph(cfg.ModelDir, g.name, man, floatTypes[g.name], settings)
		}
		if cfg.Sessions != nil {
			key, kerr := sessionKey(g.name, man, floatTypes[g.name], settings)
			if kerr != nil {
				return nil, kerr
			}
			*g.dst, err = cfg.Sessions.open(key, open)
		} else {
			*g.dst, err = open()
		}
		if err != nil {
			return nil, err
		}
		e.log.Info().Str("graph", g.name).Str("dtype", floatTypes[g.name]).
			Dur("load_time", time.Since(start)).Msg("graph loaded")
	}
	if err := e.setupMemoryRelease(lib); err != nil {
		return nil, err
	}
	if cfg.IOBinding == IOBindingOn {
		if err := loadORTAPI(lib); err != nil {
			return nil, err
		}
		if err := e.dit.checkIOBinding(); err != nil {
			return nil, err
		}
		e.ioPlace = placementFor(cfg.Provider, cfg.DeviceID)
	}
	e.info = engine.Info{
		Model: man.Name, Variant: man.Variant, Provider: cfg.Provider, Precision: man.Precision,
	}
	for range cfg.MaxConcurrent {
		e.slots <- struct{}{}
	}
	e.ready = true
	return e, nil
}

// Info describes the loaded model.
func (e *Engine) Info() engine.Info { return e.info }

// ORTVersion is the version of the loaded ONNX Runtime library.
func (e *Engine) ORTVersion() string { return e.ortVersion }

// sessions returns the engine's graph sessions in graphNames' order (nil
// ones before Open finished).
func (e *Engine) sessions() []*graphSession {
	return []*graphSession{e.text, e.dit, e.vae, e.vaeEnc, e.safety}
}

// Close releases the sessions. It waits for running generations; later
// calls fail with engine.ErrClosed.
func (e *Engine) Close() error {
	if e.ready {
		for range cap(e.slots) {
			<-e.slots // wait for every running generation; never given back
		}
		close(e.slots)
		e.ready = false
	}
	var err error
	for _, g := range e.sessions() {
		err = errors.Join(err, g.destroy())
	}
	err = errors.Join(err, e.lora.destroy())
	e.text, e.dit, e.vae, e.vaeEnc, e.safety = nil, nil, nil, nil, nil
	if e.ortVersion != "" {
		err = errors.Join(err, releaseORT())
		e.ortVersion = ""
	}
	return err
}

// Generate runs one request end to end.
func (e *Engine) Generate(ctx context.Context, req engine.Request, progress engine.ProgressFunc) (*engine.Result, error) {
	if req.OutputFormat == "" {
		req.OutputFormat = engine.FormatPNG
	}
	if err := resolveReferences(&req); err != nil {
		return nil, err
	}
	if err := req.Check(); err != nil {
		return nil, err
	}
	if err := e.lora.check(req.LoRAs); err != nil {
		return nil, fmt.Errorf("%w: %w", engine.ErrInvalidRequest, err)
	}
	mem, err := e.cfg.Admission.Check(&req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", engine.ErrInvalidRequest, err)
	}
	// LoRA files are fetched and converted before taking a generation
	// slot, so a download never holds the accelerator idle.
	set, err := e.lora.prepare(ctx, req.LoRAs)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", engine.ErrCanceled, err)
		}
		return nil, err
	}
	release, err := e.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	unreserve, err := e.cfg.Admission.reserve(ctx, mem.Peak)
	if err != nil {
		return nil, err
	}
	defer unreserve()
	defer e.afterRequest()
	// ONNX Runtime's threads must not migrate the Go scheduler's work
	// around the Run calls more than needed.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	r := &run{e: e, req: req, progress: progress, lora: set, mem: mem}
	res, err := r.generate(ctx)
	e.lastORTTime.Store(int64(r.ortTime))
	if err != nil {
		if rerr := e.releaseGrown(); rerr != nil {
			e.log.Warn().Err(rerr).Msg("memory of a failed request not released")
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", engine.ErrCanceled, err)
		}
		return nil, err
	}
	return res, nil
}

// acquire waits for a generation slot; release gives it back.
func (e *Engine) acquire(ctx context.Context) (release func(), err error) {
	select {
	case _, ok := <-e.slots:
		if !ok {
			return nil, engine.ErrClosed
		}
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", engine.ErrCanceled, ctx.Err())
	}
	return func() { e.slots <- struct{}{} }, nil
}

// boundRun is a graph call with its values resolved once, so the per-step
// cost outside ONNX Runtime is one slice walk.
type boundRun struct {
	g       *graphSession
	in, out []ort.Value
	clock   *time.Duration // accumulates time spent inside ONNX Runtime
	// final marks the graph's last Run of a request (memory.go).
	final bool
}

func (g *graphSession) bind(clock *time.Duration, inputs, outputs map[string]ort.Value) (*boundRun, error) {
	b := &boundRun{g: g, clock: clock, in: make([]ort.Value, len(g.inputs)), out: make([]ort.Value, len(g.outputs))}
	for i, n := range g.inputs {
		v, ok := inputs[n]
		if !ok {
			return nil, fmt.Errorf("graph %s: input %q not provided", g.name, n)
		}
		b.in[i] = v
	}
	for i, n := range g.outputs {
		v, ok := outputs[n]
		if !ok {
			return nil, fmt.Errorf("graph %s: output %q not provided", g.name, n)
		}
		b.out[i] = v
	}
	return b, nil
}

func (b *boundRun) run() error {
	start := time.Now()
	err := b.g.runSession(b.in, b.out, b.final)
	*b.clock += time.Since(start)
	if err != nil {
		return fmt.Errorf("graph %s: %w", b.g.name, err)
	}
	return nil
}

// Architecture returns the model's dimensions from the manifest.
func (e *Engine) Architecture() *Architecture { return &e.man.Architecture }

// TextLayers is the number of text-encoder layers the graph runs (the
// deepest tapped hidden state).
func (e *Engine) TextLayers() int { return slices.Max(e.man.Text.HiddenLayers) }

// TextLength is the fixed prompt length in tokens.
func (e *Engine) TextLength() int { return e.man.Text.MaxLength }

// usesCFG reports whether a request runs classifier-free guidance on this
// model: a distilled checkpoint never does, whatever guidance is asked for.
func (e *Engine) usesCFG(req *engine.Request) bool { return req.UsesCFG() && !e.man.Distilled() }
