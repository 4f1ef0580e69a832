package pipeline

import (
	"fmt"
	"slices"
	"sync"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/kleinserve/kleinserve/internal/sampler"
)

// ditBatcher runs every transformer call of the engine's denoising loops.
// Concurrent generations on the same latent grid share one call: the
// graph's batch dimension is free and its timestep is per row, so rows of
// different requests (at different steps, with different prompts and
// guidance scales) go through one forward pass, which keeps a GPU busier
// than several small calls. A call starts as soon as every loop on the grid
// has submitted its step; a loop that is busy elsewhere (a CNS update, a
// preview) holds the others up for at most maxWait of idle device time.
// With one generation at a time, a call is exactly the per-request call.
// Edits share calls only with loops whose reference images have the same
// grids in the same order (the call has one img_ids tensor); each row
// carries its own reference tokens.
type ditBatcher struct {
	e       *Engine
	maxWait time.Duration

	mu     sync.Mutex // guards groups, nextID, counts and every group's members, waiting, executing
	groups map[groupKey]*ditGroup
	nextID int
	counts BatchCounts
}

// BatchCounts counts transformer calls: all, and those shared by several
// generations.
type BatchCounts struct{ Calls, Shared int }

// groupKey is what the loops sharing a call agree on: the latent grid (h x
// w tokens), the reference grids (referenceSet.key) and the LoRA set, since
// the reference ids and the LoRA inputs are per call, not per row (lora.go).
type groupKey struct {
	h, w int
	refs string
	lora string
}

// ditGroup is the transformer state of one latent grid, reference layout
// and LoRA set.
type ditGroup struct {
	key       groupKey
	refLen    int           // reference tokens after the h*w target tokens of each row
	refIDs    []int64       // their position ids (refLen, 4)
	set       *loraSet      // the LoRA set the key names; dropped once loraT is built
	loraT     *loraTensors  // its inputs, from e.lora.built on the first call; guarded by exec
	members   int           // denoising loops on this grid
	waiting   []*ditStep    // submitted steps not yet taken into a call
	executing int           // calls taken and not yet finished
	exec      sync.Mutex    // one call on this group's tensors at a time
	callTime  time.Duration // ONNX Runtime time of this group's calls; guarded by exec

	// The call's tensors, sized for rows, reused while the row count holds;
	// guarded by exec.
	rows           int
	call           *boundRun // IOBindingOff
	io             *boundIO  // IOBindingOn
	hidden, ctxT   *floatTensor
	pred           *floatTensor
	timestep       *ort.Tensor[float32]
	imgIDs, txtIDs *ort.Tensor[int64]
	textOf         []*ditCall // whose text rows ctxT holds, in row order
	scratch        []float32  // unconditional rows of non-fp32 graphs
}

// ditStep is one loop's submission: its latents in, its velocity out.
type ditStep struct {
	d    *ditCall
	x, v []float32
	ts   float32
	done chan error
}

func newDiTBatcher(e *Engine, maxWait time.Duration) *ditBatcher {
	return &ditBatcher{e: e, maxWait: maxWait, groups: map[groupKey]*ditGroup{}}
}

// ditCall is one denoising loop's membership in the batcher. With CFG the
// loop contributes 2B rows (conditional, then unconditional), else B.
type ditCall struct {
	g        *ditGroup
	id       int // orders rows within a call, so text rows stay put
	r        *run
	pos, neg []float32
	step     ditStep
	final    bool // the loop's last transformer call is next (memory.go)
}

// rows is how many rows of a call the loop fills.
func (d *ditCall) rows() int {
	if d.r.cfg {
		return 2 * d.r.batch
	}
	return d.r.batch
}

// newDiTCall joins the batcher for r's grid with r's text embeddings.
func (r *run) newDiTCall(pos, neg []float32) (*ditCall, error) {
	if r.cfg && neg == nil {
		return nil, fmt.Errorf("transformer call: CFG without negative embeddings")
	}
	b := r.e.batcher
	d := &ditCall{r: r, pos: pos, neg: neg}
	d.step = ditStep{d: d, done: make(chan error, 1)}
	set := r.lora
	if set == nil {
		set = &loraSet{}
	}
	key := groupKey{r.h, r.w, r.refs.key(), set.key}
	b.mu.Lock()
	g := b.groups[key]
	if g == nil {
		g = &ditGroup{key: key, refLen: r.refs.len(), refIDs: r.refs.ids(), set: set}
		b.groups[key] = g
	}
	g.members++
	d.g, d.id = g, b.nextID
	b.nextID++
	b.mu.Unlock()
	return d, nil
}

// destroy leaves the batcher; the last loop on a grid frees its tensors.
func (d *ditCall) destroy() {
	b, g := d.r.e.batcher, d.g
	b.mu.Lock()
	g.members--
	last := g.members == 0
	if last {
		delete(b.groups, g.key)
	}
	b.mu.Unlock()
	if last {
		// No loop is left to submit or run a call on g.
		g.exec.Lock()
		g.release()
		g.releaseLoRA(b.e)
		g.exec.Unlock()
	}
}

