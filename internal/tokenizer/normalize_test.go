package tokenizer

import (
	"bufio"
	"encoding/json"
	"os"
	"testing"

	"golang.org/x/text/unicode/norm"
)

// TestNFCMatchesTokenizersOnAllProbes compares nfcLikeTokenizers with
// tokenizers' NFC on the probe strings of every code point (about 12 million
// strings). The probe results are too large to commit; the generator
// (scripts/gen_tokenizer_corpus.py --tables) produces them and runs this test
// with KLEINSERVE_NFC_PROBES pointing at them.
func TestNFCMatchesTokenizersOnAllProbes(t *testing.T) {
	path := os.Getenv("KLEINSERVE_NFC_PROBES")
	if path == "" {
		t.Skip("KLEINSERVE_NFC_PROBES not set (run by scripts/gen_tokenizer_corpus.py --tables)")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	lines, failures := 0, 0
	for sc.Scan() {
		var rec [3]json.RawMessage
		var probe, want string
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("line %d: %v", lines+1, err)
		}
		if err := json.Unmarshal(rec[1], &probe); err != nil {
			t.Fatalf("line %d: %v", lines+1, err)
		}
		if err := json.Unmarshal(rec[2], &want); err != nil {
			t.Fatalf("line %d: %v", lines+1, err)
		}
		lines++
		if got := nfcLikeTokenizers(probe); got != want {
			failures++
			if failures <= 20 {
				t.Errorf("NFC(%+q) = %+q, tokenizers gives %+q", probe, got, want)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d probes, %d differ", lines, failures)
	if failures > 0 {
		t.Fatalf("%d of %d probes differ", failures, lines)
	}
}

// TestNFCKnownDifferences pins cases where tokenizers' NFC (older Unicode
// data) and golang.org/x/text disagree, with tokenizers' output (from the
// probe run).
func TestNFCKnownDifferences(t *testing.T) {
	cases := []struct{ in, want string }{
		// U+07FD (Unicode 11, ccc 220) is a plain starter to tokenizers, so
		// the acute after it still composes with nothing and stays put.
		{"a\u07fd\u0301", "a\u07fd\u0301"},
		// U+0898 (Unicode 14, ccc 230): no reordering around it.
		{"a\u0898\u0316", "a\u0898\u0316"},
		// Dives Akuru U+11935 U+11930 composes to U+11938 only in x/text.
		{"\U00011935\U00011930", "\U00011935\U00011930"},
		{"\U00011938", "\U00011938"},
		// Ordinary NFC still applies around and between such runes.
		{"e\u0301\u07fde\u0301", "\u00e9\u07fd\u00e9"},
		{"\u212b", "\u00c5"},
		{"\u1100\u1161\u11a8", "\uac01"},
		{"a\u0316\u0301", "\u00e1\u0316"},
		{"a\u0301\u0316", "\u00e1\u0316"},
	}
	for _, c := range cases {
		if got := nfcLikeTokenizers(c.in); got != c.want {
			t.Errorf("nfcLikeTokenizers(%+q) = %+q, want %+q", c.in, got, c.want)
		}
	}
	// The first cases must really be differences, or the table is not needed.
	if norm.NFC.String("a\u07fd\u0301") == "a\u07fd\u0301" {
		t.Errorf("x/text no longer differs from tokenizers on U+07FD; regenerate unicode_tables.go")
	}
}

func TestSanitizeUTF8(t *testing.T) {
	cases := []struct{ in, want string }{
		{"ok", "ok"},
		{"a\xffb", "a\ufffdb"},
		{"\xe2\x82", "\ufffd\ufffd"}, // one U+FFFD per bad byte
		{"\xe2\x82\xac", "€"},
		{"\xed\xa0\x80", "\ufffd\ufffd\ufffd"}, // an encoded surrogate is invalid
	}
	for _, c := range cases {
		if got := sanitizeUTF8(c.in); got != c.want {
			t.Errorf("sanitizeUTF8(%+q) = %+q, want %+q", c.in, got, c.want)
		}
	}
}
