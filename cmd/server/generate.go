package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/kleinserve/kleinserve/internal/cns"
	"github.com/kleinserve/kleinserve/internal/config"
	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/imageinput"
	"github.com/kleinserve/kleinserve/internal/netguard"
	"github.com/kleinserve/kleinserve/internal/pipeline"
	"github.com/kleinserve/kleinserve/internal/sampler"
	"github.com/kleinserve/kleinserve/internal/wire"
	"github.com/kleinserve/kleinserve/internal/worker"
)

// runGenerate is `server generate`: one request from the command line,
// written to files, without the HTTP server or the queue.
func runGenerate(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := generate(ctx, args, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "generate:", err)
		return 1
	}
	return 0
}

func generate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("generate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(name, def string) string {
		if v := os.Getenv(config.EnvPrefix + name); v != "" {
			return v
		}
		return def
	}
	def := cns.DefaultParams()
	prompt := fs.String("prompt", "", "the prompt (required)")
	negative := fs.String("negative-prompt", "", "negative prompt for classifier-free guidance")
	out := fs.String("out", "out.png", "output file; with -num-images > 1, -1, -2, ... are inserted before the extension")
	size := fs.String("image-size", wire.DefaultImageSize, "square_hd, square, portrait_4_3, portrait_16_9, landscape_4_3, landscape_16_9")
	width := fs.Int("width", 0, "custom width (multiple of 16; with -height, overrides -image-size)")
	height := fs.Int("height", 0, "custom height (multiple of 16; with -width, overrides -image-size)")
	steps := fs.Int("steps", wire.DefaultNumInferenceSteps,
		fmt.Sprintf("number of inference steps (not given: the endpoint's default, %d on a distilled model)", wire.DefaultDistilledSteps))
	guidance := fs.Float64("guidance", wire.DefaultGuidanceScale, "guidance scale (<= 1: no CFG)")
	seed := fs.Int64("seed", -1, "seed (-1: random, printed)")
	numImages := fs.Int("num-images", wire.DefaultNumImages, "number of images")
	format := fs.String("format", "", "png, jpeg or webp (default: from -out's extension)")
	accel := fs.String("acceleration", string(engine.AccelerationNone), "none, regular or high")
	noSafety := fs.Bool("no-safety-checker", false, "disable the safety checker")
	enableCNS := fs.Bool("cns", false, "enable Colored Noise Sampling (other cns_* fields at their defaults)")
	churn := fs.Float64("cns-s-churn", def.SChurn, "CNS s_churn")
	models := fs.String("models", env("MODELS", "models/tiny"), "model directory")
	provider := fs.String("provider", env("PROVIDER", "cpu"), "cpu, cuda or tensorrt")
	deviceID := fs.Int("device-id", 0, "CUDA device id")
	threads := fs.Int("threads", 0, "CPU intra-op threads (0: all cores)")
	noise := fs.String("noise", string(sampler.NoiseTorch), "torch (diffusers' noise for the seed) or philox")
	ortLib := fs.String("ort-lib", env("ORT_LIB", ""), "path of libonnxruntime.so (default: .ort/lib, then system paths)")
	var images imageFlags
	fs.Var(&images, "image", "reference image file to edit (repeatable, up to 4); without -width/-height/-image-size the output takes the first one's size")
	if err := fs.Parse(args); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	sizeGiven := given["image-size"] || given["width"] || given["height"]
	if *prompt == "" {
		return errors.New("-prompt is required")
	}
	if *format == "" {
		*format = strings.TrimPrefix(strings.ToLower(filepath.Ext(*out)), ".")
		if *format == "jpg" {
			*format = string(engine.FormatJPEG)
		}
	}
	if *seed < 0 {
		*seed = wire.RandomSeed()
	}
	man, err := pipeline.LoadManifest(*models)
	if err != nil {
		return err
	}
	// The request goes through the model's own endpoint and the API's
	// resolver: same validation, same defaults (a distilled model's 4
	// steps), same mapping to the engine. Only flags given on the command
	// line are fields of the input, so a field a distilled endpoint does
	// not take is refused only when asked for.
	input := map[string]any{"prompt": *prompt, "seed": *seed, "output_format": *format, "image_size": *size,
		"enable_safety_checker": !*noSafety}
	for flagName, field := range map[string]struct {
		name  string
		value any
	}{
		"negative-prompt": {"negative_prompt", *negative}, "steps": {"num_inference_steps", *steps},
		"guidance": {"guidance_scale", *guidance}, "num-images": {"num_images", *numImages},
		"acceleration": {"acceleration", *accel}, "cns": {"enable_cns", *enableCNS}, "cns-s-churn": {"cns_s_churn", *churn},
	} {
		if given[flagName] {
			input[field.name] = field.value
		}
	}
	if *width != 0 || *height != 0 {
		input["image_size"] = map[string]int{"width": *width, "height": *height}
	}
	eps := wireModel(man).Endpoints()
	ep := eps[0]
	if len(images) > 0 {
		ep = eps[1]
		if !sizeGiven {
			delete(input, "image_size")
		}
		urls := make([]string, len(images))
		for i, path := range images {
			data, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("-image: %w", err)
			}
			urls[i] = "data:application/octet-stream;base64," + base64.StdEncoding.EncodeToString(data)
		}
		input["image_urls"] = urls
	}
	// The API ignores fields an endpoint does not take, as fal does; on
	// the command line a flag the model cannot honour is an error.
	takes := map[string]bool{}
	for _, f := range ep.Fields() {
		takes[f.Name] = true
	}
	for name := range input {
		if !takes[name] {
			return fmt.Errorf("%s does not take %s", ep.ID, name)
		}
	}
	body, err := json.Marshal(input)
	if err != nil {
		return err
	}
	params, err := ep.ParseInput(body)
	if err != nil {
		var verr *wire.ValidationError
		if errors.As(err, &verr) {
			return fmt.Errorf("invalid request: %s", verr.Error())
		}
		return err
	}
	req := params.Request()
	if len(params.ImageURLs) > 0 {
		// Files given on the command line are data: URIs: nothing is
		// fetched over the network.
		loader := &imageinput.Loader{Fetcher: netguard.New(netguard.Policy{})}
		if req.References, err = worker.LoadReferences(ctx, loader, params.ImageURLs); err != nil {
			var verr *wire.ValidationError
			if errors.As(err, &verr) {
				return fmt.Errorf("-image: %s", verr.Error())
			}
			return err
		}
	}

	log := zerolog.New(stderr).With().Timestamp().Logger().Level(zerolog.WarnLevel)
	fmt.Fprintf(stderr, "%s\n", ep.ID)
	e, err := pipeline.Open(ctx, pipeline.Config{ModelDir: *models, LibraryPath: *ortLib, Provider: *provider,
		DeviceID: *deviceID, IntraOpThreads: *threads, Noise: sampler.NoiseSource(*noise), Logger: log})
	if err != nil {
		return err
	}
	defer e.Close()

	start := time.Now()
	res, err := e.Generate(ctx, req, func(p engine.Progress) {
		fmt.Fprintf(stderr, "\rstep %d/%d (%s/step)", p.Step, p.TotalSteps, p.StepTime.Round(time.Millisecond))
	})
	fmt.Fprintln(stderr)
	if err != nil {
		return err
	}
	for k, img := range res.Images {
		path := *out
		if len(res.Images) > 1 {
			ext := filepath.Ext(path)
			path = fmt.Sprintf("%s-%d%s", strings.TrimSuffix(path, ext), k+1, ext)
		}
		if err := os.WriteFile(path, img.Data, 0o644); err != nil {
			return fmt.Errorf("write image: %w", err)
		}
		note := ""
		if img.NSFW {
			note = " (flagged by the safety checker: black image)"
		}
		fmt.Fprintf(stdout, "%s %dx%d %s %d bytes%s\n", path, img.Width, img.Height, img.ContentType, len(img.Data), note)
	}
	t := res.Timings
	fmt.Fprintf(stdout, "seed %d; %.2fs total (text %.3fs, denoise %.3fs, decode %.3fs, safety %.3fs, encode %.3fs)\n",
		res.Seed, time.Since(start).Seconds(), t.TextEncoding.Seconds(), t.Denoising.Seconds(), t.Decoding.Seconds(),
		t.Safety.Seconds(), t.Encoding.Seconds())
	return nil
}

// imageFlags collects repeated -image flags.
type imageFlags []string

func (f *imageFlags) String() string     { return strings.Join(*f, ",") }
func (f *imageFlags) Set(v string) error { *f = append(*f, v); return nil }
