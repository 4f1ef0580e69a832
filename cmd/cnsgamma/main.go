// Command cnsgamma measures a model-specific Colored Noise Sampling γ
// matrix (docs/cns.md §9) and writes it as cns_gamma.json into a model
// directory, where the server's "matrix" gamma source picks it up.
//
// It runs the deterministic sampler for prompts × seeds at several
// resolutions and records, per step and radial frequency band, how far the
// model's clean estimate has converged to the final latent
// (cns.GammaAccumulator). Velocities come from a velocity source:
//
//	gaussian  the analytic Gaussian toy model (no weights; a self-check of
//	          the tool: low bands must resolve before high bands)
//	onnx      the model in -model, through the ONNX Runtime pipeline
//	          (-provider, -ort-lib); the real measurement
//
// Usage:
//
//	cnsgamma -model DIR [-source gaussian] [-prompts FILE] [-seeds 8]
//	         [-sizes 1024x1024,1152x896,896x1152] [-steps 50] [-guidance 4]
//	         [-bands 32] [-out DIR/cns_gamma.json]
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/kleinserve/kleinserve/internal/cns"
	"github.com/kleinserve/kleinserve/internal/pipeline"
	"github.com/kleinserve/kleinserve/internal/sampler"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "cnsgamma:", err)
		os.Exit(1)
	}
}

// velocitySource supplies the CFG-combined velocity function of one prompt
// on a packed h×w latent grid.
type velocitySource interface {
	Velocity(ctx context.Context, prompt string, guidance float64, h, w int) (cns.VelocityFunc, error)
	Model() string // recorded in the matrix metadata
	Close() error
}

// openSource opens the named velocity source; model-backed sources load
// their weights from modelDir.
func openSource(ctx context.Context, o options) (velocitySource, error) {
	switch o.source {
	case "gaussian":
		return &gaussianSource{bands: o.bands}, nil
	case "onnx":
		e, err := pipeline.Open(ctx, pipeline.Config{ModelDir: o.modelDir, LibraryPath: o.ortLib,
			Provider: o.provider, Logger: zerolog.Nop()})
		if err != nil {
			return nil, err
		}
		return &onnxSource{e: e}, nil
	default:
		return nil, fmt.Errorf("unknown velocity source %q (available: gaussian, onnx)", o.source)
	}
}

// onnxSource is the model's own denoiser. One prompt's velocity is held
// (its embeddings and transformer tensors) until the next is asked for.
type onnxSource struct {
	e       *pipeline.Engine
	release func()
}

func (s *onnxSource) Velocity(ctx context.Context, prompt string, guidance float64, h, w int) (cns.VelocityFunc, error) {
	if s.release != nil {
		s.release()
		s.release = nil
	}
	fn, release, err := s.e.Velocity(ctx, prompt, "", guidance, h, w)
	if err != nil {
		return nil, err
	}
	s.release = release
	return cns.VelocityFunc(fn), nil
}

func (s *onnxSource) Model() string { return s.e.Info().Model }

func (s *onnxSource) Close() error {
	if s.release != nil {
		s.release()
		s.release = nil
	}
	return s.e.Close()
}

// gaussianSource is cns.GaussianModel with power 10^(2−4f) over the
// normalised band radius f (100 at DC down to 0.01), one model per grid.
type gaussianSource struct {
	bands  int
	models map[[2]int]*cns.GaussianModel
}

func (g *gaussianSource) Velocity(_ context.Context, _ string, _ float64, h, w int) (cns.VelocityFunc, error) {
	if m, ok := g.models[[2]int{h, w}]; ok {
		return m.Velocity, nil
	}
	power := make([]float64, g.bands)
	for b := range power {
		power[b] = math.Pow(10, 2-4*float64(b)/float64(g.bands-1))
	}
	m, err := cns.NewGaussianModel(h, w, power)
	if err != nil {
		return nil, err
	}
	if g.models == nil {
		g.models = map[[2]int]*cns.GaussianModel{}
	}
	g.models[[2]int{h, w}] = m
	return m.Velocity, nil
}

func (g *gaussianSource) Model() string { return "toy-gaussian" }
func (g *gaussianSource) Close() error  { return nil }

