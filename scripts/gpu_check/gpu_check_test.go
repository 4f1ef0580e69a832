package main

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/color"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/kleinserve/kleinserve/internal/testenv"
)

// TestMain lets the test binary be its own session child (runPlacement
// re-runs the executable it is in).
func TestMain(m *testing.M) {
	if os.Getenv(sessionChildEnv) != "" {
		if err := sessionChild(os.Args[1:]); err != nil {
			os.Stderr.WriteString("gpu_check session: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// gpuLibrary is where scripts/install_ort_gpu.sh (make test-deps) puts
// ONNX Runtime's GPU build.
func gpuLibrary(t *testing.T) string {
	t.Helper()
	lib := filepath.Join(testenv.RepoRoot(t), ".cache", "ort-gpu", "lib", "libonnxruntime.so")
	if _, err := os.Stat(filepath.Join(filepath.Dir(lib), "libonnxruntime_providers_cuda.so")); err != nil {
		testenv.SkipUnlessRequired(t, "ONNX Runtime GPU build not installed (bash scripts/install_ort_gpu.sh): %v", err)
	}
	return lib
}

func TestParsePlacement(t *testing.T) {
	log := `x [I:onnxruntime:, fallback_cpu_capability.cc:167 GetCpuPreferredNodes] ORT optimization- Force fallback to CPU execution for node: node_Concat_1 because the CPU execution path is deemed faster
x [V:onnxruntime:, session_state.cc:1377 VerifyEachNodeIsAssignedToAnEp] Node placements
x [V:onnxruntime:, session_state.cc:1383 VerifyEachNodeIsAssignedToAnEp]  Node(s) placed on [CPUExecutionProvider]. Number of nodes: 2
x [V:onnxruntime:, session_state.cc:1385 VerifyEachNodeIsAssignedToAnEp]   Concat (node_Concat_1)
x [V:onnxruntime:, session_state.cc:1385 VerifyEachNodeIsAssignedToAnEp]   Cos (node cos 2)
x [V:onnxruntime:, session_state.cc:1383 VerifyEachNodeIsAssignedToAnEp]  Node(s) placed on [CUDAExecutionProvider]. Number of nodes: 3
x [V:onnxruntime:, session_state.cc:1385 VerifyEachNodeIsAssignedToAnEp]   MatMul (m)
x [V:onnxruntime:, session_state.cc:1385 VerifyEachNodeIsAssignedToAnEp]   Add (a)
x [V:onnxruntime:, session_state.cc:1385 VerifyEachNodeIsAssignedToAnEp]   Mul (b)
`
	p, err := parsePlacement("g", []byte(log))
	if err != nil {
		t.Fatal(err)
	}
	if p.CUDA != 3 || len(p.CPUPreferred) != 1 || p.CPUPreferred[0].Name != "node_Concat_1" ||
		len(p.NoKernel) != 1 || p.NoKernel[0] != (Node{"Cos", "node cos 2"}) || p.Covered() {
		t.Fatalf("got %+v", p)
	}
	all := "x [V:onnxruntime:, session_state.cc:1383 VerifyEachNodeIsAssignedToAnEp]  All nodes placed on [CUDAExecutionProvider]. Number of nodes: 7\n"
	if p, err := parsePlacement("g", []byte(all)); err != nil || p.CUDA != 7 || !p.Covered() {
		t.Fatalf("all on CUDA: %+v %v", p, err)
	}
	// Two branches each with an optimiser-made node "Gather": the one
	// forced to the CPU does not excuse the other.
	twins := `x [I:onnxruntime:, fallback_cpu_capability.cc:167 GetCpuPreferredNodes] ORT optimization- Force fallback to CPU execution for node: Gather because the CPU execution path is deemed faster
x [V:onnxruntime:, session_state.cc:1383 VerifyEachNodeIsAssignedToAnEp]  Node(s) placed on [CPUExecutionProvider]. Number of nodes: 2
x [V:onnxruntime:, session_state.cc:1385 VerifyEachNodeIsAssignedToAnEp]   Gather (Gather)
x [V:onnxruntime:, session_state.cc:1385 VerifyEachNodeIsAssignedToAnEp]   Gather (Gather)
x [V:onnxruntime:, session_state.cc:1383 VerifyEachNodeIsAssignedToAnEp]  Node(s) placed on [CUDAExecutionProvider]. Number of nodes: 1
x [V:onnxruntime:, session_state.cc:1385 VerifyEachNodeIsAssignedToAnEp]   If (lora_or_base)
`
	p, err = parsePlacement("g", []byte(twins))
	if err != nil || len(p.CPUPreferred) != 1 || len(p.NoKernel) != 1 || p.Covered() ||
		len(p.ControlFlow) != 1 || p.ControlFlow[0].EP != "CUDAExecutionProvider" {
		t.Fatalf("twins: %+v %v", p, err)
	}
	if _, err := parsePlacement("g", []byte("no placement here\n")); err == nil {
		t.Fatal("a log without placement passed")
	}
}

func TestFillSkeleton(t *testing.T) {
	dir := t.TempDir()
	sk := Skeleton{Format: 1, Tensors: []SkeletonTensor{
		{Graph: "g", File: "g.onnx.data", Name: "w", DType: "bfloat16", Shape: []int64{300, 1000}, Offset: 0, Length: 600000, Mean: 0, Std: 0.05},
		{Graph: "g", File: "g.onnx.data", Name: "norm", DType: "float32", Shape: []int64{2048}, Offset: 602112, Length: 8192, Mean: 1, Std: 0.1},
		{Graph: "h", File: "h.onnx.data", Name: "w", DType: "float16", Shape: []int64{4096}, Offset: 0, Length: 8192, Mean: -2, Std: 0.5},
	}}
	b, _ := json.Marshal(sk)
	if err := os.WriteFile(filepath.Join(dir, SkeletonFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := fillSkeleton(context.Background(), dir, 7)
	if err != nil {
		t.Fatal(err)
	}
	if n != 602112+8192+8192 {
		t.Fatalf("wrote %d bytes", n)
	}
	g1, _ := os.ReadFile(filepath.Join(dir, "g.onnx.data"))
	if _, err := fillSkeleton(context.Background(), dir, 7); err != nil {
		t.Fatal(err)
	}
	g2, _ := os.ReadFile(filepath.Join(dir, "g.onnx.data"))
	if !bytes.Equal(g1, g2) {
		t.Fatal("same seed, different bytes")
	}
	mean, std := moments(g1[:600000], func(b []byte) float64 { return float64(math.Float32frombits(uint32(b[0])<<16 | uint32(b[1])<<24)) }, 2)
	if math.Abs(mean) > 0.001 || math.Abs(std-0.05) > 0.001 {
		t.Errorf("bf16 tensor: mean %g std %g, want 0, 0.05", mean, std)
	}
	mean, std = moments(g1[602112:], func(b []byte) float64 {
		return float64(math.Float32frombits(uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24))
	}, 4)
	if math.Abs(mean-1) > 0.01 || math.Abs(std-0.1) > 0.01 {
		t.Errorf("f32 tensor: mean %g std %g, want 1, 0.1", mean, std)
	}
	if _, err := fillSkeleton(context.Background(), dir, 8); err != nil {
		t.Fatal(err)
	}
	if g3, _ := os.ReadFile(filepath.Join(dir, "g.onnx.data")); bytes.Equal(g1, g3) {
		t.Fatal("another seed, same bytes")
	}
	// A wrong length, a path in the file name and an unknown type are refused.
	for _, bad := range []SkeletonTensor{
		{Graph: "g", File: "g.onnx.data", Name: "x", DType: "float32", Shape: []int64{3}, Length: 8},
		{Graph: "g", File: "../g.onnx.data", Name: "x", DType: "float32", Shape: []int64{2}, Length: 8},
		{Graph: "g", File: "g.onnx.data", Name: "x", DType: "int64", Shape: []int64{1}, Length: 8},
	} {
		b, _ := json.Marshal(Skeleton{Format: 1, Tensors: []SkeletonTensor{bad}})
		os.WriteFile(filepath.Join(dir, SkeletonFile), b, 0o644)
		if _, err := fillSkeleton(context.Background(), dir, 0); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func moments(b []byte, decode func([]byte) float64, size int) (mean, std float64) {
	n := len(b) / size
	var s, ss float64
	for i := 0; i < n; i++ {
		v := decode(b[i*size:])
		s += v
		ss += v * v
	}
	mean = s / float64(n)
	return mean, math.Sqrt(ss/float64(n) - mean*mean)
}

func TestCompareImages(t *testing.T) {
	a := image.NewRGBA(image.Rect(0, 0, 4, 4))
	b := image.NewRGBA(image.Rect(0, 0, 4, 4))
	for i := range a.Pix {
		a.Pix[i], b.Pix[i] = 100, 100
	}
	if d, err := compareImages(a, b); err != nil || !math.IsInf(d.PSNR, 1) || d.MaxDiff != 0 {
		t.Fatalf("identical: %+v %v", d, err)
	}
	b.Set(1, 1, color.RGBA{110, 100, 100, 255}) // one channel of 48 off by 10: MSE 100/48
	d, err := compareImages(a, b)
	if err != nil || d.MaxDiff != 10 || math.Abs(d.PSNR-10*math.Log10(255*255*48/100.0)) > 1e-9 {
		t.Fatalf("one pixel: %+v %v", d, err)
	}
	if _, err := compareImages(a, image.NewRGBA(image.Rect(0, 0, 4, 5))); err == nil {
		t.Fatal("different sizes compared")
	}
}

// TestCUDAPlacement is the CUDA coverage check: every committed tiny
// skeleton (bf16 and fp16, fused attention and decomposed) is filled and
// opened with ONNX Runtime 1.30's CUDA provider on fake CUDA libraries, and
// no node that computes data may be left without a CUDA kernel.
func TestCUDAPlacement(t *testing.T) {
	lib := gpuLibrary(t)
	testenv.RequireTool(t, "cc")
	shims := t.TempDir()
	if err := buildShims(filepath.Join(filepath.Dir(lib), "libonnxruntime_providers_cuda.so"), shims, 1); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(testenv.RepoRoot(t), "testdata", "gpu_check")
	dirs, _ := filepath.Glob(filepath.Join(root, "tiny-*"))
	if len(dirs) != 4 {
		t.Fatalf("want 4 tiny skeletons under %s, found %v", root, dirs)
	}
	for _, src := range dirs {
		t.Run(filepath.Base(src), func(t *testing.T) {
			dir := copySkeleton(t, src)
			if _, err := fillSkeleton(context.Background(), dir, 0); err != nil {
				t.Fatal(err)
			}
			graphs, _ := filepath.Glob(filepath.Join(dir, "*.onnx"))
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			ps, err := runPlacement(ctx, lib, 0, []string{"LD_LIBRARY_PATH=" + shims}, graphs)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range ps {
				name := filepath.Base(p.Graph)
				t.Logf("%s: %d nodes on CUDA, %d shape nodes on CPU", name, p.CUDA, len(p.CPUPreferred))
				if p.CUDA == 0 || !p.Covered() {
					t.Errorf("%s: not on CUDA: %v %v", name, p.NoKernel, p.Other)
				}
				for _, n := range p.ControlFlow {
					if n.EP != "CUDAExecutionProvider" {
						t.Errorf("%s: %s %s on %s", name, n.Op, n.Name, n.EP)
					}
				}
				for _, sc := range p.Scopes {
					t.Logf("  %s: %d on CUDA, %d shape nodes on CPU, %d without a CUDA kernel", sc.Scope, sc.CUDA, sc.CPUPreferred, sc.NoKernel)
					if sc.Scope != AddedScope && sc.CUDA == 0 {
						t.Errorf("%s: no node of %s on CUDA (were its nodes placed?)", name, sc.Scope)
					}
				}
				// The transformer's LoRA switch: one If over two branches.
				if name == "transformer.onnx" && (len(p.ControlFlow) != 1 || p.ControlFlow[0].Op != "If" || len(p.Scopes) < 3) {
					t.Errorf("%s: want the If(lora_active) and its two branches, got %+v %+v", name, p.ControlFlow, p.Scopes)
				}
			}
		})
	}
}

func copySkeleton(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestStartWithoutGPU pins what `-provider cuda` says on a host without the
// CUDA libraries, and on one without a GPU (fake CUDA libraries that find no
// device), with ONNX Runtime's real GPU build: exit status 1 and one last
// line naming what is missing and how to get it.
func TestStartWithoutGPU(t *testing.T) {
	lib := gpuLibrary(t)
	root := testenv.RepoRoot(t)
	bin := filepath.Join(t.TempDir(), "server")
	if out, err := exec.Command("go", "build", "-o", bin, filepath.Join(root, "cmd", "server")).CombinedOutput(); err != nil {
		t.Fatalf("build server: %v\n%s", err, out)
	}
	noDevice := t.TempDir()
	testenv.RequireTool(t, "cc")
	if err := buildShims(filepath.Join(filepath.Dir(lib), "libonnxruntime_providers_cuda.so"), noDevice, 0); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, ldPath, want string }{
		{"no CUDA libraries", "", "-provider cuda cannot start: missing CUDA 13 library libcublasLt.so.13; install it (pip install nvidia-cublas;"},
		{"no GPU", noDevice, "-provider cuda cannot start: missing a usable NVIDIA GPU (CUDA error 100: no CUDA-capable device is detected); check nvidia-smi"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(bin, "generate", "-provider", "cuda", "-ort-lib", lib, "-models", filepath.Join(root, "models", "tiny"),
				"-prompt", "a cat", "-out", filepath.Join(t.TempDir(), "x.png"))
			cmd.Env = append(os.Environ(), "LD_LIBRARY_PATH="+c.ldPath)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Fatalf("exit: %v, want status 1\n%s", err, stderr.String())
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			last := lines[len(lines)-1]
			if !strings.Contains(last, c.want) {
				t.Fatalf("last line %q\nwant it to contain %q", last, c.want)
			}
			t.Log(last)
		})
	}
}

// TestDryRun runs the GPU check's whole call sequence on this machine:
// pack.sh in dry mode (CPU library, the tiny fp16 skeleton, tiny sizes,
// small chunks so that there are several), gpu.sh receive for every chunk
// but the last and gpu.sh run for the last, then reads the report. It keeps
// the scripts from rotting between the rare GPU loans.
func TestDryRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds three binaries")
	}
	for _, tool := range []string{"bash", "xz", "tar", "split", "sha256sum", "timeout", "python3", "go", "git"} {
		testenv.RequireTool(t, tool)
	}
	root := testenv.RepoRoot(t)
	tmp := t.TempDir()
	dest, work, out := filepath.Join(tmp, "dest"), filepath.Join(tmp, "work"), filepath.Join(tmp, "out")
	env := append(os.Environ(), "GPUCHECK_MODE=dry", "GPUCHECK_DEST="+dest, "GPUCHECK_CHUNK_BYTES=8000000",
		"GPUCHECK_WORK="+work, "OUT="+out, "GPUCHECK_BUDGET_S=300")
	sh := func(script string, args ...string) string {
		t.Helper()
		cmd := exec.Command("bash", append([]string{filepath.Join(root, "scripts", "gpu_check", script)}, args...)...)
		cmd.Dir, cmd.Env = root, env
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", script, args, err, b)
		}
		return string(b)
	}
	t.Log(sh("pack.sh"))
	chunks, _ := filepath.Glob(filepath.Join(dest, "c*"))
	if len(chunks) < 2 {
		t.Fatalf("want several chunks, got %v", chunks)
	}
	for i := 1; i < len(chunks); i++ {
		sh("gpu.sh", "receive", filepath.Join(dest, "c"+strconv.Itoa(i)))
	}
	t.Log(sh("gpu.sh", "run", filepath.Join(dest, "c"+strconv.Itoa(len(chunks)))))

	var r Report
	if err := readJSON(filepath.Join(out, "gpu-check.json"), &r); err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, s := range r.Steps {
		status[s.Name] = s.Status
	}
	for _, name := range []string{"unpack", "fill", "bench 64x64 none", "bench 64x64 regular", "bench 64x64 high",
		"bench 64x96 none", "bench 64x96 regular", "bench 64x96 high", "psnr high vs none", "tiny gpu vs cpu", "bench 64x64 none io-binding-off", "bench 64x64 none decomposed"} {
		if status[name] != "ok" {
			log, _ := os.ReadFile(filepath.Join(out, "gpu-check.log"))
			t.Fatalf("step %q: %q, want ok\n%s", name, status[name], tail(log, 40))
		}
	}
	if len(r.Bench) != 8 || r.Bench[0].EndToEndS <= 0 || r.Bench[0].StepS <= 0 {
		t.Fatalf("bench rows: %+v", r.Bench)
	}
	if r.Tolerance == nil || r.Tolerance.MaxDiff != 0 || !strings.HasPrefix(r.Verdicts["tiny_gpu_vs_cpu"], "pass") {
		t.Fatalf("CPU against itself: %+v %q", r.Tolerance, r.Verdicts["tiny_gpu_vs_cpu"])
	}
	if r.PSNR == nil || r.PSNR.PSNR <= 0 {
		t.Fatalf("psnr: %+v", r.PSNR)
	}
	md, err := os.ReadFile(filepath.Join(out, "gpu-check.md"))
	if err != nil || !strings.Contains(string(md), "| 64x64-high | 64x64 | high | 4 |") {
		t.Fatalf("gpu-check.md: %v\n%s", err, md)
	}
}

// pbValue is a graph input or output: a tensor of ONNX element type elem
// (1 float, 9 bool) and shape dims (nil: no shape).
type pbValue struct {
	name string
	elem uint64
	dims []int64
}

// pbNode is a node with its GRAPH attributes, in order.
type pbNode struct {
	op, name  string
	in, out   []string
	subgraphs []pbSubgraph
}

type pbSubgraph struct {
	attr  string
	graph []byte
}

func pbMsg(field protowire.Number, body []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, field, protowire.BytesType), body)
}

func pbString(field protowire.Number, s string) []byte { return pbMsg(field, []byte(s)) }

func pbVarint(field protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, field, protowire.VarintType), v)
}

