package tokenizer

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// minNFCOpaque is the smallest rune of hfNFCOpaque; runes below it never need
// the table lookup.
const minNFCOpaque = 0x07FD

// nfcLikeTokenizers returns the NFC form of s as Hugging Face tokenizers
// computes it.
//
// tokenizers' NFC uses older Unicode data than golang.org/x/text: it does not
// know some combining marks and composites encoded since (hfNFCOpaque, found by
// comparing both on every code point). It treats such a rune as an ordinary
// starter that neither reorders nor composes, which splits the normalization
// problem in two: the text before the rune and the text after it normalize
// independently. So the text is cut at those runes, the pieces are normalized
// with x/text, and the runes are kept as they are.
func nfcLikeTokenizers(s string) string {
	cut := -1
	for i, r := range s {
		if r >= minNFCOpaque && unicode.Is(hfNFCOpaque, r) {
			cut = i
			break
		}
	}
	if cut < 0 {
		return norm.NFC.String(s)
	}
	var out strings.Builder
	out.Grow(len(s))
	start := 0
	for i := cut; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r >= minNFCOpaque && unicode.Is(hfNFCOpaque, r) {
			out.WriteString(norm.NFC.String(s[start:i]))
			out.WriteString(s[i : i+size])
			start = i + size
		}
		i += size
	}
	out.WriteString(norm.NFC.String(s[start:]))
	return out.String()
}

// sanitizeUTF8 makes s valid UTF-8 by replacing every byte that is not part
// of a valid encoding with U+FFFD, the same rule as `for range` over a Go
// string and encoding/json's decoder (which already applies it to JSON
// requests). The reference tokenizer only ever sees Python str values, so
// there is no reference behaviour to match for such input.
func sanitizeUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var out strings.Builder
	out.Grow(len(s) + 8)
	for _, r := range s {
		out.WriteRune(r)
	}
	return out.String()
}
