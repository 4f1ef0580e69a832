package tokenizer

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode"
	"unicode/utf8"
)

// loadTiny loads the repository's Qwen3 tokenizer once per test binary.
var loadTiny = sync.OnceValues(func() (*Tokenizer, error) { return Load(tinyTokenizerDir) })

func tinyTokenizer(tb testing.TB) *Tokenizer {
	tb.Helper()
	tok, err := loadTiny()
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// Expected pieces are tokenizers' own output: Split(Regex(Qwen2 pattern),
// "isolated").pre_tokenize_str(text), tokenizers 0.23.3.
func TestSplitWordsMatchesTokenizers(t *testing.T) {
	cases := []struct {
		text string
		want []string
	}{
		{"Hello world", []string{"Hello", " world"}},
		{"a  b", []string{"a", " ", " b"}},
		{"a   b", []string{"a", "  ", " b"}},
		{"a \u0009 b", []string{"a", " \u0009", " b"}},
		{"a\u000a\u000ab", []string{"a", "\u000a\u000a", "b"}},
		{"a \u000a b", []string{"a", " \u000a", " b"}},
		{"  \u000a  x", []string{"  \u000a", " ", " x"}},
		{"x  ", []string{"x", "  "}},
		{"x \u000a", []string{"x", " \u000a"}},
		{"don't", []string{"don", "'t"}},
		{"DON'T", []string{"DON", "'T"}},
		{"We'Re", []string{"We", "'Re"}},
		{"I'M here", []string{"I", "'M", " here"}},
		{"you'LL", []string{"you", "'LL"}},
		{"'s", []string{"'s"}},
		{"'sa", []string{"'s", "a"}},
		{"'\u017f", []string{"'\u017f"}},
		{"''s", []string{"''", "s"}},
		{"it\u2019s", []string{"it", "\u2019s"}},
		{"'x", []string{"'x"}},
		{"'1", []string{"'", "1"}},
		{"12345", []string{"1", "2", "3", "4", "5"}},
		{"3.14", []string{"3", ".", "1", "4"}},
		{"$100!", []string{"$", "1", "0", "0", "!"}},
		{" !!!\u000a\u000anext", []string{" !!!\u000a\u000a", "next"}},
		{"!!\u000d\u000a\u000d\u000ax", []string{"!!\u000d\u000a\u000d\u000a", "x"}},
		{"(hello)", []string{"(hello", ")"}},
		{" (x", []string{" (", "x"}},
		{"\u00a0word", []string{"\u00a0word"}},
		{"\u3000\u5b57", []string{"\u3000\u5b57"}},
		{"\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8", []string{"\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8"}},
		{"a\u0301b", []string{"a", "\u0301b"}},
		{"x\u2028y", []string{"x", "\u2028y"}},
		{"\u0009word", []string{"\u0009word"}},
		{"\u000a word", []string{"\u000a", " word"}},
		{"a\u180eb", []string{"a", "\u180eb"}},
		{"\u1c89x", []string{"\u1c89x"}},
		{"\U000105c0b", []string{"\U000105c0b"}},
		{"\u0663\u0664a", []string{"\u0663", "\u0664", "a"}},
		{"\u00b2x", []string{"\u00b2", "x"}},
		{"\u216bv", []string{"\u216b", "v"}},
		{"e\u0301", []string{"e", "\u0301"}},
		{"a.b", []string{"a", ".b"}},
		{"foo_bar", []string{"foo", "_bar"}},
		{" \u00a0 a", []string{" \u00a0", " a"}},
		{"\u000b\u000c", []string{"\u000b\u000c"}},
		{"\u000d", []string{"\u000d"}},
		{"\u000d\u000a", []string{"\u000d\u000a"}},
		{"end \u000d\u000a", []string{"end", " \u000d\u000a"}},
		{"\U0001f642\U0001f642 ok", []string{"\U0001f642\U0001f642", " ok"}},
		{"a\u001cb", []string{"a", "\u001cb"}},
	}
	for _, c := range cases {
		var got []string
		splitWords(c.text, func(w string) { got = append(got, w) })
		if !slices.Equal(got, c.want) {
			t.Errorf("splitWords(%+q) = %+q, want %+q", c.text, got, c.want)
		}
	}
}

// The generated regex classes must agree with Go's Unicode tables wherever
// Go knows the code point; they may only add code points that Go's (older)
// Unicode version leaves unassigned.
func TestRegexClassTablesExtendGoUnicode(t *testing.T) {
	unassigned := func(r rune) bool {
		return !unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Z,
			unicode.Cc, unicode.Cf, unicode.Co, unicode.Cs)
	}
	isSpace := func(r rune) bool { return unicode.Is(unicode.White_Space, r) }
	extra := 0
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if r >= 0xD800 && r <= 0xDFFF {
			continue
		}
		got := runeClass(r)
		want := classOther
		switch {
		case r == '\r' || r == '\n':
			want = classNewline
		case unicode.IsLetter(r):
			want = classLetter
		case unicode.IsNumber(r):
			want = classNumber
		case isSpace(r):
			want = classSpace
		}
		if got == want {
			continue
		}
		if want == classOther && unassigned(r) && (got == classLetter || got == classNumber) {
			extra++
			continue
		}
		t.Errorf("runeClass(%U) = %d, Go's unicode package says %d", r, got, want)
	}
	t.Logf("%d code points classified from newer Unicode data than Go %s", extra, unicode.Version)
}

