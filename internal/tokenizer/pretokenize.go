package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// qwen2SplitPattern is the Split pre-tokenizer regex of Qwen2/Qwen3
// (tokenizer.json and transformers' Qwen2Tokenizer). Loading checks that a
// tokenizer.json uses exactly this pattern, because splitWords is a
// hand-written matcher for it rather than a general regex engine.
const qwen2SplitPattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

// charClass is what the Qwen2 pattern can tell apart about one rune.
type charClass uint8

const (
	classOther   charClass = iota // [^\s\p{L}\p{N}]
	classLetter                   // \p{L}
	classNumber                   // \p{N}
	classSpace                    // \s other than \r and \n
	classNewline                  // \r or \n
)

// runeClass classifies r the way Hugging Face tokenizers' regex engine
// (Oniguruma) does. Non-ASCII runes use tables generated from tokenizers
// itself (unicode_tables.go), because Go's unicode package follows a different
// Unicode version and would split text in newly encoded scripts differently.
func runeClass(r rune) charClass {
	if r < utf8.RuneSelf {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z':
			return classLetter
		case '0' <= r && r <= '9':
			return classNumber
		case r == '\n' || r == '\r':
			return classNewline
		case r == ' ' || r == '\t' || r == '\v' || r == '\f':
			return classSpace
		}
		return classOther
	}
	switch {
	case unicode.Is(hfRegexLetter, r):
		return classLetter
	case unicode.Is(hfRegexNumber, r):
		return classNumber
	case unicode.Is(hfRegexSpace, r):
		return classSpace
	}
	return classOther
}

// splitWords cuts normalized text into the pieces the Qwen2 Split
// pre-tokenizer produces (behavior "Isolated": every match is its own piece;
// the pattern matches at every position, so nothing falls between matches).
//
// The pattern's alternatives are tried in order at each position, exactly
// like a backtracking engine would:
//
//	1 (?i:'s|'t|'re|'ve|'m|'ll|'d)   contraction suffixes
//	2 [^\r\n\p{L}\p{N}]?\p{L}+       a word, with one leading non-letter
//	3 \p{N}                          a single digit
//	4 ' '?[^\s\p{L}\p{N}]+[\r\n]*    a punctuation run, then newlines
//	5 \s*[\r\n]+                     whitespace up to the last newline
//	6 \s+(?!\S)                      whitespace not followed by a non-space
//	7 \s+                            any whitespace
func splitWords(text string, emit func(word string)) {
	for i := 0; i < len(text); {
		n := matchAt(text, i)
		emit(text[i : i+n])
		i += n
	}
}

// matchAt returns the byte length of the pattern's match starting at i
// (always > 0 for i < len(text)).
func matchAt(text string, i int) int {
	r, size := utf8.DecodeRuneInString(text[i:])
	class := runeClass(r)

	// 1: contractions.
	if r == '\'' {
		if n := contractionLen(text[i+size:]); n > 0 {
			return size + n
		}
	}

	// 2: [^\r\n\p{L}\p{N}]?\p{L}+
	if class == classLetter {
		return size + letterRunLen(text[i+size:])
	}
	if class == classOther || class == classSpace {
		if j := i + size; j < len(text) {
			r2, size2 := utf8.DecodeRuneInString(text[j:])
			if runeClass(r2) == classLetter {
				return size + size2 + letterRunLen(text[j+size2:])
			}
		}
	}

	// 3: \p{N}
	if class == classNumber {
		return size
	}

	// 4: ' '?[^\s\p{L}\p{N}]+[\r\n]*
	runStart := -1
	switch {
	case class == classOther:
		runStart = i
	case r == ' ' && i+size < len(text):
		if r2, _ := utf8.DecodeRuneInString(text[i+size:]); runeClass(r2) == classOther {
			runStart = i + size
		}
	}
	if runStart >= 0 {
		end := runStart
		for end < len(text) {
			r2, size2 := utf8.DecodeRuneInString(text[end:])
			if runeClass(r2) != classOther {
				break
			}
			end += size2
		}
		for end < len(text) && (text[end] == '\r' || text[end] == '\n') {
			end++
		}
		return end - i
	}

	// 5–7: the rune is whitespace. Measure the whitespace run, remembering
	// where its last newline ends and where its last rune starts.
	end, afterLastNewline, lastRuneStart := i, -1, i
	for end < len(text) {
		r2, size2 := utf8.DecodeRuneInString(text[end:])
		c := runeClass(r2)
		if c != classSpace && c != classNewline {
			break
		}
		lastRuneStart = end
		end += size2
		if c == classNewline {
			afterLastNewline = end
		}
	}
	switch {
	case afterLastNewline > 0:
		// 5: \s* backtracks until [\r\n]+ can match the run's last newline.
		return afterLastNewline - i
	case end == len(text):
		// 6: nothing follows the run, so the lookahead holds for all of it.
		return end - i
	case lastRuneStart > i:
		// 6: a non-space follows; give back the last whitespace rune so that
		// the lookahead sees whitespace (it then joins the next word).
		return lastRuneStart - i
	default:
		// 7: a single whitespace rune before a non-space.
		return end - i
	}
}

// letterRunLen is the byte length of the \p{L}* prefix of s.
func letterRunLen(s string) int {
	n := 0
	for n < len(s) {
		if c := s[n]; c < utf8.RuneSelf {
			if ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') {
				n++
				continue
			}
			return n
		}
		r, size := utf8.DecodeRuneInString(s[n:])
		if runeClass(r) != classLetter {
			return n
		}
		n += size
	}
	return n
}

// contractionLen matches (?i:s|t|re|ve|m|ll|d) at the start of s (the part of
// alternative 1 after the apostrophe) and returns its byte length, or 0.
// Oniguruma's case-insensitive matching uses Unicode case folding, under which
// U+017F LATIN SMALL LETTER LONG S also matches 's'; no other non-ASCII rune
// folds to one of these letters (checked against tokenizers for every code
// point).
func contractionLen(s string) int {
	if s == "" {
		return 0
	}
	if len(s) >= 2 && s[0] == 0xC5 && s[1] == 0xBF { // U+017F 'ſ'
		return 2
	}
	first := s[0] | 0x20 // ASCII lower case; non-letters never match below
	switch first {
	case 's', 't', 'm', 'd':
		return 1
	case 'r', 'v':
		if len(s) >= 2 && s[1]|0x20 == 'e' {
			return 2
		}
	case 'l':
		if len(s) >= 2 && s[1]|0x20 == 'l' {
			return 2
		}
	}
	return 0
}
