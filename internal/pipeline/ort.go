package pipeline

import (
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/x448/float16"
	ort "github.com/yalue/onnxruntime_go"
)

// MinORTVersion is the oldest ONNX Runtime library accepted: onnxruntime_go
// v1.27.0 speaks the 1.24 C API, and newer libraries keep serving it.
const MinORTVersion = "1.24.0"

// ortProcess guards ONNX Runtime's environment. The C library allows one
// environment per process, so this is the package's one piece of global
// state; engines take a reference in Open and drop it in Close.
var ortProcess struct {
	sync.Mutex
	refs    int
	lib     string
	version string
}

// DefaultLibraryPaths are tried, in order, when no library path is set.
var DefaultLibraryPaths = []string{
	".ort/lib/libonnxruntime.so",
	"/usr/local/lib/libonnxruntime.so",
	"/usr/lib/libonnxruntime.so",
	"/usr/lib/x86_64-linux-gnu/libonnxruntime.so",
}

// findLibrary resolves the ONNX Runtime shared library path.
func findLibrary(configured string) (string, error) {
	if configured != "" {
		if _, err := os.Stat(configured); err != nil {
			return "", fmt.Errorf("onnxruntime library %s: %w (run scripts/install_ort.sh)", configured, err)
		}
		return configured, nil
	}
	for _, p := range DefaultLibraryPaths {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no onnxruntime library found in %s; run scripts/install_ort.sh or set -ort-lib",
		strings.Join(DefaultLibraryPaths, ", "))
}

// acquireORT initialises the ONNX Runtime environment once per process and
// checks the library version.
func acquireORT(libPath string) (version string, err error) {
	ortProcess.Lock()
	defer ortProcess.Unlock()
	if ortProcess.refs > 0 {
		if libPath != ortProcess.lib {
			return "", fmt.Errorf("onnxruntime already initialised from %s, cannot also load %s", ortProcess.lib, libPath)
		}
		ortProcess.refs++
		return ortProcess.version, nil
	}
	ort.SetSharedLibraryPath(libPath)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return "", fmt.Errorf("initialise onnxruntime from %s: %w", libPath, err)
	}
	v := ort.GetVersion()
	if versionLess(v, MinORTVersion) {
		_ = ort.DestroyEnvironment()
		return "", fmt.Errorf("onnxruntime %s at %s is too old: need >= %s", v, libPath, MinORTVersion)
	}
	ortProcess.refs, ortProcess.lib, ortProcess.version = 1, libPath, v
	return v, nil
}

func releaseORT() error {
	ortProcess.Lock()
	defer ortProcess.Unlock()
	if ortProcess.refs == 0 {
		return nil
	}
	ortProcess.refs--
	if ortProcess.refs > 0 {
		return nil
	}
	ortProcess.lib = ""
	if err := ort.DestroyEnvironment(); err != nil {
		return fmt.Errorf("destroy onnxruntime environment: %w", err)
	}
	return nil
}

