package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// The result files gpu.sh leaves in its results folder; each is optional
// (a step that was skipped or failed leaves none), steps.tsv says why.
const (
	stepsFile     = "steps.tsv"      // step, status (ok, failed, skipped), seconds, note
	envFile       = "env.json"       // what ran: GPU, driver, provider, sizes
	placementFile = "placement.json" // []Placement of the benchmarked graphs
	matmulFile    = "matmul.json"    // {"tflops": measured bf16 matmul rate}
	psnrFile      = "psnr.json"      // ImageDiff of acceleration high vs none
	toleranceFile = "tolerance.json" // ImageDiff of the tiny model on the GPU vs the CPU
	anchorFile    = "anchor.json"    // scripts/bench_diffusers.py --json
	benchPrefix   = "bench-"         // bench-<label>.json: cmd/bench -json
)

// benchReport is the part of cmd/bench's JSON report the check reads.
type benchReport struct {
	Model        string  `json:"model"`
	Provider     string  `json:"provider"`
	Precision    string  `json:"precision"`
	Size         string  `json:"size"`
	Steps        int     `json:"steps"`
	Acceleration string  `json:"acceleration"`
	Runs         int     `json:"runs"`
	PeakTFLOPS   float64 `json:"peak_tflops"`
	EndToEnd     float64 `json:"end_to_end_s"`
	Phases       map[string]struct {
		MedianS     float64 `json:"median_s"`
		TFLOPS      float64 `json:"tflops"`
		ShareOfPeak float64 `json:"share_of_peak"`
	} `json:"phases"`
	PeakMemory map[string]float64 `json:"peak_memory_gib"`
}

// BenchRow is one line of the benchmark table.
type BenchRow struct {
	Label        string  `json:"label"`
	Size         string  `json:"size"`
	Acceleration string  `json:"acceleration"`
	Steps        int     `json:"steps"`
	EndToEndS    float64 `json:"end_to_end_s"`
	StepS        float64 `json:"s_per_step"`
	DenoisingS   float64 `json:"denoising_s"`
	StepTFLOPS   float64 `json:"transformer_tflops"`
	ShareOfPeak  float64 `json:"share_of_peak"`
	ShareOfMeas  float64 `json:"share_of_measured_matmul,omitempty"`
	PeakGPUGiB   float64 `json:"peak_gpu_memory_gib"`
	PeakTFLOPS   float64 `json:"peak_tflops"`
	Precision    string  `json:"precision"`
	Provider     string  `json:"provider"`
	MedianOfRuns int     `json:"runs"`
}

// Step is one line of steps.tsv.
type Step struct {
	Name    string  `json:"name"`
	Status  string  `json:"status"`
	Seconds float64 `json:"seconds"`
	Note    string  `json:"note,omitempty"`
}

// Report is gpu-check.json.
type Report struct {
	Env       map[string]any    `json:"env"`
	Steps     []Step            `json:"steps"`
	Placement []Placement       `json:"placement,omitempty"`
	MatmulTF  float64           `json:"measured_bf16_matmul_tflops,omitempty"`
	Bench     []BenchRow        `json:"bench"`
	PSNR      *ImageDiff        `json:"psnr_high_vs_none,omitempty"`
	Tolerance *ImageDiff        `json:"tiny_gpu_vs_cpu,omitempty"`
	Anchor    map[string]any    `json:"diffusers_anchor,omitempty"`
	Verdicts  map[string]string `json:"verdicts"`
}

// ToleranceMinPSNR is the least PSNR the tiny model's GPU image may have
// against its CPU image: both compute in fp32 (TF32 matrix products on the
// GPU), so they differ by rounding, far less than the 33.8 dB the `high`
// acceleration level costs against `none` on the same model.
const ToleranceMinPSNR = 40

