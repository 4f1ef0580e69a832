package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/lora"
)

// LoRALoader gives the bytes of the LoRA file a request names (URL, this
// server's /files/ URL, data: URI or a name in the LoRA directory);
// *lora.Store implements it.
type LoRALoader interface {
	Load(ctx context.Context, ref string) (lora.Blob, error)
}

// defaultLoRAMemory is the budget of converted adapters kept in memory
// when Config.LoRAMemoryBytes is 0: a rank-32 LoRA of the 4B model is
// about 0.15 GB as float32, so a handful of recent ones stay.
const defaultLoRAMemory = 1 << 30

// loraState is the engine's LoRA support: the transformer's targets (nil
// when the graph was exported without LoRA inputs), the loader, converted
// adapters by content hash, and the zero inputs shared by every call
// without LoRA.
type loraState struct {
	targets  *lora.Targets
	loader   LoRALoader
	adapters *lora.Memo[*lora.Adapter]
	zero     *loraTensors
	switched bool // the graph has lora_active
}

// loraActiveInput is the transformer's If condition: true runs the graph
// with the low-rank pairs, false the exact pre-LoRA graph (the exporter
// joins both over one set of weights, scripts/lora_formats.py).
const loraActiveInput = "lora_active"

// loraInputDType tells the transformer's optional LoRA inputs from the
// rest, with the type this code feeds them ("float": the graph's).
func loraInputDType(graph, name string) (string, bool) {
	switch {
	case graph != GraphTransformer:
		return "", false
	case name == loraActiveInput:
		return "bool", true
	case strings.HasSuffix(name, lora.InputSuffixA) || strings.HasSuffix(name, lora.InputSuffixB):
		return "float", true
	}
	return "", false
}

// newLoRAState reads the targets off the transformer's declared inputs and
// builds the zero inputs.
func newLoRAState(m *Manifest, cfg Config, floatT string) (*loraState, error) {
	g := m.Graphs[GraphTransformer]
	var names []string
	var dims [][]int
	for _, in := range g.Inputs {
		names = append(names, in.Name)
		d := make([]int, len(in.Shape))
		for i, s := range in.Shape {
			d[i] = -1
			if n, ok := s.(float64); ok {
				d[i] = int(n)
			}
		}
		dims = append(dims, d)
	}
	targets, err := lora.TargetsFromInputs(names, dims)
	if err != nil {
		return nil, fmt.Errorf("graph %s: %w", GraphTransformer, err)
	}
	budget := cfg.LoRAMemoryBytes
	if budget <= 0 {
		budget = defaultLoRAMemory
	}
	st := &loraState{targets: targets, loader: cfg.LoRA, adapters: lora.NewMemo[*lora.Adapter](budget)}
	for _, in := range g.Inputs {
		st.switched = st.switched || in.Name == loraActiveInput
	}
	if targets != nil {
		if st.zero, err = newLoRATensors(floatT, targets, lora.Stack(targets, nil), st.switched, false); err != nil {
			return nil, err
		}
	}
	return st, nil
}

func (s *loraState) destroy() error {
	if s == nil || s.zero == nil {
		return nil
	}
	err := s.zero.destroy()
	s.zero = nil
	return err
}