// pbGraph encodes a GraphProto (field numbers of onnx.proto's GraphProto,
// NodeProto, AttributeProto and ValueInfoProto).
func pbGraph(name string, nodes []pbNode, inputs, outputs []pbValue) []byte {
	valueInfo := func(v pbValue) []byte {
		tensor := pbVarint(1, v.elem) // elem_type
		if v.dims != nil {
			var shape []byte
			for _, d := range v.dims {
				shape = append(shape, pbMsg(1, pbVarint(1, uint64(d)))...) // TensorShapeProto.dim{dim_value}
			}
			tensor = append(tensor, pbMsg(2, shape)...)
		}
		return append(pbString(1, v.name), pbMsg(2, pbMsg(1, tensor))...)
	}
	var graph []byte
	for _, n := range nodes {
		var node []byte
		for _, in := range n.in {
			node = append(node, pbString(1, in)...)
		}
		for _, out := range n.out {
			node = append(node, pbString(2, out)...)
		}
		node = append(append(node, pbString(3, n.name)...), pbString(4, n.op)...)
		for _, sub := range n.subgraphs {
			// AttributeProto{name, g, type GRAPH}
			node = append(node, pbMsg(5, append(append(pbString(1, sub.attr), pbMsg(6, sub.graph)...), pbVarint(20, 5)...))...)
		}
		graph = append(graph, pbMsg(1, node)...)
	}
	graph = append(graph, pbString(2, name)...)
	for _, v := range inputs {
		graph = append(graph, pbMsg(11, valueInfo(v))...)
	}
	for _, v := range outputs {
		graph = append(graph, pbMsg(12, valueInfo(v))...)
	}
	return graph
}