type options struct {
	modelDir, source, promptsFile, sizes, out string
	provider, ortLib                          string
	seeds, steps, bands                       int
	seedBase                                  int64
	guidance                                  float64
	bf16                                      bool
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("cnsgamma", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.modelDir, "model", "", "model directory (required); the matrix is written there")
	fs.StringVar(&o.source, "source", "gaussian", "velocity source: gaussian or onnx")
	fs.StringVar(&o.provider, "provider", "cpu", "onnx source: execution provider (cpu, cuda, tensorrt)")
	fs.StringVar(&o.ortLib, "ort-lib", "", "onnx source: path of libonnxruntime.so")
	fs.StringVar(&o.promptsFile, "prompts", "", "file with one prompt per line (# comments and blank lines skipped)")
	fs.StringVar(&o.sizes, "sizes", "1024x1024,1152x896,896x1152", "comma-separated WxH image sizes, multiples of 16, used round-robin")
	fs.StringVar(&o.out, "out", "", "output file (default MODEL/"+cns.GammaFileName+")")
	fs.IntVar(&o.seeds, "seeds", 8, "seeds per prompt")
	fs.Int64Var(&o.seedBase, "seed-base", 0, "first seed")
	fs.IntVar(&o.steps, "steps", 50, "sampling steps N (matrix rows)")
	fs.IntVar(&o.bands, "bands", 32, "radial frequency bands")
	fs.Float64Var(&o.guidance, "guidance", 4, "CFG guidance scale of the runs")
	fs.BoolVar(&o.bf16, "bf16", false, "keep latents in bfloat16 between steps, as a bf16 pipeline does")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case o.modelDir == "":
		return o, errors.New("-model is required")
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.seeds < 1:
		return o, fmt.Errorf("-seeds must be >= 1, got %d", o.seeds)
	case o.steps < 2:
		return o, fmt.Errorf("-steps must be >= 2, got %d", o.steps)
	case o.bands < 2:
		return o, fmt.Errorf("-bands must be >= 2, got %d", o.bands)
	}
	if o.out == "" {
		o.out = filepath.Join(o.modelDir, cns.GammaFileName)
	}
	return o, nil
}

// parseSizes turns "1024x768,..." into packed latent grids (h, w).
func parseSizes(s string) ([][2]int, error) {
	var out [][2]int
	for _, part := range strings.Split(s, ",") {
		ws, hs, ok := strings.Cut(strings.TrimSpace(part), "x")
		w, errW := strconv.Atoi(ws)
		h, errH := strconv.Atoi(hs)
		if !ok || errW != nil || errH != nil || w < sampler.Downscale || h < sampler.Downscale ||
			w%sampler.Downscale != 0 || h%sampler.Downscale != 0 {
			return nil, fmt.Errorf("size %q: want WxH, positive multiples of %d", part, sampler.Downscale)
		}
		out = append(out, [2]int{h / sampler.Downscale, w / sampler.Downscale})
	}
	return out, nil
}

func readPrompts(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var prompts []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line != "" && !strings.HasPrefix(line, "#") {
			prompts = append(prompts, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(prompts) == 0 {
		return nil, fmt.Errorf("%s has no prompts", path)
	}
	return prompts, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	grids, err := parseSizes(o.sizes)
	if err != nil {
		return err
	}
	if st, err := os.Stat(o.modelDir); err != nil || !st.IsDir() {
		return fmt.Errorf("model directory %q is not a directory", o.modelDir)
	}
	prompts := []string{""}
	if o.promptsFile != "" {
		if prompts, err = readPrompts(o.promptsFile); err != nil {
			return err
		}
	} else if o.source != "gaussian" {
		return errors.New("-prompts is required for a model velocity source")
	}
	src, err := openSource(ctx, o)
	if err != nil {
		return err
	}
	defer src.Close()
	acc, err := cns.NewGammaAccumulator(o.steps, o.bands, o.bf16)
	if err != nil {
		return err
	}
	total := len(prompts) * o.seeds
	start := time.Now()
	for j, prompt := range prompts {
		for s := 0; s < o.seeds; s++ {
			k := j*o.seeds + s
			g := grids[k%len(grids)]
			vel, err := src.Velocity(ctx, prompt, o.guidance, g[0], g[1])
			if err != nil {
				return fmt.Errorf("prompt %d: %w", j, err)
			}
			smp := cns.GammaSample{Height: g[0], Width: g[1], Seed: o.seedBase + int64(k), Velocity: vel}
			if err := acc.Add(ctx, smp); err != nil {
				return fmt.Errorf("sample %d (prompt %d, seed %d): %w", k, j, smp.Seed, err)
			}
			fmt.Fprintf(stderr, "sample %d/%d done (%s elapsed)\n", k+1, total, time.Since(start).Round(time.Second))
		}
	}
	m, err := acc.Matrix(cns.GammaMetadata{Model: src.Model(), GuidanceScale: o.guidance,
		Created: time.Now().UTC().Format(time.RFC3339), Tool: "cnsgamma"})
	if err != nil {
		return err
	}
	if err := cns.WriteGammaFile(o.out, m); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: %d rows x %d bands from %d samples\n", o.out, m.Rows, m.Bands, m.Metadata.Samples)
	fmt.Fprintf(stdout, "step where gamma first reaches 0.5, per band: %v\n", halfwaySteps(m))
	return nil
}

// halfwaySteps returns, per band, the first row with γ ≥ 0.5: the staircase
// docs/cns.md §9 asks to check (it should rise with the band).
func halfwaySteps(m *cns.GammaMatrix) []int {
	out := make([]int, m.Bands)
	for b := range out {
		out[b] = m.Rows
		for r := 0; r < m.Rows; r++ {
			if m.Row(r)[b] >= 0.5 {
				out[b] = r
				break
			}
		}
	}
	return out
}
