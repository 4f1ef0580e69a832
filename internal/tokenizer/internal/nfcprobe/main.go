// Command nfcprobe helps scripts/gen_tokenizer_corpus.py find the code points
// whose NFC behaviour differs between golang.org/x/text and Hugging Face
// tokenizers (which normalizes with older Unicode data).
//
//	nfcprobe probes   writes JSON lines [codepoint, probe] for every code point
//	nfcprobe diff     reads JSON lines [codepoint, probe, tokenizersNFC] and
//	                  prints, one hex code point per line, the runes of every
//	                  probe whose x/text NFC differs
//
// The probes put each code point next to reference characters of known
// combining class and composition behaviour, so that a difference in its
// combining class, decomposition or composition shows up in at least one.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"

	"golang.org/x/text/unicode/norm"
)

// referenceRunes are the known characters the probes combine each code point
// with (all encoded long before any Unicode version in question).
func isReferenceRune(r rune) bool {
	switch r {
	case 'a', 0x0301, 0x0316, 0x0308, 0x1100, 0x1161, 0x11A8, 0x0BC6:
		return true
	}
	return false
}

func probes(c rune) []string {
	s := string(c)
	out := []string{
		s,
		"a" + s + "\u0301", "a\u0301" + s, // ccc 230 neighbour
		"a" + s + "\u0316", "a\u0316" + s, // ccc 220 neighbour
		s + "\u0301", s + "\u0308", // c composes with a following mark
		"\u1100" + s, s + "\u1161", s + "\u11A8", // Hangul jamo composition
		"\u0BC6" + s, // Tamil two-part vowel composition
	}
	if d := norm.NFD.String(s); d != s {
		out = append(out, d) // does the decomposition recompose?
	}
	return out
}

func writeProbes(w io.Writer) error {
	bw := bufio.NewWriter(w)
	for c := rune(0); c <= 0x10FFFF; c++ {
		if c >= 0xD800 && c <= 0xDFFF {
			continue
		}
		for _, p := range probes(c) {
			line, err := json.Marshal([]any{c, p})
			if err != nil {
				return err
			}
			bw.Write(line)
			bw.WriteByte('\n')
		}
	}
	return bw.Flush()
}

func diff(r io.Reader, w io.Writer) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	opaque := map[rune]bool{}
	for sc.Scan() {
		var rec [3]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return fmt.Errorf("bad line %q: %w", sc.Text(), err)
		}
		var probe, want string
		if err := json.Unmarshal(rec[1], &probe); err != nil {
			return err
		}
		if err := json.Unmarshal(rec[2], &want); err != nil {
			return err
		}
		if norm.NFC.String(probe) == want {
			continue
		}
		for _, r := range probe {
			if !isReferenceRune(r) {
				opaque[r] = true
			}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	list := make([]rune, 0, len(opaque))
	for r := range opaque {
		list = append(list, r)
	}
	sort.Slice(list, func(i, j int) bool { return list[i] < list[j] })
	for _, r := range list {
		fmt.Fprintf(w, "%04X\n", r)
	}
	return nil
}

func main() {
	var err error
	switch {
	case len(os.Args) == 2 && os.Args[1] == "probes":
		err = writeProbes(os.Stdout)
	case len(os.Args) == 2 && os.Args[1] == "diff":
		err = diff(os.Stdin, os.Stdout)
	default:
		err = fmt.Errorf("usage: nfcprobe probes|diff")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "nfcprobe:", err)
		os.Exit(1)
	}
}
