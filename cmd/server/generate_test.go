package main

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGenerateCommand runs `server generate` on the tiny model and checks
// the file it writes.
func TestGenerateCommand(t *testing.T) {
	lib := "../../.ort/lib/libonnxruntime.so"
	if _, err := os.Stat(lib); err != nil {
		t.Skip("ONNX Runtime not installed (scripts/install_ort.sh)")
	}
	out := filepath.Join(t.TempDir(), "cat.png")
	var stdout, stderr bytes.Buffer
	err := generate(context.Background(), []string{"-prompt", "a cat on a skateboard", "-out", out,
		"-width", "96", "-height", "64", "-steps", "3", "-seed", "7", "-models", "../../models/tiny", "-ort-lib", lib},
		&stdout, &stderr)
	if err != nil {
		t.Fatalf("generate: %v\n%s", err, stderr.String())
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 96 || b.Dy() != 64 {
		t.Fatalf("image %v", b)
	}
	if !strings.Contains(stdout.String(), "seed 7;") {
		t.Fatalf("stdout: %s", stdout.String())
	}
	if err := generate(context.Background(), []string{"-out", out}, &stdout, &stderr); err == nil {
		t.Fatal("missing -prompt accepted")
	}
}
