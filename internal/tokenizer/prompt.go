package tokenizer

import "fmt"

// FLUX.2 [klein] prompt encoding defaults: the Qwen3 chat template with
// thinking disabled and no system message, 512 tokens, padded with
// <|endoftext|> (docs/model.md §2).
const (
	KleinTemplatePrefix = "<|im_start|>user\n"
	KleinTemplateSuffix = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
	KleinMaxLength      = 512
	KleinPadID          = 151643
)

// PromptConfig describes a fixed-length prompt encoding.
type PromptConfig struct {
	Prefix, Suffix string // the chat template around the prompt
	MaxLength      int
	PadID          int64
}

// KleinPrompt is the encoding the diffusers Flux2KleinPipeline uses.
func KleinPrompt() PromptConfig {
	return PromptConfig{Prefix: KleinTemplatePrefix, Suffix: KleinTemplateSuffix, MaxLength: KleinMaxLength, PadID: KleinPadID}
}

// PromptEncoder turns prompts into the text encoder's ids and attention
// mask exactly as Hugging Face does after apply_chat_template: the
// templated string is tokenised as one text, truncated from the right to
// MaxLength (so a very long prompt loses the template suffix, like the
// reference) and right-padded with PadID (mask 0).
type PromptEncoder struct {
	tok *Tokenizer
	cfg PromptConfig
}

// NewPromptEncoder checks cfg against the tokenizer.
func NewPromptEncoder(tok *Tokenizer, cfg PromptConfig) (*PromptEncoder, error) {
	if cfg.MaxLength <= 0 {
		return nil, fmt.Errorf("tokenizer: prompt max length must be positive, got %d", cfg.MaxLength)
	}
	if cfg.PadID < 0 || int(cfg.PadID) >= tok.VocabSize() {
		return nil, fmt.Errorf("tokenizer: pad id %d outside the vocabulary (%d ids)", cfg.PadID, tok.VocabSize())
	}
	return &PromptEncoder{tok: tok, cfg: cfg}, nil
}

// EncodePrompt returns MaxLength ids and the matching attention mask.
func (p *PromptEncoder) EncodePrompt(prompt string) (ids, mask []int64) {
	enc := p.tok.Encode(p.cfg.Prefix + prompt + p.cfg.Suffix)
	ids, mask = make([]int64, p.cfg.MaxLength), make([]int64, p.cfg.MaxLength)
	n := copy(ids, enc)
	for i := range ids {
		if i < n {
			mask[i] = 1
		} else {
			ids[i] = p.cfg.PadID
		}
	}
	return ids, mask
}
