package pipeline

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

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
	built    *builtSets
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
	st := &loraState{targets: targets, loader: cfg.LoRA, adapters: lora.NewMemo[*lora.Adapter](budget),
		built: newBuiltSets(defaultLoRAInputsMemory), switched: m.TakesLoRA()}
	if targets != nil {
		if st.zero, err = newLoRATensors(floatT, targets, lora.Stack(targets, nil), st.switched, false); err != nil {
			return nil, err
		}
	}
	return st, nil
}

func (s *loraState) destroy() error {
	if s == nil {
		return nil
	}
	err := s.built.destroy()
	if s.zero != nil {
		err = errors.Join(err, s.zero.destroy())
		s.zero = nil
	}
	return err
}

// check refuses LoRAs this engine cannot apply at all (the request's own
// limits are engine.Request.Check's).
func (s *loraState) check(loras []engine.LoRA) error {
	switch {
	case len(loras) == 0:
		return nil
	case s == nil || s.targets == nil:
		return errors.New("loras: this model's transformer was exported without LoRA inputs")
	case s.loader == nil:
		return errors.New("loras: LoRA files are not enabled on this server")
	}
	return nil
}

// loraSet is a request's resolved LoRA list: its identity (requests share
// a transformer call only when their sets are identical) and its adapters.
type loraSet struct {
	key string // "" without LoRA
	ws  []lora.Weighted
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
			return nil, &engine.InputError{Loc: []any{"loras", i, "path"}, Err: err}
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
			return nil, &engine.InputError{Loc: []any{"loras", i, "path"}, Err: err}
		}
		ws[i] = lora.Weighted{Adapter: ad, Scale: l.Scale}
		key.WriteString(blob.SHA256 + "*" + strconv.FormatFloat(l.Scale, 'g', -1, 64) + ";")
	}
	return &loraSet{key: key.String(), ws: ws}, nil
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

// bytes is the memory the tensors hold.
func (lt *loraTensors) bytes() int64 {
	var n int64
	for _, t := range lt.byName {
		size := int64(2)
		if t.dtype == "float32" {
			size = 4
		}
		n += size * int64(t.len())
	}
	return n
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

// addLoRA puts g's LoRA inputs into a call's inputs, taking them from the
// built sets (building them if no recent request used the set). Caller
// holds g.exec.
func (g *ditGroup) addLoRA(e *Engine, inputs map[string]ort.Value) error {
	if e.lora.targets == nil {
		return nil
	}
	if g.key.lora == "" {
		e.lora.zero.addTo(inputs)
		return nil
	}
	if g.loraT == nil {
		lt, err := e.lora.built.acquire(g.key.lora, func() (*loraTensors, error) {
			return newLoRATensors(e.dit.floatT, e.lora.targets, lora.Stack(e.lora.targets, g.set.ws), e.lora.switched, true)
		})
		if err != nil {
			return err
		}
		g.loraT, g.set = lt, nil
	}
	g.loraT.addTo(inputs)
	return nil
}

// releaseLoRA gives g's LoRA inputs back to the built sets (never the
// shared zero ones). Caller holds g.exec (or g is unreachable).
func (g *ditGroup) releaseLoRA(e *Engine) {
	if g.loraT != nil {
		e.lora.built.release(g.key.lora)
		g.loraT = nil
	}
}

// defaultLoRAInputsMemory bounds the built LoRA inputs kept for sets no
// call uses any more: a rank-32 set of the 4B model is 102 MB in bf16, and
// stacking one costs a fraction of a second of CPU, which a set used again
// (the common case: one LoRA for many requests, or a few in turn) then
// does not pay.
const defaultLoRAInputsMemory = 512 << 20

// builtSets keeps the graph inputs of recent LoRA sets by set key, counted
// by the calls using them; unused ones go least recently used first when
// they pass the budget.
type builtSets struct {
	mu     sync.Mutex
	budget int64
	used   int64
	order  *list.List // *builtSet, front: most recent
	byKey  map[string]*list.Element
	builds int // sets built so far (tests read it)
}

type builtSet struct {
	key   string
	lt    *loraTensors
	refs  int
	bytes int64
}

func newBuiltSets(budget int64) *builtSets {
	return &builtSets{budget: budget, order: list.New(), byKey: map[string]*list.Element{}}
}

// acquire returns the inputs of key, building them when not kept.
func (b *builtSets) acquire(key string, build func() (*loraTensors, error)) (*loraTensors, error) {
	b.mu.Lock()
	if el, ok := b.byKey[key]; ok {
		s := el.Value.(*builtSet)
		s.refs++
		b.order.MoveToFront(el)
		b.mu.Unlock()
		return s.lt, nil
	}
	b.mu.Unlock()
	lt, err := build()
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if el, ok := b.byKey[key]; ok { // built meanwhile by another group of the same set
		_ = lt.destroy()
		s := el.Value.(*builtSet)
		s.refs++
		return s.lt, nil
	}
	b.builds++
	s := &builtSet{key: key, lt: lt, refs: 1, bytes: lt.bytes()}
	b.byKey[key] = b.order.PushFront(s)
	b.used += s.bytes
	b.evictLocked()
	return lt, nil
}

func (b *builtSets) release(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if el, ok := b.byKey[key]; ok {
		el.Value.(*builtSet).refs--
	}
	b.evictLocked()
}

func (b *builtSets) evictLocked() {
	for el := b.order.Back(); el != nil && b.used > b.budget; {
		prev := el.Prev()
		if s := el.Value.(*builtSet); s.refs == 0 {
			_ = s.lt.destroy()
			b.order.Remove(el)
			delete(b.byKey, s.key)
			b.used -= s.bytes
		}
		el = prev
	}
}

// len is the number of sets kept.
func (b *builtSets) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.order.Len()
}

func (b *builtSets) destroy() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var errs []error
	for el := b.order.Front(); el != nil; el = el.Next() {
		errs = append(errs, el.Value.(*builtSet).lt.destroy())
	}
	b.order.Init()
	b.byKey, b.used = map[string]*list.Element{}, 0
	return errors.Join(errs...)
}
