package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// File names inside a tokenizer folder (Hugging Face conventions).
const (
	TokenizerJSONFile   = "tokenizer.json"
	VocabFile           = "vocab.json"
	MergesFile          = "merges.txt"
	TokenizerConfigFile = "tokenizer_config.json"
)

// Load reads a Qwen2/Qwen3 tokenizer folder: tokenizer.json when present
// (the tokenizers serialization), otherwise vocab.json + merges.txt with the
// added tokens of tokenizer_config.json (the layout transformers' slow
// Qwen2Tokenizer files use; the pipeline is then the fixed Qwen2 one, as
// transformers builds it). Configurations this package does not implement
// exactly (another pre-tokenizer, a post-processor that adds tokens, BPE
// dropout, …) are rejected rather than approximated.
func Load(dir string) (*Tokenizer, error) {
	spec, err := readSpec(dir)
	if err != nil {
		return nil, fmt.Errorf("load tokenizer from %s: %w", dir, err)
	}
	tok, err := newTokenizer(spec)
	if err != nil {
		return nil, fmt.Errorf("load tokenizer from %s: %w", dir, err)
	}
	return tok, nil
}

func readSpec(dir string) (tokenizerSpec, error) {
	config, err := readTokenizerConfig(filepath.Join(dir, TokenizerConfigFile))
	if err != nil {
		return tokenizerSpec{}, err
	}
	data, err := os.ReadFile(filepath.Join(dir, TokenizerJSONFile))
	switch {
	case err == nil:
		return parseTokenizerJSON(data)
	case errors.Is(err, fs.ErrNotExist):
		if config == nil {
			return tokenizerSpec{}, fmt.Errorf("neither %s nor %s found", TokenizerJSONFile, TokenizerConfigFile)
		}
		return readVocabMerges(dir, config)
	default:
		return tokenizerSpec{}, err
	}
}

// tokenizerConfig holds the fields of tokenizer_config.json this package
// reads.
type tokenizerConfig struct {
	TokenizerClass     string                     `json:"tokenizer_class"`
	AddBOSToken        bool                       `json:"add_bos_token"`
	AddEOSToken        bool                       `json:"add_eos_token"`
	AddPrefixSpace     bool                       `json:"add_prefix_space"`
	SplitSpecialTokens bool                       `json:"split_special_tokens"`
	AddedTokensDecoder map[string]addedTokenEntry `json:"added_tokens_decoder"`
	TruncationSide     string                     `json:"truncation_side"`
	PaddingSide        string                     `json:"padding_side"`
}

