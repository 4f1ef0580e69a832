package tokenizer

import (
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// AddedToken is a token matched verbatim in the text before BPE runs (the
// special tokens such as <|im_start|>, and Qwen's <think> markers). The flags
// mean what they mean in Hugging Face tokenizers.
type AddedToken struct {
	ID      int64
	Content string
	// Special tokens are control tokens (tokenizers' skip_special_tokens).
	// Matching does not depend on it: split_special_tokens is false.
	Special bool
	// Normalized tokens are matched in the NFC-normalized text, the others in
	// the raw input before normalization.
	Normalized bool
	// LStrip and RStrip make a match swallow the whitespace on its left or
	// right; SingleWord matches only where no word character touches it.
	LStrip, RStrip, SingleWord bool
}

// tokenPattern is the text an added token is matched as: its content, or for
// normalized tokens the NFC form of its content.
type tokenPattern struct {
	text  string
	token *AddedToken
}

// tokenMatcher finds added tokens in text with leftmost-longest semantics,
// like tokenizers' Aho-Corasick automaton (MatchKind::LeftmostLongest). Added
// tokens are few, so candidates are indexed by first byte and compared
// directly.
type tokenMatcher struct {
	empty   bool
	byFirst [256][]tokenPattern // longest pattern first
}

func newTokenMatcher(patterns []tokenPattern) *tokenMatcher {
	m := &tokenMatcher{empty: true}
	for _, p := range patterns {
		if p.text == "" {
			continue
		}
		m.empty = false
		m.byFirst[p.text[0]] = append(m.byFirst[p.text[0]], p)
	}
	for _, list := range m.byFirst {
		sort.SliceStable(list, func(i, j int) bool { return len(list[i].text) > len(list[j].text) })
	}
	return m
}

// find returns the leftmost-longest match at or after from.
func (m *tokenMatcher) find(text string, from int) (start, end int, tok *AddedToken) {
	for i := from; i < len(text); i++ {
		for _, p := range m.byFirst[text[i]] {
			if strings.HasPrefix(text[i:], p.text) {
				return i, i + len(p.text), p.token
			}
		}
	}
	return -1, -1, nil
}

// split walks text, calling onText for the stretches between added tokens and
// onToken for each token, following tokenizers' AddedVocabulary::find_matches:
// matches are found left to right without overlap; a single_word token that
// touches a word character is skipped (the search then resumes after it, it is
// not retried shorter); lstrip/rstrip widen a match over adjacent whitespace.
func (m *tokenMatcher) split(text string, onText func(string), onToken func(*AddedToken)) {
	if m.empty {
		if text != "" {
			onText(text)
		}
		return
	}
	consumed := 0
	for searchFrom := 0; searchFrom < len(text); {
		start, end, tok := m.find(text, searchFrom)
		if tok == nil {
			break
		}
		searchFrom = end
		if tok.SingleWord && (endsWithWordChar(text[:start]) || startsWithWordChar(text[end:])) {
			continue
		}
		if tok.LStrip {
			start = max(len(strings.TrimRightFunc(text[:start], isRegexSpace)), consumed)
		}
		if tok.RStrip {
			end += len(text[end:]) - len(strings.TrimLeftFunc(text[end:], isRegexSpace))
		}
		if consumed < start {
			onText(text[consumed:start])
		}
		onToken(tok)
		consumed = end
	}
	if consumed < len(text) {
		onText(text[consumed:])
	}
}

// isRegexSpace is Rust regex's \s (Unicode White_Space), used by tokenizers
// for lstrip/rstrip.
func isRegexSpace(r rune) bool { return unicode.Is(unicode.White_Space, r) }

// isWordChar is Rust regex's Unicode \w: Alphabetic, Mark, Decimal_Number,
// Connector_Punctuation and Join_Control, used by tokenizers for single_word.
func isWordChar(r rune) bool {
	return unicode.IsLetter(r) || unicode.Is(unicode.Nl, r) || unicode.Is(unicode.Other_Alphabetic, r) ||
		unicode.IsMark(r) || unicode.Is(unicode.Nd, r) || unicode.Is(unicode.Pc, r) || unicode.Is(unicode.Join_Control, r)
}

func endsWithWordChar(s string) bool {
	r, size := utf8.DecodeLastRuneInString(s)
	return size > 0 && isWordChar(r)
}

func startsWithWordChar(s string) bool {
	r, size := utf8.DecodeRuneInString(s)
	return size > 0 && isWordChar(r)
}
