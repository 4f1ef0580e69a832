package lora

import (
	"fmt"
	"math"
)

// Limits of one request's LoRA list, as fal's klein LoRA endpoints state
// them (loras: at most 3 items, scale default 1). The scale range is this
// server's: wide enough for every use seen (negative scales subtract a
// style), narrow enough to refuse typos like 100.
const (
	MaxPerRequest = 3
	DefaultScale  = 1.0
	MinScale      = -4.0
	MaxScale      = 4.0
)

// CheckScale reports whether a request's scale is usable.
func CheckScale(s float64) error {
	if math.IsNaN(s) || s < MinScale || s > MaxScale {
		return fmt.Errorf("scale must be in [%g, %g], got %v", MinScale, MaxScale, s)
	}
	return nil
}

// Weighted is an adapter with the scale a request gives it.
type Weighted struct {
	Adapter *Adapter
	Scale   float64
}

// Stacked is the transformer's LoRA inputs for one set of adapters: per
// target, A [In, Rank] and B [Rank, Out] row-major, the adapters
// concatenated along the rank axis in order, each one's request scale
// times alpha/rank folded into its rows of B. A target no adapter touches
// gets a rank-1 zero pair, which adds exactly zero.
type Stacked struct {
	Ranks []int
	A, B  [][]float32
}

// Stack builds the inputs for ws (nil or empty: the zero pairs of a
// request without LoRA).
func Stack(t *Targets, ws []Weighted) *Stacked {
	n := t.Len()
	st := &Stacked{Ranks: make([]int, n), A: make([][]float32, n), B: make([][]float32, n)}
	per := make([][]struct {
		f     *Factor
		scale float32
	}, n)
	for _, w := range ws {
		for i := range w.Adapter.Factors {
			f := &w.Adapter.Factors[i]
			per[f.Target] = append(per[f.Target], struct {
				f     *Factor
				scale float32
			}{f, float32(w.Scale) * f.Scale})
			st.Ranks[f.Target] += f.Rank
		}
	}
	for i := 0; i < n; i++ {
		tg := t.At(i)
		if st.Ranks[i] == 0 {
			st.Ranks[i] = 1
			st.A[i] = make([]float32, tg.In)
			st.B[i] = make([]float32, tg.Out)
			continue
		}
		R := st.Ranks[i]
		a := make([]float32, tg.In*R)
		b := make([]float32, R*tg.Out)
		col := 0
		for _, p := range per[i] {
			f, r := p.f, p.f.Rank
			// A input [In, R]: column col+k is row k of lora_A, copied
			// in blocks of inputs so both sides stay in cache.
			const block = 64
			for j0 := 0; j0 < tg.In; j0 += block {
				j1 := min(j0+block, tg.In)
				for k := 0; k < r; k++ {
					src := f.A[k*tg.In+j0 : k*tg.In+j1]
					for j, v := range src {
						a[(j0+j)*R+col+k] = v
					}
				}
			}
			// B input [R, Out]: row col+k is column k of lora_B, scaled
			// (rows written in order; lora_B read down its short rows).
			for k := 0; k < r; k++ {
				dst := b[(col+k)*tg.Out : (col+k+1)*tg.Out]
				for o := range dst {
					dst[o] = p.scale * f.B[o*r+k]
				}
			}
			col += r
		}
		st.A[i], st.B[i] = a, b
	}
	return st
}