// predict runs the transformer on x (B, S, PackedChannels) at noise level sigma and
// writes the velocity (CFG-combined when guidance is on) into v.
func (d *ditCall) predict(x, v []float32, sigma float32) error {
	b, g, s := d.r.e.batcher, d.g, &d.step
	s.x, s.v = x, v
	s.ts = transformerTimestep(sigma, b.e.man.Scheduler.TimestepBF16)
	b.mu.Lock()
	g.waiting = append(g.waiting, s)
	if len(g.waiting) >= g.members {
		batch := b.takeLocked(g)
		b.mu.Unlock()
		b.execute(g, batch)
		return <-s.done
	}
	b.mu.Unlock()
	timer := time.NewTimer(b.maxWait)
	defer timer.Stop()
	for {
		select {
		case err := <-s.done:
			return err
		case <-timer.C:
		}
		b.mu.Lock()
		switch {
		case !slices.Contains(g.waiting, s):
			b.mu.Unlock() // taken into a call: its result is on the way
			return <-s.done
		case g.executing > 0:
			// The others are in a call and will be back: not idle time.
			b.mu.Unlock()
			timer.Reset(b.maxWait)
		default:
			batch := b.takeLocked(g)
			b.mu.Unlock()
			b.execute(g, batch)
			return <-s.done
		}
	}
}

// takeLocked takes every waiting step of g into one call, in join order.
func (b *ditBatcher) takeLocked(g *ditGroup) []*ditStep {
	batch := g.waiting
	g.waiting = nil
	g.executing++
	b.counts.Calls++
	if len(batch) > 1 {
		b.counts.Shared++
	}
	slices.SortFunc(batch, func(a, c *ditStep) int { return a.d.id - c.d.id })
	return batch
}

// execute runs one call and hands every step its outcome.
func (b *ditBatcher) execute(g *ditGroup, batch []*ditStep) {
	g.exec.Lock()
	err := b.runCall(g, batch)
	g.exec.Unlock()
	b.mu.Lock()
	g.executing--
	b.mu.Unlock()
	for _, s := range batch {
		s.done <- err
	}
}

// runCall writes the batch's rows, runs the transformer once and writes
// each loop's velocity. Caller holds g.exec.
func (b *ditBatcher) runCall(g *ditGroup, batch []*ditStep) error {
	e := b.e
	h, w := g.key.h, g.key.w
	S, L, J := h*w, e.man.Text.MaxLength, e.man.Text.JointAttentionDim
	tok := S * sampler.PackedChannels                 // one image's target tokens
	rowTok := (S + g.refLen) * sampler.PackedChannels // one row: target, then reference tokens
	rows := 0
	for _, s := range batch {
		rows += s.d.rows()
	}
	if rows != g.rows {
		g.release()
		if err := g.allocate(e, rows); err != nil {
			return err
		}
	}
	sameText := slices.EqualFunc(g.textOf, batch, func(d *ditCall, s *ditStep) bool { return d == s.d })
	ts := g.timestep.GetData()
	off := 0
	for _, s := range batch {
		d := s.d
		for k := 0; k < d.r.batch; k++ {
			x := s.x[k*tok : (k+1)*tok]
			g.hidden.write((off+k)*rowTok, x)
			if d.r.cfg {
				g.hidden.write((off+d.r.batch+k)*rowTok, x)
			}
		}
		if !sameText { // the text and reference rows of these loops are in place otherwise
			for k := 0; k < d.r.batch; k++ {
				g.ctxT.write((off+k)*L*J, d.pos)
				if d.r.cfg {
					g.ctxT.write((off+d.r.batch+k)*L*J, d.neg)
				}
			}
			for j := off; j < off+d.rows(); j++ {
				d.r.refs.write(g.hidden, j*rowTok+tok)
			}
		}
		for j := off; j < off+d.rows(); j++ {
			ts[j] = s.ts
		}
		off += d.rows()
	}
	if !sameText {
		g.textOf = g.textOf[:0]
		for _, s := range batch {
			g.textOf = append(g.textOf, s.d)
		}
	}
	final := slices.ContainsFunc(batch, func(s *ditStep) bool { return s.d.final })
	before := g.callTime
	if err := g.run(sameText, final); err != nil {
		g.textOf = nil // the tensors' state is unknown
		return err
	}
	took := g.callTime - before
	off = 0
	for _, s := range batch {
		d := s.d
		d.r.ortTime += took // the owner waits on s.done, which comes after
		// Each row's velocity is its first tok values: the reference
		// tokens' outputs are dropped, as the reference pipeline slices them.
		for k := 0; k < d.r.batch; k++ {
			v := s.v[k*tok : (k+1)*tok]
			pos, neg := (off+k)*rowTok, (off+d.r.batch+k)*rowTok
			switch {
			case !d.r.cfg:
				g.pred.read(pos, v)
			case g.pred.F32 != nil:
				combineCFG(v, g.pred.F32[neg:neg+tok], g.pred.F32[pos:pos+tok], d.r.req.GuidanceScale, false)
			default:
				g.pred.read(pos, v)
				g.pred.read(neg, g.scratch)
				combineCFG(v, g.scratch, v, d.r.req.GuidanceScale, e.latentBF16())
			}
		}
		off += d.rows()
	}
	return nil
}

