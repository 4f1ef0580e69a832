package tokenizer

import (
	"fmt"
	"unicode/utf8"
)

// byteLevelAlphabet returns the GPT-2 "bytes_to_unicode" table: byte-level
// BPE vocabularies spell every byte as one printable rune so that merges and
// vocab files never contain raw whitespace or control bytes. Printable Latin-1
// bytes stand for themselves; the other 68 bytes are moved, in byte order, to
// U+0100 and up (so the space byte 0x20 becomes 'Ġ' U+0120).
func byteLevelAlphabet() [256]rune {
	var table [256]rune
	next := rune(256)
	for b := 0; b < 256; b++ {
		printable := (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
		if printable {
			table[b] = rune(b)
		} else {
			table[b] = next
			next++
		}
	}
	return table
}

// byteLevelDecoder maps the runes of the byte-level alphabet back to bytes.
type byteLevelDecoder map[rune]byte

func newByteLevelDecoder() byteLevelDecoder {
	alphabet := byteLevelAlphabet()
	dec := make(byteLevelDecoder, 256)
	for b, r := range alphabet {
		dec[r] = byte(b)
	}
	return dec
}

// decode turns a byte-level spelled token (as stored in vocab.json, merges and
// tokenizer.json) into the raw bytes it stands for.
func (d byteLevelDecoder) decode(spelled string) ([]byte, error) {
	out := make([]byte, 0, len(spelled))
	for i, r := range spelled {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(spelled[i:]); size <= 1 {
				return nil, fmt.Errorf("token %q is not valid UTF-8", spelled)
			}
		}
		b, ok := d[r]
		if !ok {
			return nil, fmt.Errorf("token %q contains %U, which is outside the byte-level alphabet", spelled, r)
		}
		out = append(out, b)
	}
	return out, nil
}
