package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kleinserve/kleinserve/internal/cns"
)

func TestRunGaussianWritesMatrix(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	args := []string{"-model", dir, "-source", "gaussian", "-sizes", "128x96,96x128", "-seeds", "2",
		"-steps", "8", "-bands", "8", "-guidance", "4"}
	if err := run(context.Background(), args, &out, &errOut); err != nil {
		t.Fatalf("run: %v\n%s", err, errOut.String())
	}
	m, err := cns.LoadGammaFile(filepath.Join(dir, cns.GammaFileName))
	if err != nil {
		t.Fatal(err)
	}
	if m.Rows != 8 || m.Bands != 8 || m.Metadata.Samples != 2 || m.Metadata.Tool != "cnsgamma" ||
		m.Metadata.Model != "toy-gaussian" || !slices.Equal(m.Metadata.Resolutions, []string{"128x96", "96x128"}) {
		t.Errorf("matrix %dx%d metadata %+v", m.Rows, m.Bands, m.Metadata)
	}
	half := halfwaySteps(m)
	if !slices.IsSorted(half) {
		t.Errorf("staircase not monotone: %v", half)
	}
	if !strings.Contains(out.String(), "wrote ") {
		t.Errorf("stdout %q", out.String())
	}
}

func TestRunRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	prompts := filepath.Join(dir, "prompts.txt")
	if err := os.WriteFile(prompts, []byte("# none\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := [][]string{
		{},
		{"-model", filepath.Join(dir, "missing")},
		{"-model", dir, "-sizes", "100x64"},
		{"-model", dir, "-sizes", "64"},
		{"-model", dir, "-steps", "1"},
		{"-model", dir, "-source", "nope"},
		{"-model", dir, "-prompts", prompts},
		{"-model", dir, "-source", "onnx"},
		{"-model", dir, "extra"},
	}
	for _, args := range cases {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), args, &out, &errOut); err == nil {
			t.Errorf("%v: want error", args)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, cns.GammaFileName)); !os.IsNotExist(err) {
		t.Error("a failed run wrote a matrix")
	}
}