// versionLess compares dotted numeric versions ("1.30.0" < "1.31").
func versionLess(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(pa) || i < len(pb); i++ {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

// Providers.
const (
	ProviderCPU      = "cpu"
	ProviderCUDA     = "cuda"
	ProviderTensorRT = "tensorrt"
)

// onGPU reports whether a provider runs on the GPU (TensorRT runs on
// CUDA's devices and memory).
func onGPU(provider string) bool { return provider == ProviderCUDA || provider == ProviderTensorRT }

// sessionSettings are the execution settings shared by every graph.
type sessionSettings struct {
	Provider       string
	DeviceID       int
	IntraOpThreads int
	InterOpThreads int
	// NoCPUArena and NoMemPattern turn ONNX Runtime's CPU memory arena
	// and its memory pattern off (see MemoryRelease in memory.go).
	NoCPUArena, NoMemPattern bool
}

func newSessionOptions(s sessionSettings) (*ort.SessionOptions, error) {
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("session options: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			opts.Destroy()
		}
	}()
	if err := opts.SetGraphOptimizationLevel(ort.GraphOptimizationLevelEnableAll); err != nil {
		return nil, fmt.Errorf("graph optimisation level: %w", err)
	}
	if s.IntraOpThreads > 0 {
		if err := opts.SetIntraOpNumThreads(s.IntraOpThreads); err != nil {
			return nil, fmt.Errorf("intra-op threads: %w", err)
		}
	}
	if s.InterOpThreads > 0 {
		if err := opts.SetInterOpNumThreads(s.InterOpThreads); err != nil {
			return nil, fmt.Errorf("inter-op threads: %w", err)
		}
	}
	if s.NoCPUArena {
		if err := opts.SetCpuMemArena(false); err != nil {
			return nil, fmt.Errorf("cpu memory arena: %w", err)
		}
	}
	if s.NoMemPattern {
		if err := opts.SetMemPattern(false); err != nil {
			return nil, fmt.Errorf("memory pattern: %w", err)
		}
	}
	switch s.Provider {
	case ProviderCPU, "":
	case ProviderCUDA:
		if err := appendCUDA(opts, s.DeviceID); err != nil {
			return nil, err
		}
	case ProviderTensorRT:
		trt, err := ort.NewTensorRTProviderOptions()
		if err != nil {
			return nil, fmt.Errorf("tensorrt options: %w", err)
		}
		defer trt.Destroy()
		if err := trt.Update(map[string]string{
			"device_id":               strconv.Itoa(s.DeviceID),
			"trt_fp16_enable":         "1",
			"trt_engine_cache_enable": "1",
		}); err != nil {
			return nil, fmt.Errorf("tensorrt options: %w", err)
		}
		if err := opts.AppendExecutionProviderTensorRT(trt); err != nil {
			return nil, fmt.Errorf("tensorrt execution provider: %w", err)
		}
		// CUDA takes the nodes TensorRT cannot run.
		if err := appendCUDA(opts, s.DeviceID); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown provider %q (want cpu, cuda or tensorrt)", s.Provider)
	}
	ok = true
	return opts, nil
}

func appendCUDA(opts *ort.SessionOptions, deviceID int) error {
	// Creating the options loads the provider library (and its CUDA
	// libraries); setting device_id counts the devices.
	cuda, err := ort.NewCUDAProviderOptions()
	if err != nil {
		return fmt.Errorf("cuda options: %w", err)
	}
	defer cuda.Destroy()
	if err := cuda.Update(map[string]string{
		"device_id": strconv.Itoa(deviceID),
		// Shapes repeat step after step: search once for the best conv
		// algorithm, and let the arena grow only by what is asked for.
		"cudnn_conv_algo_search":       "EXHAUSTIVE",
		"arena_extend_strategy":        "kSameAsRequested",
		"do_copy_in_default_stream":    "1",
		"cudnn_conv_use_max_workspace": "1",
	}); err != nil {
		return fmt.Errorf("cuda options: %w", err)
	}
	if err := opts.AppendExecutionProviderCUDA(cuda); err != nil {
		return fmt.Errorf("cuda execution provider: %w", err)
	}
	return nil
}

// ProviderStartError is a provider that could not start on this host: Error
// is one line saying what is missing and how to get it; Unwrap gives ONNX
// Runtime's own error chain.
type ProviderStartError struct {
	Provider string
	Missing  string
	Remedy   string
	cause    error
}

func (e *ProviderStartError) Error() string {
	return fmt.Sprintf("-provider %s cannot start: missing %s; %s", e.Provider, e.Missing, e.Remedy)
}

func (e *ProviderStartError) Unwrap() error { return e.cause }

// cudaLibraryPackages names, for each CUDA library the CUDA provider of the
// onnxruntime-gpu 1.30 wheel loads, the PyPI package that ships it.
var cudaLibraryPackages = map[string]string{
	"libcudart.so.13":   "nvidia-cuda-runtime",
	"libcublas.so.13":   "nvidia-cublas",
	"libcublasLt.so.13": "nvidia-cublas",
	"libcurand.so.10":   "nvidia-curand",
	"libcufft.so.12":    "nvidia-cufft",
	"libcudnn.so.9":     "nvidia-cudnn-cu13",
}

// missingLibrary finds "NAME: cannot open shared object file" in a dlopen
// error and returns NAME.
var missingLibrary = regexp.MustCompile(`([A-Za-z0-9_.+-]+\.so[0-9.]*): cannot open shared object file`)

// cudaFailure finds the CUDA runtime error of a failed CUDA call.
var cudaFailure = regexp.MustCompile(`CUDA failure (\d+): ([^;]*)`)

// startError is err as a *ProviderStartError when it is one of the ways a
// GPU provider fails to start, else err unchanged.
func startError(provider string, err error) error {
	if pe := providerStartError(provider, err); pe != nil {
		return pe
	}
	return err
}

// providerStartError recognises the ways a GPU provider fails to start on a
// host without a usable GPU (ONNX Runtime reports them when the provider is
// appended, or when the first session creates it) and names what is missing
// and how to get it; nil when err is something else.
func providerStartError(provider string, err error) *ProviderStartError {
	if err == nil || !onGPU(provider) {
		return nil
	}
	if already := (*ProviderStartError)(nil); errors.As(err, &already) {
		return already
	}
	msg := err.Error()
	e := &ProviderStartError{Provider: provider, cause: err}
	cpu := "or run with -provider cpu"
	if m := missingLibrary.FindStringSubmatch(msg); m != nil {
		lib := m[1]
		switch pkg, known := cudaLibraryPackages[lib]; {
		case strings.HasPrefix(lib, "libonnxruntime_providers_"):
			e.Missing = fmt.Sprintf("ONNX Runtime's %s next to the ONNX Runtime library (a CPU build?)", lib)
			e.Remedy = "use ONNX Runtime's GPU build (scripts/install_ort_gpu.sh puts it in .cache/ort-gpu/lib; pass -ort-lib .cache/ort-gpu/lib/libonnxruntime.so), " + cpu
		case lib == "libcuda.so.1":
			e.Missing = "the NVIDIA driver (libcuda.so.1 not found)"
			e.Remedy = "install the NVIDIA driver, or run in a container started with --gpus, " + cpu
		case known:
			e.Missing = fmt.Sprintf("CUDA 13 library %s", lib)
			e.Remedy = fmt.Sprintf("install it (pip install %s; put its nvidia/*/lib folder on LD_LIBRARY_PATH) or use the Dockerfile.cuda image, %s", pkg, cpu)
		default:
			e.Missing = fmt.Sprintf("shared library %s", lib)
			e.Remedy = "install it or put its folder on LD_LIBRARY_PATH, " + cpu
		}
		return e
	}
	if m := cudaFailure.FindStringSubmatch(msg); m != nil {
		code, text := m[1], strings.TrimSpace(m[2])
		switch code {
		case "100", "35", "34", "999":
			// no device, driver older than the runtime, stub driver, unknown
			e.Missing = fmt.Sprintf("a usable NVIDIA GPU (CUDA error %s: %s)", code, text)
			e.Remedy = "check nvidia-smi and CUDA_VISIBLE_DEVICES (the driver must support CUDA 13), " + cpu
		case "101":
			e.Missing = fmt.Sprintf("the GPU of -device-id (CUDA error %s: %s)", code, text)
			e.Remedy = "pick a -device-id that nvidia-smi lists, " + cpu
		default:
			return nil
		}
		return e
	}
	if strings.Contains(msg, "not enabled in this build") || strings.Contains(msg, "not available in this build") {
		e.Missing = "CUDA support in this ONNX Runtime library (it is the CPU build)"
		e.Remedy = "use ONNX Runtime's GPU build (scripts/install_ort_gpu.sh; -ort-lib .cache/ort-gpu/lib/libonnxruntime.so), " + cpu
		return e
	}
	return nil
}

// floatTensor is a float tensor whose element type is the graph's (fp32,
// fp16 or bf16) while the pipeline computes in float32. For fp32 graphs the
// pipeline reads and writes F32 directly: no copies.
type floatTensor struct {
	dtype string
	shape ort.Shape
	f32   *ort.Tensor[float32]
	raw   *ort.CustomDataTensor
	bytes []byte
	F32   []float32 // nil unless dtype is float32
}

func newFloatTensor(dtype string, dims ...int64) (*floatTensor, error) {
	shape := ort.NewShape(dims...)
	t := &floatTensor{dtype: dtype, shape: shape}
	switch dtype {
	case "float32":
		ten, err := ort.NewEmptyTensor[float32](shape)
		if err != nil {
			return nil, fmt.Errorf("float32 tensor %v: %w", dims, err)
		}
		t.f32, t.F32 = ten, ten.GetData()
	case "float16", "bfloat16":
		t.bytes = make([]byte, 2*shape.FlattenedSize())
		typ := ort.TensorElementDataType(ort.TensorElementDataTypeFloat16)
		if dtype == "bfloat16" {
			typ = ort.TensorElementDataType(ort.TensorElementDataTypeBFloat16)
		}
		raw, err := ort.NewCustomDataTensor(shape, t.bytes, typ)
		if err != nil {
			return nil, fmt.Errorf("%s tensor %v: %w", dtype, dims, err)
		}
		t.raw = raw
	default:
		return nil, fmt.Errorf("unsupported float dtype %q", dtype)
	}
	return t, nil
}

func (t *floatTensor) value() ort.Value {
	if t.f32 != nil {
		return t.f32
	}
	return t.raw
}

func (t *floatTensor) len() int { return int(t.shape.FlattenedSize()) }

// write stores src at element offset off.
func (t *floatTensor) write(off int, src []float32) {
	switch t.dtype {
	case "float32":
		copy(t.F32[off:], src)
	case "float16":
		for i, v := range src {
			h := float16.Fromfloat32(v)
			t.bytes[2*(off+i)], t.bytes[2*(off+i)+1] = byte(h), byte(h>>8)
		}
	case "bfloat16":
		for i, v := range src {
			h := bf16FromFloat32(v)
			t.bytes[2*(off+i)], t.bytes[2*(off+i)+1] = byte(h), byte(h>>8)
		}
	}
}

// read copies len(dst) elements from element offset off into dst.
func (t *floatTensor) read(off int, dst []float32) {
	switch t.dtype {
	case "float32":
		copy(dst, t.F32[off:])
	case "float16":
		for i := range dst {
			j := 2 * (off + i)
			dst[i] = float16.Float16(uint16(t.bytes[j]) | uint16(t.bytes[j+1])<<8).Float32()
		}
	case "bfloat16":
		for i := range dst {
			j := 2 * (off + i)
			dst[i] = math.Float32frombits(uint32(uint16(t.bytes[j])|uint16(t.bytes[j+1])<<8) << 16)
		}
	}
}

func (t *floatTensor) Destroy() error {
	if t.f32 != nil {
		return t.f32.Destroy()
	}
	if t.raw != nil {
		return t.raw.Destroy()
	}
	return nil
}

// bf16FromFloat32 rounds to the nearest bfloat16, ties to even (as torch).
func bf16FromFloat32(f float32) uint16 {
	b := math.Float32bits(f)
	if f != f { // NaN stays a quiet NaN
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// destroyAll releases ONNX Runtime values, joining errors.
func destroyAll(vals ...interface{ Destroy() error }) error {
	var errs []error
	for _, v := range vals {
		if v == nil {
			continue
		}
		if err := v.Destroy(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