// pbModel wraps a graph in a ModelProto (IR 10, opset 20).
func pbModel(graph []byte) []byte {
	model := pbVarint(1, 10) // ir_version
	model = append(model, pbMsg(7, graph)...)
	return append(model, pbMsg(8, append(pbString(1, ""), pbVarint(2, 20)...))...)
}

// fakeCUDAPlacement opens graph with ONNX Runtime's CUDA provider on fake
// CUDA libraries and returns the placement.
func fakeCUDAPlacement(t *testing.T, graph string) Placement {
	t.Helper()
	lib := gpuLibrary(t)
	testenv.RequireTool(t, "cc")
	shims := t.TempDir()
	if err := buildShims(filepath.Join(filepath.Dir(lib), "libonnxruntime_providers_cuda.so"), shims, 1); err != nil {
		t.Fatal(err)
	}
	ps, err := runPlacement(context.Background(), lib, 0, []string{"LD_LIBRARY_PATH=" + shims}, []string{graph})
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 {
		t.Fatalf("want one placement, got %+v", ps)
	}
	return ps[0]
}

// TestCUDAPlacementFails shows the check failing: Det has no CUDA kernel
// in ONNX Runtime 1.30 (its CPU kernel runs instead), Relu has one.
func TestCUDAPlacementFails(t *testing.T) {
	x := pbValue{"x", 1, []int64{2, 3, 3}}
	path := filepath.Join(t.TempDir(), "det.onnx")
	model := pbModel(pbGraph("gpu_check_test", []pbNode{
		{op: "Det", name: "det_node", in: []string{"x"}, out: []string{"det"}},
		{op: "Relu", name: "relu_node", in: []string{"x"}, out: []string{"y"}},
	}, []pbValue{x}, []pbValue{{"det", 1, []int64{2}}, {"y", 1, []int64{2, 3, 3}}}))
	if err := os.WriteFile(path, model, 0o644); err != nil {
		t.Fatal(err)
	}
	p := fakeCUDAPlacement(t, path)
	if p.Covered() || len(p.NoKernel) != 1 || p.NoKernel[0] != (Node{"Det", "det_node"}) {
		t.Fatalf("want Det reported without a CUDA kernel, got %+v", p)
	}
}

