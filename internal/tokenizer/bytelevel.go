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

// byteLevelRunes is one past the largest rune of the byte-level alphabet
// (256 + 68 moved bytes).
const byteLevelRunes = 256 + 68

// byteLevelDecoder maps the runes of the byte-level alphabet back to bytes;
// -1 marks runes outside the alphabet.
type byteLevelDecoder [byteLevelRunes]int16

func newByteLevelDecoder() *byteLevelDecoder {
	var dec byteLevelDecoder
	for i := range dec {
		dec[i] = -1
	}
	for b, r := range byteLevelAlphabet() {
		dec[r] = int16(b)
	}
	return &dec
}

// check reports whether spelled is made only of byte-level alphabet runes.
func (d *byteLevelDecoder) check(spelled string) error {
	for _, r := range spelled {
		if r >= byteLevelRunes || d[r] < 0 {
			return fmt.Errorf("token %q contains %U, which is outside the byte-level alphabet", spelled, r)
		}
	}
	return nil
}

// appendDecoded appends the raw bytes a byte-level spelled token (as stored
// in vocab.json, merges and tokenizer.json) stands for. The token must have
// passed check.
func (d *byteLevelDecoder) appendDecoded(dst []byte, spelled string) []byte {
	for _, r := range spelled {
		dst = append(dst, byte(d[r]))
	}
	return dst
}

// appendSpelled appends the byte-level spelling of raw bytes (the inverse of
// appendDecoded).
func appendSpelled(dst []byte, raw string) []byte {
	alphabet := byteLevelAlphabet()
	for i := 0; i < len(raw); i++ {
		dst = utf8.AppendRune(dst, alphabet[raw[i]])
	}
	return dst
}
