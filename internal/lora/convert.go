package lora

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
)

// MaxRank bounds one LoRA's rank at one target (trainers use 4 to 128).
const MaxRank = 1024

// Factor is one LoRA's update of one target, W' = W + Scale·B·A, in the
// file's own layout: A is [Rank, In] (lora_A / lora_down), B is
// [Out, Rank] (lora_B / lora_up), both row-major.
type Factor struct {
	Target int
	Rank   int
	A, B   []float32
	// Scale is alpha/rank when the file gives an alpha (kohya's per-module
	// .alpha, or lora_alpha in diffusers' safetensors metadata), else 1.
	Scale float32
}

// Adapter is a LoRA file converted to the model's targets.
type Adapter struct {
	// Layout names the key layouts found: diffusers, bfl, peft, kohya.
	Layout  string
	Factors []Factor // ordered by Target
	// Bytes is the memory the factors hold.
	Bytes int64
}

// keyKind is what a tensor is to its module.
type keyKind int

const (
	kindA keyKind = iota
	kindB
	kindAlpha
)

// prefixes a key may start with, and whether the module name after it is
// underscore-encoded. Longer first.
var prefixes = []struct {
	prefix, layout string
	underscored    bool
}{
	{"base_model.model.", "peft", false},
	{"diffusion_model.", "bfl", false},
	{"transformer.", "diffusers", false},
	{"lora_transformer_", "kohya", true},
	{"lora_unet_", "kohya", true},
}

var suffixes = []struct {
	suffix string
	kind   keyKind
}{
	{".lora_A.weight", kindA},
	{".lora_A.default.weight", kindA},
	{".lora_down.weight", kindA},
	{".lora_B.weight", kindB},
	{".lora_B.default.weight", kindB},
	{".lora_up.weight", kindB},
	{".alpha", kindAlpha},
}

// unsupported recognises adapter types that are not LoRA by their key
// names, so the error says what the file is.
func unsupported(key string) string {
	switch {
	case strings.Contains(key, ".lokr_") || strings.HasPrefix(key, "lycoris_"):
		return "LoKr (Kronecker-product) adapters are not supported; convert it to a LoRA"
	case strings.Contains(key, ".hada_"):
		return "LoHa adapters are not supported"
	case strings.Contains(key, "dora_scale") || strings.Contains(key, "lora_magnitude_vector"):
		return "DoRA adapters are not supported"
	case strings.HasSuffix(key, ".diff") || strings.HasSuffix(key, ".diff_b") || strings.HasSuffix(key, ".bias"):
		return "full weight or bias updates are not supported, only low-rank pairs"
	}
	return ""
}

type group struct {
	module      string
	underscored bool
	a, b, alpha *Tensor
	first       string // first key, for errors about the group
}

