package pipeline

import (
	"errors"
	"fmt"
	"strings"

	ort "github.com/yalue/onnxruntime_go"
)

// MemoryRelease is what the engine does with the memory ONNX Runtime grew
// for a request once the request is done. docs/memory.md has the
// measurements behind the default.
type MemoryRelease int

const (
	// ReleaseShrink (the default) keeps ONNX Runtime's arenas during a
	// request, so that its denoising steps reuse memory, asks the last Run
	// of each graph in the request to shrink that session's arenas (the run
	// option memory.enable_memory_arena_shrinkage), and then hands the C
	// heap's free pages back (malloc_trim). It also turns ONNX Runtime's
	// memory pattern off: with it, the second Run of a shape allocates one
	// block for the whole plan next to the first Run's freed chunks, which
	// doubles the arena (measured 450 -> 900 MiB for the tiny transformer at
	// 1024x768), and it made no Run faster here.
	ReleaseShrink MemoryRelease = iota
	// ReleaseNone keeps whatever the arenas grew to, with ONNX Runtime's
	// default settings: the process stays at (or above) the peak of its
	// largest request (the behaviour before memory release; benchmarks
	// compare against it).
	ReleaseNone
	// ReleaseNoArena runs without ONNX Runtime's CPU arena: every tensor is
	// allocated and freed with malloc, and the heap is trimmed after each
	// request. It returns memory too, but costs CPU time on every call.
	ReleaseNoArena
)

func (m MemoryRelease) String() string {
	switch m {
	case ReleaseShrink:
		return "shrink"
	case ReleaseNone:
		return "none"
	case ReleaseNoArena:
		return "no-arena"
	}
	return fmt.Sprintf("MemoryRelease(%d)", int(m))
}

// runOptionArenaShrink is ONNX Runtime's run option that shrinks the listed
// devices' arenas at the end of a Run: their free regions go back to the
// system (host) or the driver (GPU).
const runOptionArenaShrink = "memory.enable_memory_arena_shrinkage"

// arenaShrinkDevices is that option's value for a provider: the CPU arena
// always (a CUDA session keeps its host-side tensors there), and the
// device's arena on CUDA ("device:id" pairs joined by ';').
func arenaShrinkDevices(provider string, deviceID int) string {
	if onGPU(provider) {
		return fmt.Sprintf("cpu:0;gpu:%d", deviceID)
	}
	return "cpu:0"
}

// newShrinkOptions returns the run options of a Run that shrinks the arenas
// of provider's devices afterwards.
func newShrinkOptions(lib, provider string, deviceID int) (*ort.RunOptions, error) {
	if err := loadORTAPI(lib); err != nil {
		return nil, err
	}
	ro, err := ort.NewRunOptions()
	if err != nil {
		return nil, fmt.Errorf("run options: %w", err)
	}
	if err := addRunConfigEntry(ro, runOptionArenaShrink, arenaShrinkDevices(provider, deviceID)); err != nil {
		return nil, errors.Join(err, ro.Destroy())
	}
	return ro, nil
}

// runSession runs the graph; a final Run (the graph's last of a request)
// shrinks the session's arenas when the engine releases memory that way.
func (g *graphSession) runSession(in, out []ort.Value, final bool) error {
	return g.runShrinking(final, func(ro *ort.RunOptions) error {
		if ro == nil {
			return g.sess.Run(in, out)
		}
		return g.sess.RunWithOptions(in, out, ro)
	})
}

// runShrinking calls run once: with nil run options, or, for a final Run of
// a graph that shrinks its arenas, with the shrinking ones. Should ONNX
// Runtime refuse the shrink option (it validates it before running: an
// arena it does not find), the Run is repeated without it and the graph
// stops asking, so that a provider without the expected arenas costs
// memory, not requests.
func (g *graphSession) runShrinking(final bool, run func(ro *ort.RunOptions) error) error {
	ro := g.shrink
	if !final || ro == nil || g.noShrink.Load() {
		g.grown.Store(ro != nil)
		return run(nil)
	}
	err := run(ro)
	if err == nil || !strings.Contains(err.Error(), "arena") {
		g.grown.Store(false)
		return err
	}
	if err := run(nil); err != nil {
		return err
	}
	g.noShrink.Store(true)
	g.log.Warn().Err(err).Str("graph", g.name).Msg("arena shrinkage refused; this graph keeps its arena between requests")
	return nil
}

// releaseGrown shrinks the arenas of the graphs that ran since their last
// shrink: a request that failed or was canceled never made its final calls,
// and what it grew must not stay held outside the budget's account. Each
// such graph gets a minimal Run (every symbolic dimension 1, zero inputs)
// that shrinks its arenas afterwards.
func (e *Engine) releaseGrown() error {
	var errs []error
	for _, g := range e.sessions() {
		if g.shrink == nil || g.noShrink.Load() || !g.grown.Load() {
			continue
		}
		if err := g.minimalRun(e.man.Graphs[g.name]); err != nil {
			errs = append(errs, fmt.Errorf("graph %s: release its arena: %w", g.name, err))
			continue
		}
		g.grown.Store(false)
	}
	return errors.Join(errs...)
}

// minimalRun runs the graph once on the smallest inputs its declared shapes
// allow, with the shrinking run options; ONNX Runtime allocates the
// outputs.
func (g *graphSession) minimalRun(spec Graph) error {
	byName := map[string]TensorIO{}
	for _, in := range spec.Inputs {
		byName[in.Name] = in
	}
	in := make([]ort.Value, len(g.inputs))
	out := make([]ort.Value, len(g.outputs))
	defer func() {
		for _, v := range append(in, out...) {
			if v != nil {
				_ = v.Destroy()
			}
		}
	}()
	for i, name := range g.inputs {
		io := byName[name]
		dims := make([]int64, len(io.Shape))
		for k, d := range io.Shape {
			dims[k] = 1
			if n, ok := d.(float64); ok {
				dims[k] = int64(n)
			}
		}
		v, err := zeroTensor(io.DType, dims)
		if err != nil {
			return fmt.Errorf("input %s: %w", name, err)
		}
		in[i] = v
	}
	return g.sess.RunWithOptions(in, out, g.shrink)
}

// zeroTensor is a zero-filled tensor of an ONNX element type.
func zeroTensor(dtype string, dims []int64) (ort.Value, error) {
	shape := ort.NewShape(dims...)
	switch dtype {
	case "int64":
		return ort.NewEmptyTensor[int64](shape)
	case "bool":
		return ort.NewEmptyTensor[bool](shape)
	}
	t, err := newFloatTensor(dtype, dims...)
	if err != nil {
		return nil, err
	}
	return t.value(), nil
}

// setupMemoryRelease prepares every session for the configured release.
func (e *Engine) setupMemoryRelease(lib string) error {
	if e.cfg.MemoryRelease != ReleaseShrink {
		return nil
	}
	for _, g := range e.sessions() {
		if g.shrink != nil {
			continue // a session shared with another engine, already set up
		}
		ro, err := newShrinkOptions(lib, e.cfg.Provider, e.cfg.DeviceID)
		if err != nil {
			return fmt.Errorf("graph %s: arena shrinkage: %w", g.name, err)
		}
		g.shrink, g.log = ro, e.log
	}
	return nil
}

// afterRequest returns what the C heap holds free once a request is done
// (ONNX Runtime's freed tensors and shrunk arena regions live there).
func (e *Engine) afterRequest() {
	if e.cfg.MemoryRelease != ReleaseNone {
		mallocTrim()
	}
}
