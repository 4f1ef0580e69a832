package main

import (
	"bytes"
	"context"
	"image"
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

// TestGenerateEditCommand edits a reference image file from the command
// line; without a size the output takes the reference's.
func TestGenerateEditCommand(t *testing.T) {
	lib := "../../.ort/lib/libonnxruntime.so"
	if _, err := os.Stat(lib); err != nil {
		t.Skip("ONNX Runtime not installed (scripts/install_ort.sh)")
	}
	dir := t.TempDir()
	ref := image.NewRGBA(image.Rect(0, 0, 112, 80))
	for i := range ref.Pix {
		ref.Pix[i] = uint8(i)
	}
	f, err := os.Create(filepath.Join(dir, "ref.png"))
	if err != nil {
		t.Fatal(err)
	}
	png.Encode(f, ref)
	f.Close()
	out := filepath.Join(dir, "edit.png")
	var stdout, stderr bytes.Buffer
	err = generate(context.Background(), []string{"-prompt", "make it blue", "-image", filepath.Join(dir, "ref.png"),
		"-out", out, "-steps", "2", "-seed", "3", "-models", "../../models/tiny", "-ort-lib", lib}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("generate: %v\n%s", err, stderr.String())
	}
	rf, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	img, err := png.Decode(rf)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 112 || b.Dy() != 80 {
		t.Fatalf("image %v, want the reference's 112x80", b)
	}
	tiny := filepath.Join(dir, "tiny.png")
	small, _ := os.Create(tiny)
	png.Encode(small, image.NewRGBA(image.Rect(0, 0, 32, 32)))
	small.Close()
	err = generate(context.Background(), []string{"-prompt", "x", "-image", tiny, "-out", out, "-models", "../../models/tiny",
		"-ort-lib", lib}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "image_urls.0") {
		t.Fatalf("32x32 reference: %v", err)
	}
}

// TestGenerateDistilledCommand runs a distilled model from the command
// line: its endpoint's default of 4 steps applies, and a guidance flag,
// which a distilled endpoint does not take, is refused.
func TestGenerateDistilledCommand(t *testing.T) {
	lib := "../../.ort/lib/libonnxruntime.so"
	if _, err := os.Stat(lib); err != nil {
		t.Skip("ONNX Runtime not installed (scripts/install_ort.sh)")
	}
	out := filepath.Join(t.TempDir(), "fox.png")
	var stdout, stderr bytes.Buffer
	err := generate(context.Background(), []string{"-prompt", "a fox", "-out", out, "-width", "64", "-height", "64",
		"-seed", "1", "-models", "../../models/tiny-4b-distilled", "-ort-lib", lib}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("generate: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "step 4/4") || strings.Contains(stderr.String(), "step 5/") {
		t.Fatalf("want the distilled endpoint's 4 steps; stderr: %q", stderr.String())
	}
	if !strings.Contains(stderr.String(), "fal-ai/flux-2/klein/4b\n") {
		t.Fatalf("endpoint not named; stderr: %q", stderr.String())
	}
	err = generate(context.Background(), []string{"-prompt", "a fox", "-out", out, "-guidance", "3",
		"-models", "../../models/tiny-4b-distilled", "-ort-lib", lib}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "does not take guidance_scale") {
		t.Fatalf("-guidance on a distilled model: %v", err)
	}
}
