package main

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Fake CUDA libraries let ONNX Runtime's real CUDA provider library load and
// construct its execution provider on a host without a GPU, so that ONNX
// Runtime's own partitioner decides, from the provider's own kernel
// registry, which node runs where. Nothing is computed on them: every
// function they export succeeds and does nothing, except the few that must
// answer (device count, current device, memory size, versions, non-null
// handles). The node placement ONNX Runtime logs before it creates any
// kernel is therefore exactly the one a real GPU gets, except for decisions
// that depend on device properties (none in 1.30's placement) and for what
// kernels decide at run time (the GPU check's runtime placement covers that).

// cudaSpecials are the functions whose answers the provider reads back.
// DEVICES is the number of devices the fake runtime reports.
var cudaSpecials = map[string]string{
	"cudaGetDeviceCount":     `int cudaGetDeviceCount(int *n) { *n = DEVICES; return DEVICES > 0 ? 0 : 100; }`,
	"cudaSetDevice":          `int cudaSetDevice(int d) { return DEVICES == 0 ? 100 : (d < DEVICES ? 0 : 101); }`,
	"cudaGetDevice":          `int cudaGetDevice(int *d) { *d = 0; return 0; }`,
	"cudaMemGetInfo":         `int cudaMemGetInfo(size_t *f, size_t *t) { *f = *t = (size_t)141 << 30; return 0; }`,
	"cudaDriverGetVersion":   `int cudaDriverGetVersion(int *v) { *v = 13000; return 0; }`,
	"cudaRuntimeGetVersion":  `int cudaRuntimeGetVersion(int *v) { *v = 13000; return 0; }`,
	"cudaDeviceGetAttribute": `int cudaDeviceGetAttribute(int *v, int attr, int d) { *v = attr == 75 ? 9 : 0; return 0; }`,
	"cudaGetErrorName":       `const char *cudaGetErrorName(int e) { return fake_error(e); }`,
	"cudaGetErrorString":     `const char *cudaGetErrorString(int e) { return fake_error(e); }`,
	"cublasGetStatusName":    `const char *cublasGetStatusName(int e) { return "fake cuBLAS status"; }`,
	"cublasGetStatusString":  `const char *cublasGetStatusString(int e) { return "fake cuBLAS status"; }`,
	"cudaMalloc":             `int cudaMalloc(void **p, size_t n) { *p = calloc(1, n ? n : 1); return 0; }`,
	"cudaMallocHost":         `int cudaMallocHost(void **p, size_t n) { *p = calloc(1, n ? n : 1); return 0; }`,
	"cudaHostAlloc":          `int cudaHostAlloc(void **p, size_t n, unsigned f) { *p = calloc(1, n ? n : 1); return 0; }`,
	"__cudaRegisterFatBinary": `static void *fatbin[64];
void **__cudaRegisterFatBinary(void *x) { return fatbin; }`,
}

// cudaHandleMakers return an opaque handle through their first argument.
var cudaHandleMakers = []string{"cudaStreamCreate", "cudaStreamCreateWithFlags", "cudaEventCreate",
	"cudaEventCreateWithFlags", "cublasCreate_v2", "cublasLtCreate", "cudnnCreate", "curandCreateGenerator"}

const shimPrelude = `#include <stdlib.h>
static char fake_handle[256];
static const char *fake_error(int e) {
	switch (e) {
	case 100: return "no CUDA-capable device is detected";
	case 101: return "invalid device ordinal";
	default: return "fake CUDA error";
	}
}
`

// buildShims writes fake versions of every CUDA library the provider
// library needs into dir, reporting devices GPUs.
func buildShims(providerLib, dir string, devices int) error {
	f, err := elf.Open(providerLib)
	if err != nil {
		return fmt.Errorf("read %s: %w", providerLib, err)
	}
	defer f.Close()
	needed, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("read %s: %w", providerLib, err)
	}
	syms, err := f.DynamicSymbols()
	if err != nil {
		return fmt.Errorf("read %s: %w", providerLib, err)
	}
	perLib := map[string][]string{} // soname -> symbols
	versions := map[string]string{} // soname -> symbol version node
	for _, lib := range needed {
		if isCUDALibrary(lib) {
			perLib[lib] = nil
		}
	}
	for _, s := range syms {
		if s.Section != elf.SHN_UNDEF || !strings.HasPrefix(strings.TrimLeft(s.Name, "_"), "cu") {
			continue
		}
		lib := s.Library
		if lib == "" {
			lib = "libcuda.so.1" // the driver API is not versioned
		}
		if _, ok := perLib[lib]; !ok {
			continue
		}
		perLib[lib] = append(perLib[lib], s.Name)
		if s.Version != "" {
			versions[lib] = s.Version
		}
	}
	if len(perLib) == 0 {
		return fmt.Errorf("%s needs no CUDA library", providerLib)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	for lib, names := range perLib {
		sort.Strings(names)
		src := filepath.Join(dir, lib+".c")
		if err := os.WriteFile(src, []byte(shimSource(names, devices)), 0o644); err != nil {
			return err
		}
		args := []string{"-shared", "-fPIC", "-w", "-o", filepath.Join(dir, lib), src, "-Wl,-soname," + lib}
		if v := versions[lib]; v != "" {
			script := filepath.Join(dir, lib+".map")
			if err := os.WriteFile(script, []byte(v+" { global: *; };\n"), 0o644); err != nil {
				return err
			}
			args = append(args, "-Wl,--version-script="+script)
		}
		if out, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("build fake %s: %w\n%s", lib, err, out)
		}
	}
	return nil
}

// isCUDALibrary tells NVIDIA's libraries from the system's.
func isCUDALibrary(soname string) bool {
	for _, p := range []string{"libcuda.", "libcudart.", "libcublas", "libcurand.", "libcufft.", "libcudnn", "libnvrtc", "libnvJitLink", "libcusparse", "libcusolver"} {
		if strings.HasPrefix(soname, p) {
			return true
		}
	}
	return false
}

func shimSource(names []string, devices int) string {
	var b strings.Builder
	b.WriteString(shimPrelude)
	for _, n := range names {
		switch {
		case cudaSpecials[n] != "":
			b.WriteString(strings.ReplaceAll(cudaSpecials[n], "DEVICES", strconv.Itoa(devices)) + "\n")
		case slices.Contains(cudaHandleMakers, n):
			fmt.Fprintf(&b, "int %s(void **h) { *h = fake_handle; return 0; }\n", n)
		default:
			fmt.Fprintf(&b, "long %s(void) { return 0; }\n", n)
		}
	}
	return b.String()
}
