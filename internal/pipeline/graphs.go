package pipeline

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/rs/zerolog"
	ort "github.com/yalue/onnxruntime_go"
)

// expectedIO is what this code feeds and reads, per graph: names and
// element types. "float" means the graph's float precision.
type expectedIO struct {
	inputs, outputs map[string]string
}

var graphContracts = map[string]expectedIO{
	GraphTextEncoder: {
		inputs:  map[string]string{"input_ids": "int64", "attention_mask": "int64"},
		outputs: map[string]string{"prompt_embeds": "float"},
	},
	GraphTransformer: {
		inputs: map[string]string{"hidden_states": "float", "encoder_hidden_states": "float",
			"timestep": "float32", "img_ids": "int64", "txt_ids": "int64"},
		outputs: map[string]string{"noise_pred": "float"},
	},
	GraphVAEDecoder: {
		inputs:  map[string]string{"latents": "float"},
		outputs: map[string]string{"image": "float"},
	},
	GraphVAEEncoder: {
		inputs:  map[string]string{"image": "float"},
		outputs: map[string]string{"latents": "float"},
	},
	GraphSafetyChecker: {
		inputs:  map[string]string{"clip_input": "float32"},
		outputs: map[string]string{"has_nsfw_concepts": "bool"},
	},
}

// graphSession is one loaded graph with the names and float type it was
// checked to have.
type graphSession struct {
	name    string
	floatT  string // float32, float16 or bfloat16
	inputs  []string
	outputs []string
	sess    *ort.DynamicAdvancedSession
	shrink  *ort.RunOptions // a final Run's options (memory.go); nil: plain Runs
	// noShrink is set once ONNX Runtime refused the shrink option; grown
	// while the arenas hold what a Run grew since their last shrink.
	noShrink, grown atomic.Bool
	log             zerolog.Logger
	// pool and poolKey are set on a session a SessionPool shares.
	pool    *SessionPool
	poolKey string
}

func isFloat(dt string) bool { return dt == "float32" || dt == "float16" || dt == "bfloat16" }

// validateGraph checks one graph three ways before any session exists: the
// manifest against what this code expects, the file's size against the
// manifest, and the ONNX file's declared I/O against the manifest.
func validateGraph(dir, name string, m *Manifest) (floatT string, err error) {
	g, ok := m.Graphs[name]
	if !ok {
		return "", fmt.Errorf("graph %s: not in manifest", name)
	}
	contract := graphContracts[name]
	var errs []error
	check := func(kind string, want map[string]string, got []TensorIO) {
		seen := map[string]bool{}
		for _, io := range got {
			seen[io.Name] = true
			exp, ok := want[io.Name]
			if kind == "input" {
				if dt, isLoRA := loraInputDType(name, io.Name); isLoRA {
					exp, ok = dt, true // optional LoRA inputs (lora.go)
				}
			}
			switch {
			case !ok:
				if kind == "input" {
					errs = append(errs, fmt.Errorf("graph %s: unexpected %s %q", name, kind, io.Name))
				}
			case exp == "float":
				if !isFloat(io.DType) {
					errs = append(errs, fmt.Errorf("graph %s %s %q: dtype %s, want a float type", name, kind, io.Name, io.DType))
				} else if floatT == "" {
					floatT = io.DType
				} else if floatT != io.DType {
					errs = append(errs, fmt.Errorf("graph %s: mixes float types %s and %s", name, floatT, io.DType))
				}
			case exp != io.DType:
				errs = append(errs, fmt.Errorf("graph %s %s %q: dtype %s, want %s", name, kind, io.Name, io.DType, exp))
			}
		}
		for n := range want {
			if !seen[n] {
				errs = append(errs, fmt.Errorf("graph %s: %s %q missing from manifest", name, kind, n))
			}
		}
	}
	check("input", contract.inputs, g.Inputs)
	check("output", contract.outputs, g.Outputs)
	if floatT == "" {
		floatT = "float32"
	}

	path := m.Path(dir, g.File)
	st, err := os.Stat(path)
	if err != nil {
		return "", errors.Join(append(errs, fmt.Errorf("graph %s: %w", name, err))...)
	}
	if id, ok := m.Files[g.File]; ok && id.Bytes > 0 && id.Bytes != st.Size() {
		errs = append(errs, fmt.Errorf("graph %s: %s has %d bytes, manifest says %d (incomplete copy?)", name, path, st.Size(), id.Bytes))
	}
	ins, outs, err := readONNXInterface(path)
	if err != nil {
		return "", errors.Join(append(errs, fmt.Errorf("graph %s: %w", name, err))...)
	}
	if err := checkInterface(name, g.Inputs, ins, "input"); err != nil {
		errs = append(errs, err)
	}
	if err := checkInterface(name, g.Outputs, outs, "output"); err != nil {
		errs = append(errs, err)
	}
	return floatT, errors.Join(errs...)
}

// openGraph creates the session of a validated graph.
func openGraph(dir, name string, m *Manifest, floatT string, s sessionSettings) (*graphSession, error) {
	g := m.Graphs[name]
	gs := &graphSession{name: name, floatT: floatT}
	for _, in := range g.Inputs {
		gs.inputs = append(gs.inputs, in.Name)
	}
	for _, out := range g.Outputs {
		if _, used := graphContracts[name].outputs[out.Name]; used {
			gs.outputs = append(gs.outputs, out.Name)
		}
	}
	// A GPU provider that cannot start fails here, when its options load
	// it, or when the first session creates it.
	opts, err := newSessionOptions(s)
	if err != nil {
		return nil, fmt.Errorf("graph %s: %w", name, startError(s.Provider, err))
	}
	defer opts.Destroy()
	sess, err := ort.NewDynamicAdvancedSession(m.Path(dir, g.File), gs.inputs, gs.outputs, opts)
	if err != nil {
		return nil, fmt.Errorf("graph %s: create session: %w", name, startError(s.Provider, err))
	}
	gs.sess = sess
	return gs, nil
}

// destroy gives the session up: a shared one back to its pool, which
// closes it with its last user.
func (g *graphSession) destroy() error {
	if g == nil {
		return nil
	}
	if g.pool != nil {
		return g.pool.release(g.poolKey)
	}
	return g.close()
}

func (g *graphSession) close() error {
	if g == nil || g.sess == nil {
		return nil
	}
	if g.shrink != nil {
		return errors.Join(g.sess.Destroy(), g.shrink.Destroy())
	}
	return g.sess.Destroy()
}