// addedTokenEntry is one added token as tokenizer.json and
// tokenizer_config.json spell it.
type addedTokenEntry struct {
	ID         *int64 `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	// Normalized defaults to true in tokenizers (AddedToken::default).
	Normalized *bool `json:"normalized"`
	Special    bool  `json:"special"`
}

func (e addedTokenEntry) token(id int64) AddedToken {
	normalized := true
	if e.Normalized != nil {
		normalized = *e.Normalized
	}
	return AddedToken{ID: id, Content: e.Content, Special: e.Special, Normalized: normalized,
		LStrip: e.LStrip, RStrip: e.RStrip, SingleWord: e.SingleWord}
}

// readTokenizerConfig reads tokenizer_config.json if it exists (nil if not)
// and rejects options that would change the encoding in ways not implemented.
func readTokenizerConfig(path string) (*tokenizerConfig, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var cfg tokenizerConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	switch {
	case cfg.AddBOSToken || cfg.AddEOSToken:
		return nil, fmt.Errorf("%s: add_bos_token/add_eos_token are not supported", path)
	case cfg.AddPrefixSpace:
		return nil, fmt.Errorf("%s: add_prefix_space is not supported", path)
	case cfg.SplitSpecialTokens:
		return nil, fmt.Errorf("%s: split_special_tokens is not supported", path)
	case cfg.TruncationSide != "" && cfg.TruncationSide != "right":
		return nil, fmt.Errorf("%s: truncation_side %q is not supported", path, cfg.TruncationSide)
	case cfg.PaddingSide != "" && cfg.PaddingSide != "right":
		return nil, fmt.Errorf("%s: padding_side %q is not supported", path, cfg.PaddingSide)
	}
	return &cfg, nil
}

// tokenizerJSON is the part of the tokenizers serialization this package
// reads.
type tokenizerJSON struct {
	AddedTokens   []addedTokenEntry `json:"added_tokens"`
	Normalizer    json.RawMessage   `json:"normalizer"`
	PreTokenizer  json.RawMessage   `json:"pre_tokenizer"`
	PostProcessor json.RawMessage   `json:"post_processor"`
	Model         struct {
		Type                    string          `json:"type"`
		Dropout                 *float64        `json:"dropout"`
		ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
		EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
		ByteFallback            bool            `json:"byte_fallback"`
		IgnoreMerges            bool            `json:"ignore_merges"`
		Vocab                   map[string]int  `json:"vocab"`
		Merges                  json.RawMessage `json:"merges"`
	} `json:"model"`
}

// componentJSON is a normalizer / pre-tokenizer / post-processor node.
type componentJSON struct {
	Type           string          `json:"type"`
	Normalizers    []componentJSON `json:"normalizers"`
	Pretokenizers  []componentJSON `json:"pretokenizers"`
	Pattern        *patternJSON    `json:"pattern"`
	Behavior       string          `json:"behavior"`
	Invert         bool            `json:"invert"`
	AddPrefixSpace bool            `json:"add_prefix_space"`
	UseRegex       bool            `json:"use_regex"`
}

type patternJSON struct {
	Regex  *string `json:"Regex"`
	String *string `json:"String"`
}

func isJSONNull(raw json.RawMessage) bool {
	return len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null"
}

func parseTokenizerJSON(data []byte) (tokenizerSpec, error) {
	var doc tokenizerJSON
	// encoding/json fills a non-nil map in place; sizing it from the file
	// (about 75 bytes per vocab entry with the merges) avoids rehashing.
	doc.Model.Vocab = make(map[string]int, len(data)/75)
	if err := json.Unmarshal(data, &doc); err != nil {
		return tokenizerSpec{}, fmt.Errorf("parse %s: %w", TokenizerJSONFile, err)
	}
	var spec tokenizerSpec
	var err error
	if spec.nfc, err = parseNormalizer(doc.Normalizer); err != nil {
		return spec, err
	}
	if err := checkPreTokenizer(doc.PreTokenizer); err != nil {
		return spec, err
	}
	if err := checkPostProcessor(doc.PostProcessor); err != nil {
		return spec, err
	}
	m := doc.Model
	switch {
	case m.Type != "BPE":
		return spec, fmt.Errorf("model type %q is not supported (want BPE)", m.Type)
	case m.Dropout != nil && *m.Dropout != 0:
		return spec, fmt.Errorf("BPE dropout is not supported")
	case m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "",
		m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "":
		return spec, fmt.Errorf("BPE continuing_subword_prefix/end_of_word_suffix are not supported")
	case m.ByteFallback:
		return spec, fmt.Errorf("BPE byte_fallback is not supported")
	case len(m.Vocab) == 0:
		return spec, fmt.Errorf("%s has no model.vocab", TokenizerJSONFile)
	}
	spec.vocab = m.Vocab
	spec.ignoreMerges = m.IgnoreMerges
	if spec.merges, err = parseMergesJSON(m.Merges); err != nil {
		return spec, err
	}
	for _, e := range doc.AddedTokens {
		if e.ID == nil {
			return spec, fmt.Errorf("added token %q has no id", e.Content)
		}
		spec.added = append(spec.added, e.token(*e.ID))
	}
	return spec, nil
}

// parseNormalizer accepts no normalizer or NFC (alone or in a Sequence).
func parseNormalizer(raw json.RawMessage) (nfc bool, err error) {
	if isJSONNull(raw) {
		return false, nil
	}
	var c componentJSON
	if err := json.Unmarshal(raw, &c); err != nil {
		return false, fmt.Errorf("parse normalizer: %w", err)
	}
	switch {
	case c.Type == "NFC":
		return true, nil
	case c.Type == "Sequence" && len(c.Normalizers) == 0:
		return false, nil
	case c.Type == "Sequence" && len(c.Normalizers) == 1 && c.Normalizers[0].Type == "NFC":
		return true, nil
	}
	return false, fmt.Errorf("normalizer %s is not supported (want NFC)", raw)
}

// checkPreTokenizer accepts exactly the Qwen2 pre-tokenizer: Split on the
// Qwen2 regex (isolated) followed by ByteLevel without its own regex.
func checkPreTokenizer(raw json.RawMessage) error {
	var c componentJSON
	if err := json.Unmarshal(raw, &c); err != nil || isJSONNull(raw) {
		return fmt.Errorf("pre_tokenizer missing or unreadable (want the Qwen2 Split + ByteLevel)")
	}
	ok := c.Type == "Sequence" && len(c.Pretokenizers) == 2
	if ok {
		split, byteLevel := c.Pretokenizers[0], c.Pretokenizers[1]
		ok = split.Type == "Split" && split.Pattern != nil && split.Pattern.Regex != nil &&
			*split.Pattern.Regex == qwen2SplitPattern && strings.EqualFold(split.Behavior, "Isolated") && !split.Invert &&
			byteLevel.Type == "ByteLevel" && !byteLevel.AddPrefixSpace && !byteLevel.UseRegex
	}
	if !ok {
		return fmt.Errorf("pre_tokenizer %s is not supported (want the Qwen2 Split + ByteLevel)", raw)
	}
	return nil
}

// checkPostProcessor accepts post-processors that add no tokens.
func checkPostProcessor(raw json.RawMessage) error {
	if isJSONNull(raw) {
		return nil
	}
	var c componentJSON
	if err := json.Unmarshal(raw, &c); err != nil {
		return fmt.Errorf("parse post_processor: %w", err)
	}
	if c.Type != "ByteLevel" {
		return fmt.Errorf("post_processor %q is not supported (it may add tokens)", c.Type)
	}
	return nil
}

// parseMergesJSON reads model.merges in either tokenizers format: a list of
// "left right" strings (older) or a list of [left, right] pairs (newer).
func parseMergesJSON(raw json.RawMessage) ([]mergeSpelledPair, error) {
	if isJSONNull(raw) {
		return nil, nil
	}
	var pairs [][2]string
	if err := json.Unmarshal(raw, &pairs); err == nil {
		out := make([]mergeSpelledPair, len(pairs))
		for i, p := range pairs {
			out[i] = mergeSpelledPair{left: p[0], right: p[1]}
		}
		return out, nil
	}
	var lines []string
	if err := json.Unmarshal(raw, &lines); err != nil {
		return nil, fmt.Errorf("parse model.merges: want [[a, b], …] or [\"a b\", …]: %w", err)
	}
	out := make([]mergeSpelledPair, len(lines))
	for i, line := range lines {
		p, err := parseMergeLine(line, i+1)
		if err != nil {
			return nil, err
		}
		out[i] = p
	}
	return out, nil
}

// parseMergeLine splits "left right"; like tokenizers, exactly one space.
func parseMergeLine(line string, number int) (mergeSpelledPair, error) {
	parts := strings.Split(line, " ")
	if len(parts) != 2 {
		return mergeSpelledPair{}, fmt.Errorf("merge %d (%q): want two tokens separated by one space", number, line)
	}
	return mergeSpelledPair{left: parts[0], right: parts[1]}, nil
}

// readVocabMerges reads the vocab.json + merges.txt layout.
func readVocabMerges(dir string, config *tokenizerConfig) (tokenizerSpec, error) {
	switch config.TokenizerClass {
	case "", "Qwen2Tokenizer", "Qwen2TokenizerFast":
	default:
		return tokenizerSpec{}, fmt.Errorf("%s: tokenizer_class %q is not supported without %s",
			TokenizerConfigFile, config.TokenizerClass, TokenizerJSONFile)
	}
	spec := tokenizerSpec{nfc: true}
	vocabData, err := os.ReadFile(filepath.Join(dir, VocabFile))
	if err != nil {
		return spec, err
	}
	spec.vocab = make(map[string]int, len(vocabData)/20) // about 20 bytes per entry
	if err := json.Unmarshal(vocabData, &spec.vocab); err != nil {
		return spec, fmt.Errorf("parse %s: %w", VocabFile, err)
	}
	mergesData, err := os.ReadFile(filepath.Join(dir, MergesFile))
	if err != nil {
		return spec, err
	}
	lines := strings.Split(strings.ReplaceAll(string(mergesData), "\r\n", "\n"), "\n")
	if n := len(lines); n > 0 && lines[n-1] == "" {
		lines = lines[:n-1] // the final newline ends the last line
	}
	spec.merges = make([]mergeSpelledPair, 0, len(lines))
	for _, line := range lines {
		if strings.HasPrefix(line, "#version") {
			continue
		}
		p, err := parseMergeLine(line, len(spec.merges)+1)
		if err != nil {
			return spec, fmt.Errorf("%s: %w", MergesFile, err)
		}
		spec.merges = append(spec.merges, p)
	}

	ids := make([]string, 0, len(config.AddedTokensDecoder))
	for key := range config.AddedTokensDecoder {
		ids = append(ids, key)
	}
	sort.Slice(ids, func(i, j int) bool { return len(ids[i]) < len(ids[j]) || len(ids[i]) == len(ids[j]) && ids[i] < ids[j] })
	for _, key := range ids {
		id, err := strconv.ParseInt(key, 10, 64)
		if err != nil {
			return spec, fmt.Errorf("%s: added_tokens_decoder key %q is not an id", TokenizerConfigFile, key)
		}
		spec.added = append(spec.added, config.AddedTokensDecoder[key].token(id))
	}
	return spec, nil
}
