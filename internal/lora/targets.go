package lora

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Target is one linear layer of the transformer that takes a low-rank
// pair: the graph inputs Module+".lora_A" [In, r] and Module+".lora_B"
// [r, Out]. Module is the diffusers module name
// ("transformer_blocks.0.attn.to_q").
type Target struct {
	Module  string
	In, Out int
}

// Graph input name suffixes of a target's pair.
const (
	InputSuffixA = ".lora_A"
	InputSuffixB = ".lora_B"
)

// Targets is the model's set of LoRA targets, in graph input order, with
// every name a LoRA file may use for them.
type Targets struct {
	list  []Target
	index map[string]int
	// dotted maps a module name (diffusers or BFL) to the targets it loads
	// into: one, or three for a fused BFL qkv (split by rows in order).
	dotted map[string][]int
	// underscored is dotted with "." replaced by "_" (kohya's lora_unet_
	// names); nil entries are names two modules collapse to.
	underscored map[string][]int
}

// Targets in use: BFL (black-forest-labs/flux2) module names, as ComfyUI,
// ai-toolkit, kohya/musubi-tuner and fal's trainer write them, and the
// diffusers modules they are.
var (
	bflGlobals = map[string]string{
		"img_in":                           "x_embedder",
		"txt_in":                           "context_embedder",
		"time_in.in_layer":                 "time_guidance_embed.timestep_embedder.linear_1",
		"time_in.out_layer":                "time_guidance_embed.timestep_embedder.linear_2",
		"guidance_in.in_layer":             "time_guidance_embed.guidance_embedder.linear_1",
		"guidance_in.out_layer":            "time_guidance_embed.guidance_embedder.linear_2",
		"final_layer.linear":               "proj_out",
		"final_layer.adaLN_modulation.1":   "norm_out.linear",
		"single_stream_modulation.lin":     "single_stream_modulation.linear",
		"double_stream_modulation_img.lin": "double_stream_modulation_img.linear",
		"double_stream_modulation_txt.lin": "double_stream_modulation_txt.linear",
	}
	bflDouble = map[string][]string{
		"img_attn.qkv":  {"attn.to_q", "attn.to_k", "attn.to_v"},
		"txt_attn.qkv":  {"attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"},
		"img_attn.proj": {"attn.to_out.0"},
		"txt_attn.proj": {"attn.to_add_out"},
		"img_mlp.0":     {"ff.linear_in"},
		"img_mlp.2":     {"ff.linear_out"},
		"txt_mlp.0":     {"ff_context.linear_in"},
		"txt_mlp.2":     {"ff_context.linear_out"},
	}
	bflSingle = map[string][]string{
		"linear1": {"attn.to_qkv_mlp_proj"},
		"linear2": {"attn.to_out"},
	}
	blockRe = regexp.MustCompile(`^(transformer_blocks|single_transformer_blocks)\.(\d+)\.`)
)

// NewTargets indexes the targets and derives every other name they go by.
func NewTargets(list []Target) (*Targets, error) {
	t := &Targets{list: list, index: map[string]int{}, dotted: map[string][]int{}, underscored: map[string][]int{}}
	blocks := map[string]map[int]bool{"transformer_blocks": {}, "single_transformer_blocks": {}}
	for i, tg := range list {
		if tg.Module == "" || tg.In <= 0 || tg.Out <= 0 {
			return nil, fmt.Errorf("lora target %d: bad module %q [%d -> %d]", i, tg.Module, tg.In, tg.Out)
		}
		if _, dup := t.index[tg.Module]; dup {
			return nil, fmt.Errorf("lora target %q listed twice", tg.Module)
		}
		t.index[tg.Module] = i
		t.dotted[tg.Module] = []int{i}
		if m := blockRe.FindStringSubmatch(tg.Module); m != nil {
			n, _ := strconv.Atoi(m[2])
			blocks[m[1]][n] = true
		}
	}
	alias := func(name string, modules []string) {
		var idx []int
		for _, m := range modules {
			i, ok := t.index[m]
			if !ok {
				return // not a target of this model: the name stays unknown
			}
			idx = append(idx, i)
		}
		t.dotted[name] = idx
	}
	for bfl, diff := range bflGlobals {
		alias(bfl, []string{diff})
	}
	for n := range blocks["transformer_blocks"] {
		for bfl, diffs := range bflDouble {
			mods := make([]string, len(diffs))
			for k, d := range diffs {
				mods[k] = fmt.Sprintf("transformer_blocks.%d.%s", n, d)
			}
			alias(fmt.Sprintf("double_blocks.%d.%s", n, bfl), mods)
		}
	}
	for n := range blocks["single_transformer_blocks"] {
		for bfl, diffs := range bflSingle {
			alias(fmt.Sprintf("single_blocks.%d.%s", n, bfl), []string{fmt.Sprintf("single_transformer_blocks.%d.%s", n, diffs[0])})
		}
	}
	for name, idx := range t.dotted {
		u := strings.ReplaceAll(name, ".", "_")
		if prev, seen := t.underscored[u]; seen && !sameInts(prev, idx) {
			t.underscored[u] = nil // ambiguous once the dots are gone
			continue
		}
		t.underscored[u] = idx
	}
	return t, nil
}

// TargetsFromInputs builds the targets from a transformer graph's inputs:
// every pair name+".lora_A" [in, r] / name+".lora_B" [r, out], in order.
// dims gives each input's fixed dimensions (-1 for a symbolic one).
func TargetsFromInputs(names []string, dims [][]int) (*Targets, error) {
	var list []Target
	for i, n := range names {
		mod, ok := strings.CutSuffix(n, InputSuffixA)
		if !ok {
			continue
		}
		if i+1 >= len(names) || names[i+1] != mod+InputSuffixB {
			return nil, fmt.Errorf("graph input %q is not followed by %q", n, mod+InputSuffixB)
		}
		a, b := dims[i], dims[i+1]
		if len(a) != 2 || len(b) != 2 || a[0] <= 0 || b[1] <= 0 || a[1] >= 0 || b[0] >= 0 {
			return nil, fmt.Errorf("graph inputs %q %v and %q %v: want [in, r] and [r, out] with r symbolic", n, a, names[i+1], b)
		}
		list = append(list, Target{Module: mod, In: a[0], Out: b[1]})
	}
	if len(list) == 0 {
		return nil, nil
	}
	return NewTargets(list)
}

// Len is the number of targets.
func (t *Targets) Len() int { return len(t.list) }

// At returns target i.
func (t *Targets) At(i int) Target { return t.list[i] }

// resolve maps a module name from a file to targets; underscored names
// (kohya) use the underscore table.
func (t *Targets) resolve(module string, underscored bool) []int {
	if underscored {
		return t.underscored[module]
	}
	return t.dotted[module]
}

func sameInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
