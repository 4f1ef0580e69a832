package pipeline

// The ONNX Runtime C API calls of device-resident I/O (iobind.go) that
// onnxruntime_go v1.27 does not wrap: an IoBinding run with run options,
// values allocated by a session's device allocator, their data pointers,
// the binding's stream synchronisation; and the CUDA runtime's copy. The
// OrtApi table is ortmem_cgo.go's (the library onnxruntime_go loaded).

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct OrtStatus OrtStatus;
typedef const char* (*ksIOMessage)(const OrtStatus*);
typedef void (*ksIORelease)(void*);

// The signatures of the members called, by shape of their arguments (every
// enum argument is an int in the C ABI).
typedef OrtStatus* (*ksIOFnP)(void*);
typedef OrtStatus* (*ksIOFnPP)(void*, void**);
typedef OrtStatus* (*ksIOFnPPP)(void*, const void*, const void*);
typedef OrtStatus* (*ksIOFnPPOut)(const void*, const void*, void**);
typedef OrtStatus* (*ksIOFnSize)(const void*, size_t*);
typedef OrtStatus* (*ksIOFnMemInfo)(const char*, int, int, int, void**);
typedef OrtStatus* (*ksIOFnTensor)(void*, const int64_t*, size_t, int, void**);

// ks_io_status turns a status into NULL or a message to free.
static char* ks_io_status(void* const* api, int message, int release, OrtStatus* st) {
	if (!st) return NULL;
	char* msg = strdup(((ksIOMessage)api[message])(st));
	((ksIORelease)api[release])(st);
	return msg;
}

static char* ks_io_p(void* const* api, int fn, int message, int release, void* a) {
	return ks_io_status(api, message, release, ((ksIOFnP)api[fn])(a));
}

static char* ks_io_pp(void* const* api, int fn, int message, int release, void* a, void** out) {
	return ks_io_status(api, message, release, ((ksIOFnPP)api[fn])(a, out));
}

static char* ks_io_ppp(void* const* api, int fn, int message, int release, void* a, const void* b, const void* c) {
	return ks_io_status(api, message, release, ((ksIOFnPPP)api[fn])(a, b, c));
}

static char* ks_io_pp_out(void* const* api, int fn, int message, int release, const void* a, const void* b, void** out) {
	return ks_io_status(api, message, release, ((ksIOFnPPOut)api[fn])(a, b, out));
}

static char* ks_io_size(void* const* api, int fn, int message, int release, const void* a, size_t* out) {
	return ks_io_status(api, message, release, ((ksIOFnSize)api[fn])(a, out));
}

static char* ks_io_meminfo(void* const* api, int fn, int message, int release,
		const char* name, int type, int id, int mem_type, void** out) {
	return ks_io_status(api, message, release, ((ksIOFnMemInfo)api[fn])(name, type, id, mem_type, out));
}

static char* ks_io_tensor(void* const* api, int fn, int message, int release,
		void* allocator, const int64_t* shape, size_t rank, int type, void** out) {
	return ks_io_status(api, message, release, ((ksIOFnTensor)api[fn])(allocator, shape, rank, type, out));
}

static void ks_io_release(void* const* api, int fn, void* p) {
	((ksIORelease)api[fn])(p);
}

// ks_cuda_copy copies n bytes between host and device memory (either way:
// cudaMemcpyDefault, unified addressing) with the CUDA runtime the CUDA
// provider loaded. Returns 0, -1 without a loaded runtime, -2 without the
// symbol, or the cudaError_t.
static int ks_cuda_copy(void* dst, const void* src, size_t n) {
	static const char* names[] = {"libcudart.so.13", "libcudart.so.12", "libcudart.so", NULL};
	static int (*memcpy_fn)(void*, const void*, size_t, int);
	if (!memcpy_fn) {
		void* lib = NULL;
		for (int i = 0; names[i] && !lib; i++) lib = dlopen(names[i], RTLD_NOW | RTLD_NOLOAD);
		if (!lib) return -1;
		memcpy_fn = (int (*)(void*, const void*, size_t, int))dlsym(lib, "cudaMemcpy");
		if (!memcpy_fn) return -2;
	}
	return memcpy_fn(dst, src, n, 4); // cudaMemcpyDefault
}
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// Indices of the OrtApi members called here, counted in the 1.24
// onnxruntime_c_api.h that onnxruntime_go v1.27 ships (the table only ever
// grows at its end); TestOrtAPIIndices checks every one against that header.
const (
	ortAPISessionGetInputCount   = 30
	ortAPICreateTensorAsOrtValue = 48
	ortAPIGetTensorMutableData   = 51
	ortAPICreateMemoryInfo       = 68
	ortAPIReleaseMemoryInfo      = 94
	ortAPIReleaseValue           = 96
	ortAPICreateAllocator        = 131
	ortAPIReleaseAllocator       = 132
	ortAPIRunWithBinding         = 133
	ortAPICreateIoBinding        = 134
	ortAPIReleaseIoBinding       = 135
	ortAPIBindInput              = 136
	ortAPIBindOutput             = 137
	ortAPISynchronizeBoundInputs = 202
	ortAPISynchronizeBoundOuts   = 203
)