// TestCUDAPlacementFailsInBranch shows that the check reads the branches
// of an If: the If has a CUDA kernel and is placed on CUDA, but the Det in
// its then branch has none, and the check fails naming it (and its graph).
// The transformer's LoRA switch is such an If.
func TestCUDAPlacementFailsInBranch(t *testing.T) {
	x := pbValue{"x", 1, []int64{2, 3, 3}}
	then := pbGraph("then", []pbNode{
		{op: "Relu", name: "then_relu", in: []string{"x"}, out: []string{"r"}},
		{op: "Det", name: "then_det", in: []string{"r"}, out: []string{"y_then"}},
	}, nil, []pbValue{{"y_then", 1, nil}})
	els := pbGraph("else", []pbNode{
		{op: "Abs", name: "else_abs", in: []string{"x"}, out: []string{"a"}},
		{op: "ReduceSum", name: "else_sum", in: []string{"a"}, out: []string{"y_else"}},
	}, nil, []pbValue{{"y_else", 1, nil}})
	path := filepath.Join(t.TempDir(), "if.onnx")
	model := pbModel(pbGraph("gpu_check_test", []pbNode{
		{op: "If", name: "switch", in: []string{"c"}, out: []string{"y"},
			subgraphs: []pbSubgraph{{"then_branch", then}, {"else_branch", els}}},
	}, []pbValue{x, {"c", 9, []int64{1}}}, []pbValue{{"y", 1, nil}}))
	if err := os.WriteFile(path, model, 0o644); err != nil {
		t.Fatal(err)
	}
	p := fakeCUDAPlacement(t, path)
	if len(p.ControlFlow) != 1 || p.ControlFlow[0].Name != "switch" || p.ControlFlow[0].EP != "CUDAExecutionProvider" {
		t.Fatalf("want the If on CUDA, got %+v", p.ControlFlow)
	}
	if p.Covered() || len(p.NoKernel) != 1 || p.NoKernel[0] != (Node{"Det", "then_det"}) {
		t.Fatalf("want the branch's Det reported without a CUDA kernel, got %+v", p)
	}
	want := []ScopeCount{
		{Scope: MainScope, CUDA: 1},
		{Scope: "If switch.then_branch", CUDA: 1, NoKernel: 1},
		{Scope: "If switch.else_branch", CUDA: 2},
		{Scope: AddedScope, CUDA: 1}, // the copy of Det's input to the host
	}
	if !slices.Equal(p.Scopes, want) {
		t.Fatalf("scopes %+v, want %+v", p.Scopes, want)
	}
	if v := verdicts(Report{Placement: []Placement{p}}); v["cuda_coverage"] != "FAIL: not on CUDA: if.onnx: Det (then_det)" {
		t.Fatalf("verdict %q", v["cuda_coverage"])
	}
}

