package wire

import (
	"encoding/json"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// MarshalASCII encodes v as JSON with every non-ASCII character written as a
// \uXXXX escape (surrogate pairs above the BMP).
//
// Why: the JS client decodes each SSE chunk with TextDecoder without
// {stream:true}, so a multi-byte UTF-8 character split across two TCP chunks
// would be corrupted. Pure-ASCII JSON cannot be split that way.
func MarshalASCII(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("wire: encode json: %w", err)
	}
	return EscapeNonASCII(raw), nil
}

// EscapeNonASCII rewrites already-encoded JSON so it is pure ASCII. In valid
// JSON, bytes >= 0x80 can only occur inside strings, where a \u escape means
// the same character, so the rewrite is safe without a parser. Invalid UTF-8
// becomes U+FFFD, as encoding/json does.
func EscapeNonASCII(raw []byte) []byte {
	ascii := true
	for _, b := range raw {
		if b >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return raw
	}
	out := make([]byte, 0, len(raw)+len(raw)/4)
	const hex = "0123456789abcdef"
	appendEscape := func(r rune) {
		out = append(out, '\\', 'u', hex[r>>12&0xf], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf])
	}
	for i := 0; i < len(raw); {
		b := raw[i]
		if b < utf8.RuneSelf {
			out = append(out, b)
			i++
			continue
		}
		r, size := utf8.DecodeRune(raw[i:])
		i += size
		if r > 0xffff {
			hi, lo := utf16.EncodeRune(r)
			appendEscape(hi)
			appendEscape(lo)
			continue
		}
		appendEscape(r)
	}
	return out
}
