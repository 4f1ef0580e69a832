package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kleinserve/kleinserve/internal/engine"
)

// committedTinyDirs are the committed tiny models, 4B Base first: the
// variants take the files they have in common with it (or with their
// size's Base) from there (model.json shared; docs/variants.md).
var committedTinyDirs = []string{tinyModelDir, "../../models/tiny-4b-distilled", "../../models/tiny-9b-base", "../../models/tiny-9b-distilled"}

// referenceVariantDirs are the variants' reference directories under
// referenceDir; their indexes name some of the 4B Base directory's files.
var referenceVariantDirs = []string{"4b-distilled", "9b-base", "9b-distilled"}

func sharedTestManifest(shared map[string]string) *Manifest {
	return &Manifest{
		Graphs: map[string]Graph{
			GraphTextEncoder: {File: "text_encoder.onnx"},
			GraphTransformer: {File: "transformer.onnx", ExternalData: "transformer.onnx.data"},
		},
		Files: map[string]FileID{
			"text_encoder.onnx": {Bytes: 3}, "transformer.onnx": {Bytes: 4}, "transformer.onnx.data": {Bytes: 5},
			"tokenizer/vocab.json": {Bytes: 6}, "tokenizer/merges.txt": {Bytes: 7},
		},
		Shared: shared,
	}
}

func TestManifestSharedSyntax(t *testing.T) {
	for name, tc := range map[string]struct {
		shared map[string]string
		want   string // "" when valid
	}{
		"none":                  {nil, ""},
		"a file and a folder":   {map[string]string{"text_encoder.onnx": "../tiny/text_encoder.onnx", "tokenizer": "../tiny/tokenizer"}, ""},
		"graph with its data":   {map[string]string{"transformer.onnx": "../x/transformer.onnx", "transformer.onnx.data": "../x/transformer.onnx.data"}, ""},
		"one file of a folder":  {map[string]string{"tokenizer/vocab.json": "../tiny/tokenizer/vocab.json"}, ""},
		"absolute":              {map[string]string{"tokenizer": "/models/tiny/tokenizer"}, `shared "tokenizer": path "/models/tiny/tokenizer" is absolute`},
		"empty path":            {map[string]string{"tokenizer": ""}, `shared "tokenizer": empty path`},
		"backslashes":           {map[string]string{"tokenizer": `..\tiny\tokenizer`}, "clean slash-separated path"},
		"unclean path":          {map[string]string{"tokenizer": "../tiny/./tokenizer"}, "clean slash-separated path"},
		"key outside":           {map[string]string{"../tokenizer": "../tiny/tokenizer"}, `shared "../tokenizer": the key must be`},
		"key of nothing":        {map[string]string{"vae_decoder.onnx": "../tiny/vae_decoder.onnx"}, `shared "vae_decoder.onnx": no file of files`},
		"key inside shared key": {map[string]string{"tokenizer": "../a/tokenizer", "tokenizer/vocab.json": "../b/vocab.json"}, `inside shared folder "tokenizer"`},
		"graph without its data": {map[string]string{"transformer.onnx": "../x/transformer.onnx"},
			"graph transformer: external data transformer.onnx.data is at transformer.onnx.data, not beside"},
		"data elsewhere than its graph": {map[string]string{"transformer.onnx": "../x/transformer.onnx", "transformer.onnx.data": "../y/transformer.onnx.data"},
			"share both or neither"},
	} {
		t.Run(name, func(t *testing.T) {
			err := errors.Join(sharedTestManifest(tc.shared).checkSharedSyntax()...)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("want no error, got %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("want an error containing %q, got %v", tc.want, err)
			}
		})
	}
}

func TestManifestPath(t *testing.T) {
	m := sharedTestManifest(map[string]string{"tokenizer": "../tiny/tokenizer", "text_encoder.onnx": "../tiny-9b-base/text_encoder.onnx"})
	dir := filepath.Join("models", "tiny-9b-distilled")
	for name, want := range map[string]string{
		"tokenizer":             filepath.Join("models", "tiny", "tokenizer"),
		"tokenizer/vocab.json":  filepath.Join("models", "tiny", "tokenizer", "vocab.json"),
		"text_encoder.onnx":     filepath.Join("models", "tiny-9b-base", "text_encoder.onnx"),
		"transformer.onnx":      filepath.Join(dir, "transformer.onnx"),
		"tokenizer2/vocab.json": filepath.Join(dir, "tokenizer2", "vocab.json"), // not under "tokenizer/"
		"model.json":            filepath.Join(dir, "model.json"),
	} {
		if got := m.Path(dir, name); got != want {
			t.Errorf("Path(%q) = %q, want %q", name, got, want)
		}
	}
}