// ONNX Runtime's enum values passed here (onnxruntime_c_api.h).
const (
	ortDeviceAllocator = 0 // OrtAllocatorType: OrtDeviceAllocator
	ortMemTypeDefault  = 0 // OrtMemType: OrtMemTypeDefault
)

// ortCall is the OrtApi table and the indices every call needs.
type ortCall struct{ api unsafe.Pointer }

func newORTCall() (ortCall, error) {
	api := ortAPITable()
	if api == nil {
		return ortCall{}, errors.New("the onnxruntime C API is not loaded")
	}
	return ortCall{api}, nil
}

func (o ortCall) table() *unsafe.Pointer { return (*unsafe.Pointer)(o.api) }

// status turns an error message from C (freed here) into an error.
func status(what string, msg *C.char) error {
	if msg == nil {
		return nil
	}
	defer C.free(unsafe.Pointer(msg))
	return fmt.Errorf("%s: %s", what, C.GoString(msg))
}

func (o ortCall) p(what string, fn int, a unsafe.Pointer) error {
	return status(what, C.ks_io_p(o.table(), C.int(fn), ortAPIGetErrorMessage, ortAPIReleaseStatus, a))
}

func (o ortCall) pp(what string, fn int, a unsafe.Pointer) (unsafe.Pointer, error) {
	var out unsafe.Pointer
	err := status(what, C.ks_io_pp(o.table(), C.int(fn), ortAPIGetErrorMessage, ortAPIReleaseStatus, a, &out))
	return out, err
}

func (o ortCall) ppp(what string, fn int, a, b, c unsafe.Pointer) error {
	return status(what, C.ks_io_ppp(o.table(), C.int(fn), ortAPIGetErrorMessage, ortAPIReleaseStatus, a, b, c))
}

// bind binds value to the named input or output (fn: BindInput or
// BindOutput).
func (o ortCall) bind(fn int, binding unsafe.Pointer, name string, value unsafe.Pointer) error {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	return o.ppp("bind "+name, fn, binding, unsafe.Pointer(cname), value)
}

func (o ortCall) release(fn int, p unsafe.Pointer) {
	if p != nil {
		C.ks_io_release(o.table(), C.int(fn), p)
	}
}

// inputCount is the session's number of inputs (a check of the session
// pointer read out of onnxruntime_go's struct).
func (o ortCall) inputCount(session unsafe.Pointer) (int, error) {
	var n C.size_t
	err := status("SessionGetInputCount", C.ks_io_size(o.table(), ortAPISessionGetInputCount, ortAPIGetErrorMessage, ortAPIReleaseStatus, session, &n))
	return int(n), err
}

// memoryInfo describes device memory: name is ONNX Runtime's ("Cpu", "Cuda").
func (o ortCall) memoryInfo(name string, id int) (unsafe.Pointer, error) {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var out unsafe.Pointer
	err := status("CreateMemoryInfo", C.ks_io_meminfo(o.table(), ortAPICreateMemoryInfo, ortAPIGetErrorMessage, ortAPIReleaseStatus,
		cname, ortDeviceAllocator, C.int(id), ortMemTypeDefault, &out))
	return out, err
}

// allocator is the session's allocator of the memory info's device.
func (o ortCall) allocator(session, memInfo unsafe.Pointer) (unsafe.Pointer, error) {
	var out unsafe.Pointer
	err := status("CreateAllocator", C.ks_io_pp_out(o.table(), ortAPICreateAllocator, ortAPIGetErrorMessage, ortAPIReleaseStatus,
		session, memInfo, &out))
	return out, err
}

// tensor allocates a tensor with the allocator; elem is ONNX's element type.
func (o ortCall) tensor(allocator unsafe.Pointer, shape []int64, elem int) (unsafe.Pointer, error) {
	var out unsafe.Pointer
	var first *C.int64_t
	if len(shape) > 0 {
		first = (*C.int64_t)(unsafe.Pointer(&shape[0]))
	}
	err := status("CreateTensorAsOrtValue", C.ks_io_tensor(o.table(), ortAPICreateTensorAsOrtValue, ortAPIGetErrorMessage, ortAPIReleaseStatus,
		allocator, first, C.size_t(len(shape)), C.int(elem), &out))
	return out, err
}

// data is a tensor value's data pointer (device memory for a device value).
func (o ortCall) data(value unsafe.Pointer) (unsafe.Pointer, error) {
	return o.pp("GetTensorMutableData", ortAPIGetTensorMutableData, value)
}

// cudaCopy copies n bytes between host and CUDA device memory.
func cudaCopy(dst, src unsafe.Pointer, n uintptr) error {
	switch rc := C.ks_cuda_copy(dst, src, C.size_t(n)); rc {
	case 0:
		return nil
	case -1:
		return errors.New("cudaMemcpy: no CUDA runtime loaded")
	case -2:
		return errors.New("cudaMemcpy: the CUDA runtime lacks it")
	default:
		return fmt.Errorf("cudaMemcpy: cudaError %d", int(rc))
	}
}

// hostCopy copies n bytes between host buffers.
func hostCopy(dst, src unsafe.Pointer, n uintptr) error {
	copy(unsafe.Slice((*byte)(dst), n), unsafe.Slice((*byte)(src), n))
	return nil
}