// Inputs of the transformer that change with every call, and the text
// embeddings, which change only with the loops in a call; the others (ids,
// LoRA inputs) are fixed while the call's rows are.
const (
	ditLatentsInput  = "hidden_states"
	ditTimestepInput = "timestep"
	ditTextInput     = "encoder_hidden_states"
)

// run runs the call once its host tensors are written: with io binding, the
// latents and timesteps (and the text rows when they changed) go to the
// bound tensors first.
func (g *ditGroup) run(sameText, final bool) error {
	if g.io == nil {
		g.call.final = final
		return g.call.run()
	}
	names := []string{ditLatentsInput, ditTimestepInput}
	if !sameText {
		names = append(names, ditTextInput)
	}
	if err := g.io.upload(names...); err != nil {
		return err
	}
	g.io.final = final
	return g.io.run()
}

// allocate sizes g's tensors for rows and binds the call.
func (g *ditGroup) allocate(e *Engine, rows int) (err error) {
	defer func() {
		if err != nil {
			g.release()
		}
	}()
	h, w := g.key.h, g.key.w
	S, L, J := int64(h*w), int64(e.man.Text.MaxLength), int64(e.man.Text.JointAttentionDim)
	seq := S + int64(g.refLen) // target tokens, then reference tokens
	ft := e.dit.floatT
	if g.hidden, err = newFloatTensor(ft, int64(rows), seq, sampler.PackedChannels); err != nil {
		return err
	}
	if g.ctxT, err = newFloatTensor(ft, int64(rows), L, J); err != nil {
		return err
	}
	if g.pred, err = newFloatTensor(ft, int64(rows), seq, sampler.PackedChannels); err != nil {
		return err
	}
	if g.timestep, err = ort.NewEmptyTensor[float32](ort.NewShape(int64(rows))); err != nil {
		return fmt.Errorf("timestep tensor: %w", err)
	}
	if g.imgIDs, err = ort.NewTensor(ort.NewShape(seq, 4), append(sampler.ImageIDs(0, h, w), g.refIDs...)); err != nil {
		return fmt.Errorf("img_ids tensor: %w", err)
	}
	if g.txtIDs, err = ort.NewTensor(ort.NewShape(L, 4), sampler.TextIDs(int(L))); err != nil {
		return fmt.Errorf("txt_ids tensor: %w", err)
	}
	if ft != "float32" {
		g.scratch = make([]float32, int(S)*sampler.PackedChannels) // one image's unconditional velocity
	}
	inputs := map[string]ort.Value{
		ditLatentsInput: g.hidden.value(), ditTextInput: g.ctxT.value(),
		ditTimestepInput: g.timestep, "img_ids": g.imgIDs, "txt_ids": g.txtIDs,
	}
	if err := g.addLoRA(e, inputs); err != nil {
		return err
	}
	outputs := map[string]ort.Value{"noise_pred": g.pred.value()}
	if e.cfg.IOBinding == IOBindingOn {
		if g.io, err = e.dit.bindIO(&g.callTime, e.ioPlace, inputs, outputs); err != nil {
			return err
		}
		// The ids and LoRA inputs are written: they go to the device once.
		if err := g.io.uploadExcept(ditLatentsInput, ditTimestepInput, ditTextInput); err != nil {
			return err
		}
	} else if g.call, err = e.dit.bind(&g.callTime, inputs, outputs); err != nil {
		return err
	}
	g.rows = rows
	return nil
}

// release frees g's tensors. Caller holds g.exec (or g is unreachable).
func (g *ditGroup) release() {
	g.io.destroy() // the binding first: it may hold the host tensors
	g.io = nil
	for _, t := range []*floatTensor{g.hidden, g.ctxT, g.pred} {
		if t != nil {
			_ = t.Destroy()
		}
	}
	for _, t := range []*ort.Tensor[int64]{g.imgIDs, g.txtIDs} {
		if t != nil {
			_ = t.Destroy()
		}
	}
	if g.timestep != nil {
		_ = g.timestep.Destroy()
	}
	g.hidden, g.ctxT, g.pred, g.timestep, g.imgIDs, g.txtIDs = nil, nil, nil, nil, nil, nil
	g.call, g.rows, g.textOf, g.scratch = nil, 0, nil, nil
}

// batchCounts returns the call counts so far.
func (b *ditBatcher) batchCounts() BatchCounts {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.counts
}

// BatchCounts returns how many transformer calls ran so far and how many of
// them were shared by concurrent generations.
func (e *Engine) BatchCounts() BatchCounts { return e.batcher.batchCounts() }
