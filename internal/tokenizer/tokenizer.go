// Package tokenizer implements the Qwen2/Qwen3 byte-level BPE tokenizer
// exactly as Hugging Face tokenizers runs it for Qwen2TokenizerFast, and the
// FLUX.2 [klein] prompt encoding built on it (chat template, right padding and
// truncation to a fixed length; see PromptEncoder).
//
// The pipeline, per input string:
//
//  1. Added tokens (<|im_start|>, <think>, …) are found in the raw text,
//     leftmost-longest, before anything else (split_special_tokens=false).
//  2. Each stretch between them is NFC-normalized.
//  3. The Qwen2 pre-tokenizer regex cuts it into words (a hand-written
//     matcher; Go's regexp has no lookahead).
//  4. Each word's UTF-8 bytes are merged with the BPE merge ranks.
//
// Unicode data (letter/number/space classes of the regex engine and the NFC
// tables) is matched to what tokenizers itself uses, not to the Unicode
// version of the Go toolchain; see unicode_tables.go and
// scripts/gen_tokenizer_corpus.py.
//
// Invalid UTF-8 input is first made valid by replacing each bad byte with
// U+FFFD (what encoding/json does to request bodies).
package tokenizer

import (
	"fmt"
	"strings"
)

// Tokenizer encodes text to token ids and back. It is immutable after Load
// and safe for concurrent use.
type Tokenizer struct {
	bpe *bpeModel
	// nfc is false only for a tokenizer.json without a normalizer.
	nfc bool
	// rawTokens matches the added tokens with normalized=false in the input
	// text; normalizedTokens matches the others in each normalized stretch.
	rawTokens, normalizedTokens *tokenMatcher
	added                       []*AddedToken
	addedByContent              map[string]*AddedToken
	// idSpelled is the decoding table: the byte-level spelling of every
	// base-vocabulary token, or the content of an added token (isAdded);
	// empty for ids nothing uses. Tokens are decoded only when asked, so
	// loading allocates nothing per vocabulary entry.
	idSpelled []string
	isAdded   []bool
	byteLevel *byteLevelDecoder
}

// tokenizerSpec is the content of a tokenizer folder, independent of its file
// layout.
type tokenizerSpec struct {
	vocab        map[string]int     // byte-level spelled token → id
	merges       []mergeSpelledPair // byte-level spelled pairs, by rank
	added        []AddedToken
	nfc          bool
	ignoreMerges bool
}

type mergeSpelledPair struct{ left, right string }

// newTokenizer builds the lookup tables from a spec and checks its
// consistency (ids unique, every byte present, merge results in the vocab).
func newTokenizer(spec tokenizerSpec) (*Tokenizer, error) {
	dec := newByteLevelDecoder()
	maxID := -1
	for _, id := range spec.vocab {
		maxID = max(maxID, id)
	}
	for _, a := range spec.added {
		maxID = max(maxID, int(a.ID))
	}
	if maxID < 0 {
		return nil, fmt.Errorf("empty vocabulary")
	}
	if maxID >= 1<<31-1 {
		return nil, fmt.Errorf("token id %d out of range", maxID)
	}

	t := &Tokenizer{
		nfc:            spec.nfc,
		idSpelled:      make([]string, maxID+1),
		isAdded:        make([]bool, maxID+1),
		addedByContent: make(map[string]*AddedToken, len(spec.added)),
		byteLevel:      dec,
	}
	bpe := &bpeModel{
		vocab:        spec.vocab,
		merges:       make(map[uint64]mergeRule, len(spec.merges)),
		ignoreMerges: spec.ignoreMerges,
		cache:        newWordCache(),
	}
	t.bpe = bpe

	for spelled, id := range spec.vocab {
		if id < 0 {
			return nil, fmt.Errorf("vocabulary token %q has negative id %d", spelled, id)
		}
		if spelled == "" {
			return nil, fmt.Errorf("vocabulary id %d is an empty token", id)
		}
		if err := dec.check(spelled); err != nil {
			return nil, fmt.Errorf("vocabulary: %w", err)
		}
		if t.idSpelled[id] != "" {
			return nil, fmt.Errorf("vocabulary id %d is used twice", id)
		}
		t.idSpelled[id] = spelled
	}
	var spelledByte []byte
	for b := 0; b < 256; b++ {
		spelledByte = appendSpelled(spelledByte[:0], string([]byte{byte(b)}))
		id, ok := spec.vocab[string(spelledByte)]
		if !ok {
			return nil, fmt.Errorf("vocabulary lacks the single-byte token for byte 0x%02X", b)
		}
		bpe.byteIDs[b] = int32(id)
	}

	for rank, pair := range spec.merges {
		left, okLeft := spec.vocab[pair.left]
		right, okRight := spec.vocab[pair.right]
		result, okResult := spec.vocab[pair.left+pair.right]
		if !okLeft || !okRight || !okResult {
			return nil, fmt.Errorf("merge %d (%q %q): token not in vocabulary", rank+1, pair.left, pair.right)
		}
		// A pair listed twice keeps its last rank, as in tokenizers (the
		// merge list is collected into a hash map in order).
		bpe.merges[pairKey(int32(left), int32(right))] = mergeRule{rank: int32(rank), result: int32(result)}
	}

	var rawPatterns, normalizedPatterns []tokenPattern
	for i := range spec.added {
		a := spec.added[i]
		if a.Content == "" {
			return nil, fmt.Errorf("added token %d has empty content", a.ID)
		}
		if a.ID < 0 {
			return nil, fmt.Errorf("added token %q has negative id %d", a.Content, a.ID)
		}
		if _, dup := t.addedByContent[a.Content]; dup {
			return nil, fmt.Errorf("added token %q is listed twice", a.Content)
		}
		tok := &a
		t.added = append(t.added, tok)
		t.addedByContent[a.Content] = tok
		// An added token may reuse a base-vocabulary id; decoding then gives
		// its content, which is the same text.
		t.idSpelled[a.ID] = a.Content
		t.isAdded[a.ID] = true
		if a.Normalized {
			pattern := a.Content
			if t.nfc {
				pattern = nfcLikeTokenizers(pattern)
			}
			normalizedPatterns = append(normalizedPatterns, tokenPattern{text: pattern, token: tok})
		} else {
			rawPatterns = append(rawPatterns, tokenPattern{text: a.Content, token: tok})
		}
	}
	t.rawTokens = newTokenMatcher(rawPatterns)
	t.normalizedTokens = newTokenMatcher(normalizedPatterns)
	return t, nil
}