// LoadManifest refuses, naming the key and the path, a manifest whose
// shared paths are absolute, missing or of another size than files pins.
func TestLoadManifestChecksSharedPaths(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(tinyModelDir, ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	repoTiny, err := filepath.Abs(tinyModelDir)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	stale := filepath.Join(root, "stale")
	if err := os.MkdirAll(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale, "vae_decoder.onnx"), []byte("short"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "variant")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rel := func(p string) string {
		r, err := filepath.Rel(dir, p)
		if err != nil {
			t.Fatal(err)
		}
		return filepath.ToSlash(r)
	}
	for name, tc := range map[string]struct {
		shared map[string]string
		want   string // "" when it loads
	}{
		"siblings there": {map[string]string{"tokenizer": rel(filepath.Join(repoTiny, "tokenizer")),
			"vae_decoder.onnx": rel(filepath.Join(repoTiny, "vae_decoder.onnx"))}, ""},
		"missing":  {map[string]string{"tokenizer": "../nowhere/tokenizer"}, `shared "tokenizer" ("../nowhere/tokenizer"): stat ` + filepath.Join(root, "nowhere", "tokenizer") + ": no such file"},
		"stale":    {map[string]string{"vae_decoder.onnx": "../stale/vae_decoder.onnx"}, `shared "vae_decoder.onnx": ` + filepath.Join(stale, "vae_decoder.onnx") + " has 5 bytes, files says"},
		"absolute": {map[string]string{"tokenizer": filepath.ToSlash(filepath.Join(repoTiny, "tokenizer"))}, "is absolute"},
		"a file where a folder is": {map[string]string{"tokenizer": rel(filepath.Join(repoTiny, "tokenizer", "vocab.json"))},
			`shared "tokenizer/merges.txt"`},
	} {
		t.Run(name, func(t *testing.T) {
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatal(err)
			}
			m["shared"] = tc.shared
			b, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, ManifestFile), b, 0o644); err != nil {
				t.Fatal(err)
			}
			man, err := LoadManifest(dir)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("want it to load, got %v", err)
				}
				if got, want := man.Path(dir, "tokenizer/vocab.json"), filepath.Join(repoTiny, "tokenizer", "vocab.json"); got != want {
					t.Fatalf("tokenizer/vocab.json at %s, want %s", got, want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error containing %q, got %v", tc.want, err)
			}
		})
	}
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Every committed tiny model resolves every file its manifest pins to the
// pinned bytes, and no file's bytes are held twice among them: what the
// variants have in common with a sibling they take from it.
func TestCommittedTinyModelsShareInsteadOfCopying(t *testing.T) {
	holder := map[string]string{} // sha256 → the one file holding those bytes
	for _, dir := range committedTinyDirs {
		m, err := LoadManifest(dir)
		if err != nil {
			t.Fatal(err)
		}
		if dir != tinyModelDir && len(m.Shared) == 0 {
			t.Errorf("%s shares nothing", dir)
		}
		for name, id := range m.Files {
			p := m.Path(dir, name)
			sum := sha256File(t, p)
			if sum != id.SHA256 {
				t.Errorf("%s: %s has sha256 %s, files says %s", dir, p, sum, id.SHA256)
			}
			if _, _, shared := m.sharedKey(name); shared {
				continue
			}
			if other, ok := holder[sum]; ok {
				t.Errorf("%s holds the bytes of %s: share them (model.json shared)", p, other)
			}
			holder[sum] = p
		}
	}
}

// Open loads every committed tiny model, its shared graphs and tokenizer
// included, and one step of a generation runs on it.
func TestOpenCommittedTinyModels(t *testing.T) {
	for _, dir := range committedTinyDirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			e := openTinyWith(t, func(c *Config) { c.ModelDir = dir })
			res, err := e.Generate(context.Background(), engine.Request{Prompt: "a red fox", Steps: 1, Width: 64, Height: 64,
				NumImages: 1, Seed: 1, GuidanceScale: 1, EnableSafetyChecker: true}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Images) != 1 || len(res.Images[0].Data) == 0 {
				t.Fatalf("images: %+v", res.Images)
			}
		})
	}
}

// Every array of the 4B Base and variant reference indexes is where its
// index says, relative to the index's folder ("../NAME.bin" in a variant's
// for a file of the 4B Base directory), with the bytes its shape needs.
func TestReferenceArraysResolve(t *testing.T) {
	size := map[string]int{"float32": 4, "int64": 8, "uint8": 1, "bool": 1}
	for _, sub := range append([]string{"."}, referenceVariantDirs...) {
		idx := loadRefIndexFrom(t, sub)
		arrays := map[string]refArray{}
		for _, c := range idx.Cases {
			for name, a := range c.Arrays {
				arrays[c.Name+"."+name] = a
			}
		}
		for name, a := range idx.ClipPreprocess {
			arrays["clip_preprocess."+name] = a
		}
		if len(idx.Cases) == 0 || len(idx.ClipPreprocess) != 2 {
			t.Fatalf("%s: %d cases, %d clip_preprocess arrays", sub, len(idx.Cases), len(idx.ClipPreprocess))
		}
		for name, a := range arrays {
			n := size[a.DType]
			for _, d := range a.Shape {
				n *= d
			}
			if got := len(readRaw(t, a, a.DType)); n == 0 || got != n {
				t.Errorf("%s %s (%s): %d bytes, %s %v needs %d", sub, name, a.File, got, a.DType, a.Shape, n)
			}
		}
	}
}