// randomText draws strings that stress every stage: letters of many scripts,
// digits, whitespace kinds, punctuation, apostrophes, combining marks, emoji,
// added-token strings and arbitrary code points.
func randomText(rng *rand.Rand) string {
	pools := []string{
		"a", "Z", "cat", " dog", "é", "e\u0301", "\u0301", "\u0316", "ß", "ſ", "'", "'s", "'LL", "'re", "’",
		"0", "42", "١", "²", "Ⅻ", " ", "  ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u3000", "\u2028", "\v",
		"!", "?!", "...", "—", "(", "\"", "日本", "한", "\u1100\u1161", "ไทย", "ع", "ש", "क्ष", "🙂", "👍🏽",
		"👨\u200d👩\u200d👧", "🇯🇵", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<|im_", "\u07fd", "\U00011930",
	}
	var b strings.Builder
	for n := rng.IntN(40); n >= 0; n-- {
		if rng.IntN(6) == 0 {
			for {
				r := rune(rng.IntN(unicode.MaxRune + 1))
				if utf8.ValidRune(r) {
					b.WriteRune(r)
					break
				}
			}
			continue
		}
		b.WriteString(pools[rng.IntN(len(pools))])
	}
	return b.String()
}

func TestEncodeProperties(t *testing.T) {
	tok := tinyTokenizer(t)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 3000; i++ {
		s := randomText(rng)
		ids := tok.Encode(s)
		for _, id := range ids {
			if id < 0 || id >= int64(tok.VocabSize()) {
				t.Fatalf("Encode(%+q) produced id %d outside [0, %d)", s, id, tok.VocabSize())
			}
		}
		got, err := tok.Decode(ids)
		if err != nil {
			t.Fatalf("Decode(Encode(%+q)): %v", s, err)
		}
		// The text is normalized per stretch between added tokens, as HF
		// does; NFC of the whole string can differ when a combining mark
		// follows an added token.
		if want := nfcLikeTokenizers(s); got != want && !strings.Contains(s, "<") {
			t.Fatalf("Decode(Encode(%+q)) = %+q, want NFC %+q", s, got, want)
		}
		if s == nfcLikeTokenizers(s) && got != s {
			t.Fatalf("Decode(Encode(%+q)) = %+q, want the (already NFC) input", s, got)
		}
	}
}

