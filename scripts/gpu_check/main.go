// Command gpu_check prepares and runs kleinserve's one-shot GPU check
// (docs/gpu-check.md) and its CPU-only parts:
//
//	gpu_check placement [-fake-cuda] -ort-lib LIB GRAPH.onnx...   where ONNX Runtime puts each node with the CUDA provider
//	gpu_check fill -skeleton DIR                                   fill a graph skeleton's external data with seeded values
//	gpu_check compare A.png B.png                                  PSNR and largest channel difference of two images
//	gpu_check report -results DIR -out DIR                         gpu-check.{json,md} from gpu.sh's results
//
// placement fails (exit 1) when a node that computes data has no CUDA
// kernel. With -fake-cuda it runs on a host without a GPU: fake CUDA
// libraries (shims.go) let ONNX Runtime's real CUDA provider library load,
// so its own kernel registry and partitioner decide.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

func main() {
	if os.Getenv(sessionChildEnv) != "" {
		if err := sessionChild(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "gpu_check session:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := run(ctx, os.Args[1:], os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gpu_check:", err)
	}
	os.Exit(code)
}

func run(ctx context.Context, args []string, out io.Writer) (int, error) {
	if len(args) == 0 {
		return 2, fmt.Errorf("want a subcommand: placement, fill, compare or report")
	}
	switch args[0] {
	case "placement":
		return placementCmd(ctx, args[1:], out)
	case "fill":
		return fillCmd(ctx, args[1:], out)
	case "compare":
		return compareCmd(args[1:], out)
	case "report":
		return reportCmd(args[1:], out)
	}
	return 2, fmt.Errorf("unknown subcommand %q", args[0])
}

func placementCmd(ctx context.Context, args []string, out io.Writer) (int, error) {
	fs := flag.NewFlagSet("placement", flag.ContinueOnError)
	ortLib := fs.String("ort-lib", ".cache/ort-gpu/lib/libonnxruntime.so", "ONNX Runtime GPU build")
	device := fs.Int("device-id", 0, "CUDA device")
	fake := fs.Bool("fake-cuda", false, "no GPU here: load the provider on fake CUDA libraries")
	jsonOut := fs.String("json", "", "also write the placements as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return 2, err
	}
	if fs.NArg() == 0 {
		return 2, fmt.Errorf("placement: name the graphs")
	}
	var env []string
	if *fake {
		dir, err := os.MkdirTemp("", "fake-cuda-")
		if err != nil {
			return 1, err
		}
		defer os.RemoveAll(dir)
		provider := filepath.Join(filepath.Dir(*ortLib), "libonnxruntime_providers_cuda.so")
		if err := buildShims(provider, dir, 1); err != nil {
			return 1, err
		}
		env = append(env, "LD_LIBRARY_PATH="+dir)
	}
	ps, err := runPlacement(ctx, *ortLib, *device, env, fs.Args())
	if err != nil {
		return 1, err
	}
	code := 0
	for _, p := range ps {
		fmt.Fprintf(out, "%s: %d nodes on CUDA, %d shape nodes kept on CPU by ONNX Runtime, %d without a CUDA kernel\n",
			p.Graph, p.CUDA, len(p.CPUPreferred), len(p.NotOnCUDA()))
		for _, n := range p.NotOnCUDA() {
			fmt.Fprintf(out, "  NOT ON CUDA: %s (%s)\n", n.Op, n.Name)
		}
		if !p.Covered() {
			code = 1
		}
	}
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(ps, "", " ")
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			return 1, err
		}
	}
	return code, nil
}