// buildReport reads a results folder.
func buildReport(dir string) (Report, error) {
	r := Report{Env: map[string]any{}, Verdicts: map[string]string{}}
	if err := readJSON(filepath.Join(dir, envFile), &r.Env); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return r, err
	}
	steps, err := readSteps(filepath.Join(dir, stepsFile))
	if err != nil {
		return r, err
	}
	r.Steps = steps
	if err := readJSON(filepath.Join(dir, placementFile), &r.Placement); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return r, err
	}
	var mm struct {
		TFLOPS float64 `json:"tflops"`
	}
	if err := readJSON(filepath.Join(dir, matmulFile), &mm); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return r, err
	}
	r.MatmulTF = mm.TFLOPS
	benches, _ := filepath.Glob(filepath.Join(dir, benchPrefix+"*.json"))
	sortByTime(benches) // the order they ran in
	for _, path := range benches {
		var b benchReport
		if err := readJSON(path, &b); err != nil {
			return r, err
		}
		step := b.Phases["transformer_step"]
		row := BenchRow{Label: strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), benchPrefix), ".json"),
			Size: b.Size, Acceleration: b.Acceleration, Steps: b.Steps, EndToEndS: b.EndToEnd, StepS: step.MedianS,
			DenoisingS: b.Phases["denoising"].MedianS, StepTFLOPS: step.TFLOPS, ShareOfPeak: step.ShareOfPeak,
			PeakGPUGiB: b.PeakMemory["gpu"], PeakTFLOPS: b.PeakTFLOPS, Precision: b.Precision, Provider: b.Provider,
			MedianOfRuns: b.Runs}
		if r.MatmulTF > 0 {
			row.ShareOfMeas = step.TFLOPS / r.MatmulTF
		}
		r.Bench = append(r.Bench, row)
	}
	for _, f := range []struct {
		name string
		dst  **ImageDiff
	}{{psnrFile, &r.PSNR}, {toleranceFile, &r.Tolerance}} {
		var d ImageDiff
		if err := readJSON(filepath.Join(dir, f.name), &d); err == nil {
			*f.dst = &d
		} else if !errors.Is(err, fs.ErrNotExist) {
			return r, err
		}
	}
	if err := readJSON(filepath.Join(dir, anchorFile), &r.Anchor); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return r, err
	}
	r.Verdicts = verdicts(r)
	return r, nil
}

// verdicts are the check's pass/fail lines: what a reader looks at first.
func verdicts(r Report) map[string]string {
	v := map[string]string{}
	if len(r.Placement) > 0 {
		bad := []string{}
		for _, p := range r.Placement {
			for _, n := range p.NotOnCUDA() {
				bad = append(bad, fmt.Sprintf("%s: %s (%s)", filepath.Base(p.Graph), n.Op, n.Name))
			}
		}
		if len(bad) == 0 {
			v["cuda_coverage"] = "pass: every node that computes data runs on CUDA"
		} else {
			v["cuda_coverage"] = "FAIL: not on CUDA: " + strings.Join(bad, "; ")
		}
	}
	if r.Tolerance != nil {
		if r.Tolerance.PSNR >= ToleranceMinPSNR {
			v["tiny_gpu_vs_cpu"] = fmt.Sprintf("pass: %s dB >= %d dB, largest channel difference %d", jsonFloat(r.Tolerance.PSNR), ToleranceMinPSNR, r.Tolerance.MaxDiff)
		} else {
			v["tiny_gpu_vs_cpu"] = fmt.Sprintf("FAIL: %s dB < %d dB, largest channel difference %d", jsonFloat(r.Tolerance.PSNR), ToleranceMinPSNR, r.Tolerance.MaxDiff)
		}
	}
	failed := []string{}
	for _, s := range r.Steps {
		if s.Status != "ok" {
			failed = append(failed, s.Name+" "+s.Status)
		}
	}
	if len(failed) == 0 {
		v["steps"] = fmt.Sprintf("all %d steps ran", len(r.Steps))
	} else {
		v["steps"] = "not all steps ran: " + strings.Join(failed, ", ")
	}
	return v
}

// sortByTime orders files by modification time, then name.
func sortByTime(paths []string) {
	mod := map[string]int64{}
	for _, p := range paths {
		if st, err := os.Stat(p); err == nil {
			mod[p] = st.ModTime().UnixNano()
		}
	}
	sort.SliceStable(paths, func(i, j int) bool {
		if mod[paths[i]] != mod[paths[j]] {
			return mod[paths[i]] < mod[paths[j]]
		}
		return paths[i] < paths[j]
	})
}