// VocabSize is the number of token ids (largest id + 1, added tokens
// included): 151669 for Qwen3. Every id Encode returns is below it.
func (t *Tokenizer) VocabSize() int { return len(t.idSpelled) }

// AddedTokens returns the added (special and control) tokens, in file order.
func (t *Tokenizer) AddedTokens() []AddedToken {
	out := make([]AddedToken, len(t.added))
	for i, a := range t.added {
		out[i] = *a
	}
	return out
}

// TokenID returns the id of an added token (by content, e.g. "<|endoftext|>")
// or of a base-vocabulary token (by the text it stands for, e.g. " cat").
func (t *Tokenizer) TokenID(token string) (int64, bool) {
	if a, ok := t.addedByContent[token]; ok {
		return a.ID, true
	}
	if id, ok := t.bpe.vocab[string(appendSpelled(nil, token))]; ok {
		return int64(id), true
	}
	return 0, false
}

// Encode returns the token ids of text, with no template, special tokens,
// padding or truncation added: Hugging Face's
// tokenizer(text, add_special_tokens=True)["input_ids"] for Qwen, whose
// post-processor adds nothing.
func (t *Tokenizer) Encode(text string) []int64 {
	text = sanitizeUTF8(text)
	ids := make([]int64, 0, len(text)/3+4)
	scratch := &bpeScratch{}
	appendToken := func(a *AddedToken) { ids = append(ids, a.ID) }
	appendWord := func(word string) { ids = t.bpe.tokenize(word, ids, scratch) }
	appendPretokenized := func(s string) { splitWords(s, appendWord) }
	t.rawTokens.split(text, func(stretch string) {
		if t.nfc {
			stretch = nfcLikeTokenizers(stretch)
		}
		t.normalizedTokens.split(stretch, appendPretokenized, appendToken)
	}, appendToken)
	return ids
}

// Decode returns the text of ids: the bytes of every token concatenated, with
// added tokens (special ones included) spelled out. A token sequence that cuts
// a character in two decodes that character as U+FFFD. Meant for logs and
// debugging; an id the vocabulary does not have is an error.
func (t *Tokenizer) Decode(ids []int64) (string, error) {
	var buf []byte
	for i, id := range ids {
		if id < 0 || id >= int64(len(t.idSpelled)) || t.idSpelled[id] == "" {
			return "", fmt.Errorf("decode: token %d (position %d) is not in the vocabulary", id, i)
		}
		if t.isAdded[id] {
			buf = append(buf, t.idSpelled[id]...)
		} else {
			buf = t.byteLevel.appendDecoded(buf, t.idSpelled[id])
		}
	}
	return strings.ToValidUTF8(string(buf), "\uFFFD"), nil
}
