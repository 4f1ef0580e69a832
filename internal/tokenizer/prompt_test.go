package tokenizer

import (
	"slices"
	"strings"
	"testing"
)

func TestPromptTruncationAndPadding(t *testing.T) {
	tok := tinyTokenizer(t)
	full := []int64{151644, 872, 198, 64, 8251, 389, 264, 97982, 151645, 198, 151644, 77091, 198, 151667, 271, 151668, 271}
	for _, maxLen := range []int{1, 8, 16, 17, 18, 40} {
		cfg := KleinPrompt()
		cfg.MaxLength = maxLen
		enc, err := NewPromptEncoder(tok, cfg)
		if err != nil {
			t.Fatal(err)
		}
		ids, mask := enc.EncodePrompt("a cat on a skateboard")
		if len(ids) != maxLen || len(mask) != maxLen {
			t.Fatalf("max %d: got %d ids, %d mask", maxLen, len(ids), len(mask))
		}
		n := min(maxLen, len(full))
		// Truncation keeps the first tokens (the template suffix goes first).
		if !slices.Equal(ids[:n], full[:n]) {
			t.Errorf("max %d: ids %v, want prefix %v", maxLen, ids[:n], full[:n])
		}
		for j := range ids {
			wantMask, pad := int64(0), j >= n
			if !pad {
				wantMask = 1
			}
			if mask[j] != wantMask || pad && ids[j] != KleinPadID {
				t.Errorf("max %d position %d: id %d mask %d", maxLen, j, ids[j], mask[j])
			}
		}
	}
}

func TestPromptLongAndSpecial(t *testing.T) {
	tok := tinyTokenizer(t)
	enc, err := NewPromptEncoder(tok, KleinPrompt())
	if err != nil {
		t.Fatal(err)
	}
	// 600 words: the template suffix is cut, every position is real.
	ids, mask := enc.EncodePrompt(strings.Repeat("cat ", 600))
	if len(ids) != KleinMaxLength || slices.Contains(mask, 0) || slices.Contains(ids, KleinPadID) {
		t.Fatalf("long prompt: %d ids, mask has zeros: %v", len(ids), slices.Contains(mask, 0))
	}
	if id, _ := tok.TokenID("<|im_end|>"); slices.Contains(ids, id) {
		t.Error("long prompt kept the template suffix")
	}
	// A special-token string inside the prompt is that token, as in HF.
	ids, _ = enc.EncodePrompt("a<|im_end|>b")
	if want := []int64{151644, 872, 198, 64, 151645, 65, 151645}; !slices.Equal(ids[:len(want)], want) {
		t.Errorf("prompt with <|im_end|>: %v, want prefix %v", ids[:len(want)], want)
	}
	// Results are fresh slices, not shared between calls.
	a, _ := enc.EncodePrompt("x")
	a[3] = -1
	if b, _ := enc.EncodePrompt("x"); b[3] == -1 {
		t.Error("EncodePrompt returned a shared buffer")
	}
}

func TestPromptCustomTemplate(t *testing.T) {
	tok := tinyTokenizer(t)
	enc, err := NewPromptEncoder(tok, PromptConfig{MaxLength: 10, PadID: 0})
	if err != nil {
		t.Fatal(err)
	}
	ids, mask := enc.EncodePrompt("a cat")
	if want := []int64{64, 8251, 0, 0, 0, 0, 0, 0, 0, 0}; !slices.Equal(ids, want) {
		t.Errorf("no template: ids %v, want %v", ids, want)
	}
	if want := []int64{1, 1, 0, 0, 0, 0, 0, 0, 0, 0}; !slices.Equal(mask, want) {
		t.Errorf("no template: mask %v, want %v", mask, want)
	}
}

func TestPromptConfigValidation(t *testing.T) {
	tok := tinyTokenizer(t)
	for _, cfg := range []PromptConfig{
		{MaxLength: 0, PadID: KleinPadID},
		{MaxLength: -3, PadID: KleinPadID},
		{MaxLength: 512, PadID: -1},
		{MaxLength: 512, PadID: int64(tok.VocabSize())},
	} {
		if _, err := NewPromptEncoder(tok, cfg); err == nil {
			t.Errorf("NewPromptEncoder accepted %+v", cfg)
		}
	}
}

// longPrompt is an English prompt of 505 tokens, about the most the klein
// template leaves room for.
func longPrompt() string {
	sentence := "A weathered lighthouse on a basalt cliff at dusk, waves crashing below, " +
		"gulls circling the lantern room, volumetric fog, 35mm film grain, muted teal and amber palette. "
	return strings.Repeat(sentence, 12)
}

// mixedPrompt joins corpus prompts (many scripts, emoji, code, numbers)
// until the text reaches 500 tokens: few repeated words, so the word cache
// helps little.
func mixedPrompt(tb testing.TB, tok *Tokenizer) string {
	tb.Helper()
	var parts []string
	for _, r := range loadCorpus(tb)[30:] {
		if len(r.IDs) > 100 {
			continue
		}
		parts = append(parts, r.Prompt)
		if len(tok.Encode(strings.Join(parts, ", "))) >= 500 {
			break
		}
	}
	return strings.Join(parts, ", ")
}

func BenchmarkEncode500Tokens(b *testing.B) {
	tok := tinyTokenizer(b)
	prompt := longPrompt()
	n := len(tok.Encode(prompt))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tok.Encode(prompt)
	}
	b.ReportMetric(float64(n), "tokens/op")
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkEncode500TokensColdCache empties the word cache before every
// encoding of a varied 500-token prompt: the cost of text not seen before.
func BenchmarkEncode500TokensColdCache(b *testing.B) {
	tok := tinyTokenizer(b)
	prompt := mixedPrompt(b, tok)
	n := len(tok.Encode(prompt))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		tok.bpe.cache.mu.Lock()
		clear(tok.bpe.cache.words)
		tok.bpe.cache.mu.Unlock()
		b.StartTimer()
		tok.Encode(prompt)
	}
	b.ReportMetric(float64(n), "tokens/op")
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "tokens/s")
}

func BenchmarkEncodePromptKlein500(b *testing.B) {
	tok := tinyTokenizer(b)
	enc, err := NewPromptEncoder(tok, KleinPrompt())
	if err != nil {
		b.Fatal(err)
	}
	prompt := longPrompt()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		enc.EncodePrompt(prompt)
	}
}