func readSteps(path string) ([]Step, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var steps []Step
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		cols := strings.SplitN(sc.Text(), "\t", 4)
		if len(cols) < 3 {
			continue
		}
		secs, _ := strconv.ParseFloat(cols[2], 64)
		s := Step{Name: cols[0], Status: cols[1], Seconds: secs}
		if len(cols) == 4 {
			s.Note = cols[3]
		}
		steps = append(steps, s)
	}
	return steps, sc.Err()
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// writeMarkdown renders the report as the tables docs/gpu-check.md explains.
func writeMarkdown(w io.Writer, r Report) {
	fmt.Fprintf(w, "# kleinserve GPU check\n\n")
	for _, k := range slices.Sorted(maps.Keys(r.Env)) {
		fmt.Fprintf(w, "- %s: %v\n", k, r.Env[k])
	}
	fmt.Fprintf(w, "\n## Verdicts\n\n")
	for _, k := range slices.Sorted(maps.Keys(r.Verdicts)) {
		fmt.Fprintf(w, "- **%s**: %s\n", k, r.Verdicts[k])
	}
	if len(r.Bench) > 0 {
		fmt.Fprintf(w, "\n## cmd/bench\n\n")
		if r.MatmulTF > 0 {
			fmt.Fprintf(w, "Measured bf16 matrix-product rate on this GPU (torch, 8192³): %.0f TFLOP/s.\n\n", r.MatmulTF)
		}
		fmt.Fprintf(w, "| run | size | acceleration | steps | end-to-end s | s/step | denoising s | TFLOP/s | of peak (%.0f) | of measured | peak GPU GiB |\n", r.Bench[0].PeakTFLOPS)
		fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, b := range r.Bench {
			fmt.Fprintf(w, "| %s | %s | %s | %d | %.3f | %.4f | %.3f | %.1f | %.1f%% | %s | %.2f |\n", b.Label, b.Size, b.Acceleration, b.Steps,
				b.EndToEndS, b.StepS, b.DenoisingS, b.StepTFLOPS, 100*b.ShareOfPeak, pct(b.ShareOfMeas), b.PeakGPUGiB)
		}
	}
	if r.PSNR != nil || r.Tolerance != nil {
		fmt.Fprintf(w, "\n## Images\n\n| comparison | PSNR dB | largest channel difference |\n|---|---|---|\n")
		if r.PSNR != nil {
			fmt.Fprintf(w, "| acceleration high vs none (the benchmarked model) | %s | %d |\n", jsonFloat(r.PSNR.PSNR), r.PSNR.MaxDiff)
		}
		if r.Tolerance != nil {
			fmt.Fprintf(w, "| tiny model, GPU vs CPU | %s | %d |\n", jsonFloat(r.Tolerance.PSNR), r.Tolerance.MaxDiff)
		}
	}
	if len(r.Placement) > 0 {
		fmt.Fprintf(w, "\n## Node placement (ONNX Runtime, CUDA provider)\n\n| graph | on CUDA | shape nodes on CPU | not on CUDA |\n|---|---|---|---|\n")
		for _, p := range r.Placement {
			fmt.Fprintf(w, "| %s | %d | %d | %d |\n", filepath.Base(p.Graph), p.CUDA, len(p.CPUPreferred), len(p.NoKernel)+len(p.Other))
			for _, sc := range p.Scopes { // the same nodes, by the graph of the file they are in
				fmt.Fprintf(w, "| %s › %s | %d | %d | %d |\n", filepath.Base(p.Graph), sc.Scope, sc.CUDA, sc.CPUPreferred, sc.NoKernel)
			}
		}
	}
	if len(r.Anchor) > 0 {
		b, _ := json.Marshal(r.Anchor)
		fmt.Fprintf(w, "\n## diffusers anchor\n\n```json\n%s\n```\n", b)
	}
	fmt.Fprintf(w, "\n## Steps\n\n| step | status | seconds | note |\n|---|---|---|---|\n")
	for _, s := range r.Steps {
		fmt.Fprintf(w, "| %s | %s | %.1f | %s |\n", s.Name, s.Status, s.Seconds, s.Note)
	}
}

func pct(x float64) string {
	if x == 0 || math.IsNaN(x) {
		return "–"
	}
	return fmt.Sprintf("%.1f%%", 100*x)
}

func reportCmd(args []string, out io.Writer) (int, error) {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	results := fs.String("results", "", "results folder gpu.sh wrote")
	dst := fs.String("out", "", "folder for gpu-check.json and gpu-check.md")
	if err := fs.Parse(args); err != nil {
		return 2, err
	}
	if *results == "" || *dst == "" {
		return 2, fmt.Errorf("report: -results and -out are required")
	}
	r, err := buildReport(*results)
	if err != nil {
		return 1, err
	}
	b, _ := json.MarshalIndent(r, "", " ")
	if err := os.WriteFile(filepath.Join(*dst, "gpu-check.json"), append(b, '\n'), 0o644); err != nil {
		return 1, err
	}
	f, err := os.Create(filepath.Join(*dst, "gpu-check.md"))
	if err != nil {
		return 1, err
	}
	writeMarkdown(io.MultiWriter(f, out), r)
	return 0, f.Close()
}
