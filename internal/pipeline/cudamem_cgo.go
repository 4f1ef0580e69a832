package pipeline

/*
#include <dlfcn.h>
#include <stddef.h>

// ks_cuda_memory asks the CUDA runtime for a device's total memory. It uses
// the runtime the CUDA provider loaded when there is one, else loads it.
// Returns 0, or -1 without a runtime, -2 without its symbols, or the
// cudaError_t.
static int ks_cuda_memory(int device, size_t* total) {
	static const char* names[] = {"libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so", NULL};
	void* lib = NULL;
	for (int i = 0; names[i] && !lib; i++) lib = dlopen(names[i], RTLD_NOW | RTLD_NOLOAD);
	for (int i = 0; names[i] && !lib; i++) lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
	if (!lib) return -1;
	int (*set_device)(int) = (int (*)(int))dlsym(lib, "cudaSetDevice");
	int (*mem_get_info)(size_t*, size_t*) = (int (*)(size_t*, size_t*))dlsym(lib, "cudaMemGetInfo");
	if (!set_device || !mem_get_info) return -2;
	int rc = set_device(device);
	if (rc) return rc;
	size_t free_bytes = 0;
	return mem_get_info(&free_bytes, total);
}
*/
import "C"

import (
	"errors"
	"fmt"
)

// deviceMemory is a CUDA device's total memory in bytes.
func deviceMemory(device int) (int64, error) {
	var total C.size_t
	switch rc := C.ks_cuda_memory(C.int(device), &total); rc {
	case 0:
		return int64(total), nil
	case -1:
		return 0, errors.New("no CUDA runtime (libcudart) to ask for the device's memory")
	case -2:
		return 0, errors.New("the CUDA runtime lacks cudaMemGetInfo")
	default:
		return 0, fmt.Errorf("CUDA device %d: cudaError %d", device, int(rc))
	}
}
