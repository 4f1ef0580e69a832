package pipeline

import (
	"errors"
	"strings"
	"testing"
)

// The errors are ONNX Runtime 1.30's, as the GPU build reports them on a
// host without the CUDA libraries, without the driver, or without a GPU.
func TestProviderStartError(t *testing.T) {
	for _, c := range []struct {
		provider, ort string
		want          string // "" when the error is not a provider-start error
	}{
		{ProviderCUDA, "FAIL : Failed to load library /x/libonnxruntime_providers_cuda.so with error: libcublasLt.so.13: cannot open shared object file: No such file or directory",
			"-provider cuda cannot start: missing CUDA 13 library libcublasLt.so.13; install it (pip install nvidia-cublas;"},
		{ProviderCUDA, "Failed to load library libonnxruntime_providers_cuda.so with error: libcudnn.so.9: cannot open shared object file",
			"missing CUDA 13 library libcudnn.so.9; install it (pip install nvidia-cudnn-cu13;"},
		{ProviderCUDA, "Failed to load library /x/libonnxruntime_providers_shared.so with error: /x/libonnxruntime_providers_shared.so: cannot open shared object file: No such file or directory",
			"missing ONNX Runtime's libonnxruntime_providers_shared.so next to the ONNX Runtime library (a CPU build?); use ONNX Runtime's GPU build"},
		{ProviderCUDA, "with error: libcuda.so.1: cannot open shared object file", "missing the NVIDIA driver (libcuda.so.1 not found)"},
		{ProviderCUDA, "with error: libfoo.so.3: cannot open shared object file", "missing shared library libfoo.so.3"},
		{ProviderCUDA, "Parse Failed to parse provider option \"device_id\": CUDA failure 100: no CUDA-capable device is detected ; GPU=0 ; hostname=vm ; file=x.cc ; line=69 ; expr=cudaGetDeviceCount(&num_devices);",
			"missing a usable NVIDIA GPU (CUDA error 100: no CUDA-capable device is detected); check nvidia-smi"},
		{ProviderCUDA, "CUDA failure 35: CUDA driver version is insufficient for CUDA runtime version ; GPU=0", "missing a usable NVIDIA GPU (CUDA error 35: CUDA driver version is insufficient for CUDA runtime version)"},
		{ProviderCUDA, "CUDA failure 101: invalid device ordinal ; GPU=3", "missing the GPU of -device-id (CUDA error 101: invalid device ordinal); pick a -device-id"},
		{ProviderTensorRT, "CUDA execution provider is not enabled in this build.", "-provider tensorrt cannot start: missing CUDA support in this ONNX Runtime library (it is the CPU build)"},
		{ProviderCUDA, "CUDA failure 2: out of memory ; GPU=0", ""},
		{ProviderCUDA, "Load model from x.onnx failed: Protobuf parsing failed", ""},
		{ProviderCPU, "libcublasLt.so.13: cannot open shared object file", ""},
	} {
		cause := errors.New(c.ort)
		got := providerStartError(c.provider, cause)
		if c.want == "" {
			if got != nil {
				t.Errorf("%q: got %q, want the error left alone", c.ort, got)
			}
			continue
		}
		if got == nil {
			t.Errorf("%q: not recognised", c.ort)
			continue
		}
		msg := got.Error()
		if !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") {
			t.Errorf("%q:\n got %q\nwant one line containing %q", c.ort, msg, c.want)
		}
		if !errors.Is(got, cause) {
			t.Errorf("%q: ONNX Runtime's error is not wrapped", c.ort)
		}
		if again := providerStartError(c.provider, got); again != got {
			t.Errorf("%q: explained twice", c.ort)
		}
	}
}
