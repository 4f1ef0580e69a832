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
// length and pad id (LoadManifest has checked that they are present).
func loadTokenizer(dir string, spec TextSpec) (promptTokenizer, error) {
	tok, err := tokenizer.Load(dir)
	if err != nil {
		return nil, err
	}
	return tokenizer.NewPromptEncoder(tok, tokenizer.PromptConfig{Prefix: spec.TemplatePrefix,
		Suffix: spec.TemplateSuffix, MaxLength: spec.MaxLength, PadID: *spec.PadTokenID})
}