// Convert maps a parsed LoRA file onto the model's targets. It accepts the
// layouts in docs/lora.md, in any mix, and refuses anything else: the
// first offending key (in sorted order) is named in a *KeyError. It never
// loads part of a file.
func Convert(f *File, t *Targets) (*Adapter, error) {
	if t == nil || t.Len() == 0 {
		return nil, fmt.Errorf("%w: the model has no LoRA inputs", ErrUnsupported)
	}
	groups := map[string]*group{}
	var order []*group
	layouts := map[string]bool{}
	for _, key := range f.Keys() {
		if why := unsupported(key); why != "" {
			return nil, &KeyError{Key: key, Err: fmt.Errorf("%w: %s", ErrUnsupported, why)}
		}
		rest, underscored := key, false
		for _, p := range prefixes {
			if r, ok := strings.CutPrefix(key, p.prefix); ok {
				rest, underscored = r, p.underscored
				layouts[p.layout] = true
				break
			}
		}
		module, kind, ok := "", keyKind(0), false
		for _, s := range suffixes {
			if m, cut := strings.CutSuffix(rest, s.suffix); cut {
				module, kind, ok = m, s.kind, true
				break
			}
		}
		if !ok {
			return nil, &KeyError{Key: key, Err: fmt.Errorf("%w: not a lora_A/lora_B/lora_down/lora_up/alpha tensor", ErrUnknownKey)}
		}
		if rest == key && !underscored {
			layouts["bare"] = true
		}
		id := fmt.Sprintf("%t|%s", underscored, module)
		g := groups[id]
		if g == nil {
			g = &group{module: module, underscored: underscored, first: key}
			groups[id] = g
			order = append(order, g)
		}
		dst := map[keyKind]**Tensor{kindA: &g.a, kindB: &g.b, kindAlpha: &g.alpha}[kind]
		if *dst != nil {
			return nil, &KeyError{Key: key, Err: fmt.Errorf("%w: %s already given by %q", ErrDuplicate, module, (*dst).Name)}
		}
		*dst = f.Tensors[key]
	}
	if len(order) == 0 {
		return nil, ErrEmpty
	}
	meta, err := parseMetadata(f.Metadata)
	if err != nil {
		return nil, err
	}
	ad := &Adapter{}
	owner := map[int]string{}
	for _, g := range order {
		factors, err := g.convert(t, meta)
		if err != nil {
			return nil, err
		}
		for _, fc := range factors {
			if prev, dup := owner[fc.Target]; dup {
				return nil, &KeyError{Key: g.first, Err: fmt.Errorf("%w: %s is also loaded by %q", ErrDuplicate, t.At(fc.Target).Module, prev)}
			}
			owner[fc.Target] = g.first
			ad.Factors = append(ad.Factors, fc)
			ad.Bytes += 4 * int64(len(fc.B))
		}
		if len(factors) > 0 {
			ad.Bytes += 4 * int64(len(factors[0].A)) // a fused module's A is shared
		}
	}
	slices.SortFunc(ad.Factors, func(a, b Factor) int { return a.Target - b.Target })
	names := make([]string, 0, len(layouts))
	for l := range layouts {
		names = append(names, l)
	}
	slices.Sort(names)
	ad.Layout = strings.Join(names, "+")
	return ad, nil
}

func (g *group) convert(t *Targets, meta *peftMeta) ([]Factor, error) {
	idx := t.resolve(g.module, g.underscored)
	if len(idx) == 0 {
		return nil, &KeyError{Key: g.first, Err: fmt.Errorf("%w (module %q)", ErrUnknownKey, g.module)}
	}
	switch {
	case g.a == nil && g.b == nil:
		return nil, &KeyError{Key: g.first, Err: fmt.Errorf("%w: alpha without lora_A/lora_B", ErrIncomplete)}
	case g.a == nil:
		return nil, &KeyError{Key: g.b.Name, Err: fmt.Errorf("%w: no down (lora_A) factor", ErrIncomplete)}
	case g.b == nil:
		return nil, &KeyError{Key: g.a.Name, Err: fmt.Errorf("%w: no up (lora_B) factor", ErrIncomplete)}
	}
	in := t.At(idx[0]).In
	outs, total := make([]int, len(idx)), 0
	for k, i := range idx {
		outs[k] = t.At(i).Out
		total += outs[k]
	}
	if len(g.a.Shape) != 2 || g.a.Shape[1] != in || g.a.Shape[0] < 1 || g.a.Shape[0] > MaxRank {
		return nil, &KeyError{Key: g.a.Name, Err: fmt.Errorf("%w: %v, want [rank <= %d, %d]", ErrShape, g.a.Shape, MaxRank, in)}
	}
	r := g.a.Shape[0]
	if len(g.b.Shape) != 2 || g.b.Shape[0] != total || g.b.Shape[1] != r {
		return nil, &KeyError{Key: g.b.Name, Err: fmt.Errorf("%w: %v, want [%d, %d]", ErrShape, g.b.Shape, total, r)}
	}
	scale := float32(1)
	if g.alpha != nil {
		if g.alpha.Len() != 1 {
			return nil, &KeyError{Key: g.alpha.Name, Err: fmt.Errorf("%w: alpha must be one number, got shape %v", ErrShape, g.alpha.Shape)}
		}
		v, err := g.alpha.Float32()
		if err != nil {
			return nil, err
		}
		scale = v[0] / float32(r)
	} else if meta != nil {
		module := g.module
		if g.underscored {
			module = t.At(idx[0]).Module
		}
		scale = meta.scale(module, r)
	}
	a, err := g.a.Float32()
	if err != nil {
		return nil, err
	}
	b, err := g.b.Float32()
	if err != nil {
		return nil, err
	}
	// A fused qkv shares A and splits B by rows, as diffusers' converters
	// do for BFL and kohya files.
	factors := make([]Factor, len(idx))
	row := 0
	for k, i := range idx {
		factors[k] = Factor{Target: i, Rank: r, A: a, B: b[row*r : (row+outs[k])*r], Scale: scale}
		row += outs[k]
	}
	return factors, nil
}