func TestEncodeInvalidUTF8(t *testing.T) {
	tok := tinyTokenizer(t)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 500; i++ {
		raw := []byte(randomText(rng))
		for j := rng.IntN(4); j >= 0 && len(raw) > 0; j-- {
			raw[rng.IntN(len(raw))] = byte(0x80 + rng.IntN(0x80)) // break the encoding somewhere
		}
		s := string(raw)
		got := tok.Encode(s)
		if want := tok.Encode(sanitizeUTF8(s)); !slices.Equal(got, want) {
			t.Fatalf("Encode(%+q) = %v, want the encoding of the sanitized text %v", s, got, want)
		}
	}
	// One replacement character per bad byte: "\xff\xfe" is two U+FFFD.
	if got, want := tok.Encode("a\xff\xfeb"), tok.Encode("a\ufffd\ufffdb"); !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestConcurrentEncode(t *testing.T) {
	tok := tinyTokenizer(t)
	texts := []string{"a cat on a skateboard", "日本語のテキスト", "don't stop 123", "🙂 emoji\n\nnext"}
	want := make([][]int64, len(texts))
	for i, s := range texts {
		want[i] = tok.Encode(s)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				k := (g + i) % len(texts)
				if got := tok.Encode(texts[k]); !slices.Equal(got, want[k]) {
					errs <- texts[k]
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for s := range errs {
		t.Errorf("concurrent Encode(%q) differed", s)
	}
}

func TestTokenLookupAndDecode(t *testing.T) {
	tok := tinyTokenizer(t)
	if got := tok.VocabSize(); got != 151669 {
		t.Errorf("VocabSize() = %d, want 151669 (151643 BPE tokens + 26 added)", got)
	}
	for content, want := range map[string]int64{"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645,
		"<think>": 151667, "</think>": 151668, "\n": 198, "\n\n": 271, "user": 872, "assistant": 77091, " cat": 8251} {
		if got, ok := tok.TokenID(content); !ok || got != want {
			t.Errorf("TokenID(%q) = %d, %v; want %d", content, got, ok, want)
		}
	}
	if _, ok := tok.TokenID("no such token at all"); ok {
		t.Error("TokenID found a token that does not exist")
	}
	added := tok.AddedTokens()
	if len(added) != 26 || added[0].Content != "<|endoftext|>" || !added[0].Special || added[0].Normalized {
		t.Errorf("AddedTokens() = %+v", added[:min(len(added), 2)])
	}
	text, err := tok.Decode([]int64{151644, 872, 198, 64, 8251, 151645})
	if err != nil || text != "<|im_start|>user\na cat<|im_end|>" {
		t.Errorf("Decode = %q, %v", text, err)
	}
	for _, bad := range []int64{-1, 151669, 1 << 40} {
		if _, err := tok.Decode([]int64{64, bad}); err == nil {
			t.Errorf("Decode accepted id %d", bad)
		}
	}
	// Half a character (the first token of a character BPE leaves in
	// pieces) decodes as U+FFFD.
	ids := tok.Encode("\U00029E3D") // 𩸽: three tokens
	if len(ids) < 2 {
		t.Fatalf("𩸽 is %v, want several tokens for this check", ids)
	}
	if text, err := tok.Decode(ids[:1]); err != nil || !strings.Contains(text, "\ufffd") {
		t.Errorf("partial character: ids %v, text %q, err %v", ids[:1], text, err)
	}
}

// Broken or unsupported tokenizer folders fail to load with an error that
// names the problem.
func TestLoadErrors(t *testing.T) {
	flags, err := os.ReadFile("../../testdata/tokenizer/flags/tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	edit := func(old, new string) string {
		if !strings.Contains(string(flags), old) {
			t.Fatalf("flags tokenizer.json lacks %q", old)
		}
		return strings.Replace(string(flags), old, new, 1)
	}
	cases := []struct {
		name, tokenizerJSON, config, want string
	}{
		{name: "empty folder", want: "neither"},
		{name: "not json", tokenizerJSON: "{", want: "parse tokenizer.json"},
		{name: "dropout", tokenizerJSON: edit(`"dropout": null`, `"dropout": 0.1`), want: "dropout"},
		{name: "other regex", tokenizerJSON: edit(`"Regex": "(?i:'s`, `"Regex": "(?i:'S`), want: "pre_tokenizer"},
		{name: "other normalizer", tokenizerJSON: edit(`"type": "NFC"`, `"type": "NFKC"`), want: "normalizer"},
		{name: "template post-processor", tokenizerJSON: edit(`"post_processor": null`, `"post_processor": {"type": "TemplateProcessing"}`), want: "post_processor"},
		{name: "wordpiece", tokenizerJSON: edit(`"type": "BPE"`, `"type": "WordPiece"`), want: "model type"},
		{name: "unknown merge token", tokenizerJSON: edit(`"merges": [`, `"merges": [["zz", "qq"],`), want: "merge 1"},
		{name: "bad merge string", tokenizerJSON: edit(`"merges": [`, `"merges": ["a b c", `), want: "want [[a, b]"},
		{name: "not byte-level", tokenizerJSON: edit(`"vocab": {`, `"vocab": {"a b": 5000, `), want: "byte-level alphabet"},
		{name: "add_bos_token", tokenizerJSON: string(flags), config: `{"add_bos_token": true}`, want: "add_bos_token"},
		{name: "left padding", tokenizerJSON: string(flags), config: `{"padding_side": "left"}`, want: "padding_side"},
		{name: "vocab layout of another class", config: `{"tokenizer_class": "LlamaTokenizer"}`, want: "tokenizer_class"},
		{name: "vocab layout without vocab.json", config: `{}`, want: "vocab.json"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if c.tokenizerJSON != "" {
				if err := os.WriteFile(filepath.Join(dir, TokenizerJSONFile), []byte(c.tokenizerJSON), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if c.config != "" {
				if err := os.WriteFile(filepath.Join(dir, TokenizerConfigFile), []byte(c.config), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Load(dir)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Load error = %v, want one mentioning %q", err, c.want)
			}
		})
	}
}

// The vocab.json + merges.txt reader: header line, CRLF line ends, a missing
// final newline, a malformed line, and added tokens from
// tokenizer_config.json (normalized defaults to true, as in tokenizers).
func TestLoadVocabMergesFormats(t *testing.T) {
	// A toy byte-level vocabulary: the 256 single bytes, then "ab" and "abc".
	vocab := map[string]int{}
	for b := 0; b < 256; b++ {
		vocab[string(appendSpelled(nil, string([]byte{byte(b)})))] = b
	}
	vocab["ab"], vocab["abc"] = 256, 257
	vocabJSON, err := json.Marshal(vocab)
	if err != nil {
		t.Fatal(err)
	}
	config := `{"tokenizer_class": "Qwen2Tokenizer", "added_tokens_decoder": {
		"258": {"content": "<x>", "special": true, "normalized": false},
		"259": {"content": "été"}}}`
	write := func(merges string) string {
		t.Helper()
		dir := t.TempDir()
		for name, data := range map[string]string{VocabFile: string(vocabJSON), MergesFile: merges, TokenizerConfigFile: config} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	for _, merges := range []string{"#version: 0.2\na b\nab c\n", "#version: 0.2\r\na b\r\nab c", "a b\nab c\n"} {
		tok, err := Load(write(merges))
		if err != nil {
			t.Fatalf("merges %q: %v", merges, err)
		}
		// "e\u0301t\u00e9" only matches the normalized added token after NFC.
		got := tok.Encode("abcab<x>e\u0301t\u00e9 ab")
		want := []int64{257, 256, 258, 259, int64(vocab[string(appendSpelled(nil, " "))]), 256}
		if !slices.Equal(got, want) {
			t.Errorf("merges %q: Encode = %v, want %v", merges, got, want)
		}
	}
	if _, err := Load(write("a b\n\nab c\n")); err == nil || !strings.Contains(err.Error(), "merge 2") {
		t.Errorf("blank merges line: error %v, want merge 2 rejected", err)
	}
}