func TestVerdicts(t *testing.T) {
	r := Report{
		Steps:     []Step{{Name: "fill", Status: "ok"}, {Name: "bench 1024x768 high", Status: "skipped"}},
		Placement: []Placement{{Graph: "/m/transformer.onnx", CUDA: 9, NoKernel: []Node{{"Cos", "n1"}}}, {Graph: "/m/vae_decoder.onnx", CUDA: 3}},
		Tolerance: &ImageDiff{PSNR: 31.5, MaxDiff: 9},
	}
	v := verdicts(r)
	for key, want := range map[string]string{
		"cuda_coverage":   "FAIL: not on CUDA: transformer.onnx: Cos (n1)",
		"tiny_gpu_vs_cpu": "FAIL: 31.50 dB < 40 dB, largest channel difference 9",
		"steps":           "not all steps ran: bench 1024x768 high skipped",
	} {
		if v[key] != want {
			t.Errorf("%s: %q, want %q", key, v[key], want)
		}
	}
	r.Placement[0].NoKernel, r.Tolerance.PSNR, r.Steps = nil, 52, r.Steps[:1]
	v = verdicts(r)
	for _, key := range []string{"cuda_coverage", "tiny_gpu_vs_cpu"} {
		if !strings.HasPrefix(v[key], "pass") {
			t.Errorf("%s: %q, want pass", key, v[key])
		}
	}
	if v["steps"] != "all 1 steps ran" {
		t.Errorf("steps: %q", v["steps"])
	}
}