// peftMeta is the LoraConfig diffusers stores in a safetensors file's
// metadata under "lora_adapter_metadata" (keys optionally prefixed
// "transformer."): lora_alpha and its per-module alpha_pattern, and
// use_rslora (alpha/sqrt(r) instead of alpha/r).
type peftMeta struct {
	alpha   float64
	pattern []struct {
		re    *regexp.Regexp
		alpha float64
	}
	rslora bool
}

func parseMetadata(md map[string]string) (*peftMeta, error) {
	raw, ok := md["lora_adapter_metadata"]
	if !ok {
		return nil, nil
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &all); err != nil {
		return nil, fmt.Errorf("%w: metadata lora_adapter_metadata: %w", ErrFormat, err)
	}
	get := func(name string, dst any) (bool, error) {
		for _, k := range []string{"transformer." + name, name} {
			if v, ok := all[k]; ok {
				if err := json.Unmarshal(v, dst); err != nil {
					return false, fmt.Errorf("%w: metadata %s: %w", ErrFormat, k, err)
				}
				return true, nil
			}
		}
		return false, nil
	}
	var dora bool
	if _, err := get("use_dora", &dora); err != nil {
		return nil, err
	}
	if dora {
		return nil, &KeyError{Key: "__metadata__.lora_adapter_metadata", Err: fmt.Errorf("%w: DoRA adapters are not supported", ErrUnsupported)}
	}
	m := &peftMeta{}
	var alpha *float64
	found, err := get("lora_alpha", &alpha)
	if err != nil {
		return nil, err
	}
	if !found || alpha == nil {
		return nil, nil // no alpha: diffusers scales by 1
	}
	m.alpha = *alpha
	if _, err := get("use_rslora", &m.rslora); err != nil {
		return nil, err
	}
	var patterns map[string]float64
	if _, err := get("alpha_pattern", &patterns); err != nil {
		return nil, err
	}
	for _, p := range sortedKeys(patterns) {
		// PEFT matches a pattern against the end of the module name at a
		// dot boundary, or from the start when it begins with "^".
		expr := `^(?:.*\.)?(?:` + p + `)$`
		if rest, ok := strings.CutPrefix(p, "^"); ok {
			expr = `^(?:` + rest + `)$`
		}
		re, err := regexp.Compile(expr)
		if err != nil {
			return nil, fmt.Errorf("%w: metadata alpha_pattern %q: %w", ErrFormat, p, err)
		}
		m.pattern = append(m.pattern, struct {
			re    *regexp.Regexp
			alpha float64
		}{re, patterns[p]})
	}
	if math.IsNaN(m.alpha) || math.IsInf(m.alpha, 0) {
		return nil, fmt.Errorf("%w: metadata lora_alpha %v", ErrValue, m.alpha)
	}
	return m, nil
}

func (m *peftMeta) scale(module string, rank int) float32 {
	alpha := m.alpha
	for _, p := range m.pattern {
		if p.re.MatchString(module) {
			alpha = p.alpha
			break
		}
	}
	if m.rslora {
		return float32(alpha / math.Sqrt(float64(rank)))
	}
	return float32(alpha / float64(rank))
}
