package pipeline

import (
	"fmt"

	"github.com/kleinserve/kleinserve/internal/tokenizer"
)

// promptTokenizer turns a prompt into the text encoder's fixed-length ids
// and attention mask.
type promptTokenizer interface {
	EncodePrompt(prompt string) (ids, mask []int64)
}

// templateTokenizer applies the klein chat template, then tokenises,
// truncates from the right and right-pads exactly as the diffusers
// pipeline's Qwen2TokenizerFast call does.
type templateTokenizer struct {
	tok            *tokenizer.Tokenizer
	prefix, suffix string
	maxLen         int
	pad            int64
}

func loadTokenizer(dir string, spec TextSpec) (promptTokenizer, error) {
	tok, err := tokenizer.Load(dir)
	if err != nil {
		return nil, err
	}
	t := &templateTokenizer{tok: tok, prefix: spec.TemplatePrefix, suffix: spec.TemplateSuffix,
		maxLen: spec.MaxLength, pad: spec.PadTokenID}
	if t.prefix == "" && t.suffix == "" {
		return nil, fmt.Errorf("manifest text.template_prefix/suffix are empty")
	}
	if int(t.pad) >= tok.VocabSize() || t.pad < 0 {
		return nil, fmt.Errorf("pad token %d outside the vocabulary (%d)", t.pad, tok.VocabSize())
	}
	return t, nil
}

func (t *templateTokenizer) EncodePrompt(prompt string) (ids, mask []int64) {
	enc := t.tok.Encode(t.prefix + prompt + t.suffix)
	ids, mask = make([]int64, t.maxLen), make([]int64, t.maxLen)
	n := copy(ids, enc)
	for i := range ids {
		if i < n {
			mask[i] = 1
		} else {
			ids[i] = t.pad
		}
	}
	return ids, mask
}
