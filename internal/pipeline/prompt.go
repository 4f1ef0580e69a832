package pipeline

import (
	"github.com/kleinserve/kleinserve/internal/tokenizer"
)

// promptTokenizer turns a prompt into the text encoder's fixed-length ids
// and attention mask.
type promptTokenizer interface {
	EncodePrompt(prompt string) (ids, mask []int64)
}

// loadTokenizer loads the model's tokenizer with the manifest's template,
// length and pad id (the klein defaults where the manifest is silent).
func loadTokenizer(dir string, spec TextSpec) (promptTokenizer, error) {
	tok, err := tokenizer.Load(dir)
	if err != nil {
		return nil, err
	}
	cfg := tokenizer.KleinPrompt()
	if spec.TemplatePrefix != "" || spec.TemplateSuffix != "" {
		cfg.Prefix, cfg.Suffix = spec.TemplatePrefix, spec.TemplateSuffix
	}
	if spec.MaxLength > 0 {
		cfg.MaxLength = spec.MaxLength
	}
	if spec.PadTokenID > 0 {
		cfg.PadID = spec.PadTokenID
	}
	return tokenizer.NewPromptEncoder(tok, cfg)
}
