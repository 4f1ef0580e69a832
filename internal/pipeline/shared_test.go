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
		"none":                          {nil, ""},
		"a file and a folder":           {map[string]string{"text_encoder.onnx": "tiny", "tokenizer": "tiny"}, ""},
		"graph with its data":           {map[string]string{"transformer.onnx": "x", "transformer.onnx.data": "x"}, ""},
		"one file of a folder":          {map[string]string{"tokenizer/vocab.json": "tiny"}, ""},
		"absolute":                      {map[string]string{"tokenizer": "/models/tiny"}, `shared "tokenizer": "/models/tiny" is not the name of a sibling directory`},
		"relative path":                 {map[string]string{"tokenizer": "../tiny"}, `"../tiny" is not the name of a sibling directory`},
		"path below a sibling":          {map[string]string{"tokenizer": "tiny/tokenizer"}, "is not the name of a sibling directory"},
		"backslash":                     {map[string]string{"tokenizer": `..\tiny`}, "is not the name of a sibling directory"},
		"parent":                        {map[string]string{"tokenizer": ".."}, "is not the name of a sibling directory"},
		"itself":                        {map[string]string{"tokenizer": "."}, "is not the name of a sibling directory"},
		"empty":                         {map[string]string{"tokenizer": ""}, "is not the name of a sibling directory"},
		"key outside":                   {map[string]string{"../tokenizer": "tiny"}, `shared "../tokenizer": the key must be`},
		"unclean key":                   {map[string]string{"./tokenizer": "tiny"}, `shared "./tokenizer": the key must be`},
		"key of nothing":                {map[string]string{"vae_decoder.onnx": "tiny"}, `shared "vae_decoder.onnx": no file of files`},
		"key inside shared key":         {map[string]string{"tokenizer": "a", "tokenizer/vocab.json": "b"}, `inside shared folder "tokenizer"`},
		"graph without its data":        {map[string]string{"transformer.onnx": "x"}, "graph transformer: transformer.onnx and its external data transformer.onnx.data must come from the same directory"},
		"data without its graph":        {map[string]string{"transformer.onnx.data": "x"}, "share both or neither"},
		"data elsewhere than its graph": {map[string]string{"transformer.onnx": "x", "transformer.onnx.data": "y"}, "share both or neither"},
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
	m := sharedTestManifest(map[string]string{"tokenizer": "tiny", "text_encoder.onnx": "tiny-9b-base"})
	for _, dir := range []string{filepath.Join("models", "tiny-9b-distilled"), "."} {
		up := filepath.Dir(filepath.Clean(filepath.Join(dir, "x"))) // dir, cleaned
		for name, want := range map[string]string{
			"tokenizer":             filepath.Join(up, "..", "tiny", "tokenizer"),
			"tokenizer/vocab.json":  filepath.Join(up, "..", "tiny", "tokenizer", "vocab.json"),
			"text_encoder.onnx":     filepath.Join(up, "..", "tiny-9b-base", "text_encoder.onnx"),
			"transformer.onnx":      filepath.Join(dir, "transformer.onnx"),
			"tokenizer2/vocab.json": filepath.Join(dir, "tokenizer2", "vocab.json"), // not below "tokenizer/"
			"model.json":            filepath.Join(dir, "model.json"),
		} {
			if got := m.Path(dir, name); got != want {
				t.Errorf("Path(%q, %q) = %q, want %q", dir, name, got, want)
			}
		}
	}
	// From inside the model directory, a sibling is one level up.
	if got, want := m.Path(".", "tokenizer/vocab.json"), filepath.Join("..", "tiny", "tokenizer", "vocab.json"); got != want {
		t.Errorf("Path(., tokenizer/vocab.json) = %q, want %q", got, want)
	}
}

// LoadManifest refuses, naming the file and the sibling, a manifest whose
// shared files are missing there or of another size than files pins.
func TestLoadManifestChecksSharedFiles(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(tinyModelDir, ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	vae, err := os.ReadFile(filepath.Join(tinyModelDir, "vae_decoder.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	write := func(rel string, b []byte) {
		t.Helper()
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("good/vae_decoder.onnx", vae)
	write("stale/vae_decoder.onnx", []byte("short"))
	write("flat/tokenizer", []byte("a file, not the folder"))
	dir := filepath.Join(root, "variant")
	for name, tc := range map[string]struct {
		shared map[string]string
		want   string // "" when it loads
	}{
		"sibling there": {map[string]string{"vae_decoder.onnx": "good"}, ""},
		"missing": {map[string]string{"vae_decoder.onnx": "nowhere"},
			`shared "vae_decoder.onnx" from "nowhere": stat ` + filepath.Join(root, "nowhere", "vae_decoder.onnx") + ": no such file"},
		"stale": {map[string]string{"vae_decoder.onnx": "stale"},
			`shared "vae_decoder.onnx" from "stale": ` + filepath.Join(root, "stale", "vae_decoder.onnx") + " has 5 bytes, files says"},
		"a file where the folder is": {map[string]string{"tokenizer": "flat"}, `shared "tokenizer/merges.txt" from "flat"`},
		"a path":                     {map[string]string{"vae_decoder.onnx": "../good"}, "is not the name of a sibling directory"},
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
			write("variant/"+ManifestFile, b)
			man, err := LoadManifest(dir)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("want it to load, got %v", err)
				}
				if got, want := filepath.Clean(man.Path(dir, "vae_decoder.onnx")), filepath.Join(root, "good", "vae_decoder.onnx"); got != want {
					t.Fatalf("vae_decoder.onnx at %s, want %s", got, want)
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
			if _, shared := m.sharedKey(name); shared {
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
// index says, relative to the index's folder (a variant's names files of
// the 4B Base directory with a leading ".."), with the bytes its shape
// needs.
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