// checkLoRAs is the part of request validation that needs no file.
func (s *loraState) check(loras []engine.LoRA) error {
	if len(loras) == 0 {
		return nil
	}
	var errs []error
	switch {
	case s == nil || s.targets == nil:
		errs = append(errs, errors.New("loras: this model's transformer was exported without LoRA inputs"))
	case s.loader == nil:
		errs = append(errs, errors.New("loras: LoRA files are not enabled on this server"))
	}
	if len(loras) > lora.MaxPerRequest {
		errs = append(errs, fmt.Errorf("loras: at most %d, got %d", lora.MaxPerRequest, len(loras)))
	}
	for i, l := range loras {
		if strings.TrimSpace(l.Path) == "" {
			errs = append(errs, fmt.Errorf("loras[%d].path: empty", i))
		}
		if err := lora.CheckScale(l.Scale); err != nil {
			errs = append(errs, fmt.Errorf("loras[%d].scale: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

// loraSet is a request's resolved LoRA list: its identity (requests share
// a transformer call only when their sets are identical) and its inputs.
type loraSet struct {
	key     string // "" without LoRA
	stacked *lora.Stacked
}

// prepare loads, converts and stacks a request's LoRAs. A file that cannot
// be had or used is the client's error (engine.ErrInvalidRequest), named
// by its index in the list.
func (s *loraState) prepare(ctx context.Context, loras []engine.LoRA) (*loraSet, error) {
	if len(loras) == 0 {
		return &loraSet{}, nil
	}
	ws := make([]lora.Weighted, len(loras))
	var key strings.Builder
	for i, l := range loras {
		blob, err := s.loader.Load(ctx, l.Path)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			return nil, fmt.Errorf("%w: loras[%d].path: %w", engine.ErrInvalidRequest, i, err)
		}
		ad, err := s.adapters.Get(ctx, blob.SHA256, func(context.Context) (*lora.Adapter, int64, error) {
			data, err := blob.Bytes()
			if err != nil {
				return nil, 0, err
			}
			f, err := lora.ParseSafetensors(data)
			if err != nil {
				return nil, 0, err
			}
			ad, err := lora.Convert(f, s.targets)
			if err != nil {
				return nil, 0, err
			}
			return ad, ad.Bytes, nil
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			return nil, fmt.Errorf("%w: loras[%d]: %w", engine.ErrInvalidRequest, i, err)
		}
		ws[i] = lora.Weighted{Adapter: ad, Scale: l.Scale}
		key.WriteString(blob.SHA256 + "*" + strconv.FormatFloat(l.Scale, 'g', -1, 64) + ";")
	}
	return &loraSet{key: key.String(), stacked: lora.Stack(s.targets, ws)}, nil
}

// loraTensors are the transformer's LoRA inputs for one set, by input
// name, and lora_active when the graph has it.
type loraTensors struct {
	byName map[string]*floatTensor
	active *ort.Tensor[bool]
}

func newLoRATensors(floatT string, t *lora.Targets, st *lora.Stacked, switched, active bool) (_ *loraTensors, err error) {
	lt := &loraTensors{byName: make(map[string]*floatTensor, 2*t.Len())}
	defer func() {
		if err != nil {
			_ = lt.destroy()
		}
	}()
	if switched {
		if lt.active, err = ort.NewTensor(ort.NewShape(1), []bool{active}); err != nil {
			return nil, fmt.Errorf("%s: %w", loraActiveInput, err)
		}
	}
	for i := 0; i < t.Len(); i++ {
		tg, r := t.At(i), int64(st.Ranks[i])
		a, err := newFloatTensor(floatT, int64(tg.In), r)
		if err != nil {
			return nil, fmt.Errorf("lora input %s: %w", tg.Module, err)
		}
		lt.byName[tg.Module+lora.InputSuffixA] = a
		a.write(0, st.A[i])
		b, err := newFloatTensor(floatT, r, int64(tg.Out))
		if err != nil {
			return nil, fmt.Errorf("lora input %s: %w", tg.Module, err)
		}
		lt.byName[tg.Module+lora.InputSuffixB] = b
		b.write(0, st.B[i])
	}
	return lt, nil
}

// addTo puts the tensors into a call's input map.
func (lt *loraTensors) addTo(inputs map[string]ort.Value) {
	for n, t := range lt.byName {
		inputs[n] = t.value()
	}
	if lt.active != nil {
		inputs[loraActiveInput] = lt.active
	}
}

func (lt *loraTensors) destroy() error {
	var errs []error
	for _, t := range lt.byName {
		errs = append(errs, t.Destroy())
	}
	if lt.active != nil {
		errs = append(errs, lt.active.Destroy())
	}
	return errors.Join(errs...)
}

// addLoRA puts g's LoRA inputs into a call's inputs, building them on
// first use (the stacked floats are dropped then). Caller holds g.exec.
func (g *ditGroup) addLoRA(e *Engine, inputs map[string]ort.Value) error {
	if e.lora.targets == nil {
		return nil
	}
	if g.key.lora == "" {
		e.lora.zero.addTo(inputs)
		return nil
	}
	if g.loraT == nil {
		lt, err := newLoRATensors(e.dit.floatT, e.lora.targets, g.set.stacked, e.lora.switched, true)
		if err != nil {
			return err
		}
		g.loraT, g.set = lt, nil
	}
	g.loraT.addTo(inputs)
	return nil
}

// releaseLoRA frees g's LoRA inputs (never the shared zero ones). Caller
// holds g.exec (or g is unreachable).
func (g *ditGroup) releaseLoRA() {
	if g.loraT != nil {
		_ = g.loraT.destroy()
		g.loraT = nil
	}
}
