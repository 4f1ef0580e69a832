package pipeline

// The two C calls memory release needs and onnxruntime_go v1.27 does not
// wrap: OrtApi::AddRunConfigEntry (to ask a Run to shrink its arenas) and
// glibc's malloc_trim. Kept in this one file; see docs/memory.md.

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

// OrtApiBase's two members, in the C API's order.
typedef struct {
	const void* (*GetApi)(uint32_t version);
	const char* (*GetVersionString)(void);
} ksApiBase;

typedef struct OrtStatus OrtStatus;
typedef OrtStatus* (*ksAddRunConfigEntry)(void* options, const char* key, const char* value);
typedef const char* (*ksGetErrorMessage)(const OrtStatus* status);
typedef void (*ksReleaseStatus)(OrtStatus* status);

// The OrtApi table of the library onnxruntime_go loaded.
static void* const* ks_api;

// ks_load_api finds the OrtApi table of the already loaded library at path
// (RTLD_NOLOAD: never a second copy). The handle is never closed, so the
// library, and the table, stay where they are when onnxruntime_go closes
// its own handle in DestroyEnvironment and opens it again. 0 on success.
static int ks_load_api(const char* path, uint32_t version) {
	void* lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
	if (!lib) return 1;
	const ksApiBase* (*get_base)(void) = (const ksApiBase* (*)(void))dlsym(lib, "OrtGetApiBase");
	if (!get_base) return 2;
	const ksApiBase* base = get_base();
	if (!base) return 3;
	ks_api = (void* const*)base->GetApi(version);
	return ks_api ? 0 : 4;
}

// ks_add_run_config_entry returns NULL or the error message (to free).
static char* ks_add_run_config_entry(void* options, const char* key, const char* value,
		int add, int message, int release) {
	OrtStatus* st = ((ksAddRunConfigEntry)ks_api[add])(options, key, value);
	if (!st) return NULL;
	char* msg = strdup(((ksGetErrorMessage)ks_api[message])(st));
	((ksReleaseStatus)ks_api[release])(st);
	return msg;
}

// ks_api_table hands the table to the other files' C code (iobind_cgo.go):
// a static is per file.
static void* const* ks_api_table(void) { return ks_api; }

static void ks_malloc_trim(void) {
#ifdef __GLIBC__
	malloc_trim(0);
#endif
}
*/
import "C"

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"

	ort "github.com/yalue/onnxruntime_go"
)

// ortAPIVersion is the C API version onnxruntime_go v1.27 speaks (and
// MinORTVersion guarantees the library serves).
const ortAPIVersion = 24

// Indices of the OrtApi members called here. OrtApi is a struct of function
// pointers that ONNX Runtime only ever appends to (its ABI promise: a
// program built against version N runs on every later library), so these
// positions are fixed; they were counted in the 1.24 onnxruntime_c_api.h
// that onnxruntime_go v1.27 ships. TestRunConfigEntry checks them against
// the library: a wrong index would not return ORT's own error message.
const (
	ortAPIGetErrorMessage   = 2
	ortAPIReleaseStatus     = 93
	ortAPIAddRunConfigEntry = 165
)

var ortAPI struct {
	sync.Mutex
	lib string // the library whose table ks_api holds
}

// loadORTAPI finds the OrtApi table of the library onnxruntime_go loaded
// from lib (acquireORT has initialised it).
func loadORTAPI(lib string) error {
	ortAPI.Lock()
	defer ortAPI.Unlock()
	if ortAPI.lib == lib {
		return nil
	}
	p := C.CString(lib)
	defer C.free(unsafe.Pointer(p))
	if rc := C.ks_load_api(p, ortAPIVersion); rc != 0 {
		return fmt.Errorf("onnxruntime C API of %s: lookup step %d failed", lib, int(rc))
	}
	ortAPI.lib = lib
	return nil
}

// addRunConfigEntry sets a run option onnxruntime_go has no method for.
// ort.RunOptions holds one field, the *OrtRunOptions, so its address is that
// field's (onnxruntime_go v1.27.0, pinned in go.mod; TestRunConfigEntry
// fails if that changes).
func addRunConfigEntry(ro *ort.RunOptions, key, value string) error {
	if ro == nil {
		return errors.New("run options: nil")
	}
	ptr := runOptionsPointer(ro)
	if ptr == nil {
		return errors.New("run options: not initialised")
	}
	ortAPI.Lock()
	loaded := ortAPI.lib != ""
	ortAPI.Unlock()
	if !loaded {
		return errors.New("run options: the onnxruntime C API is not loaded")
	}
	k, v := C.CString(key), C.CString(value)
	defer C.free(unsafe.Pointer(k))
	defer C.free(unsafe.Pointer(v))
	msg := C.ks_add_run_config_entry(ptr, k, v, ortAPIAddRunConfigEntry, ortAPIGetErrorMessage, ortAPIReleaseStatus)
	if msg != nil {
		defer C.free(unsafe.Pointer(msg))
		return fmt.Errorf("run option %q: %s", key, C.GoString(msg))
	}
	return nil
}

// ortAPITable is the OrtApi table loadORTAPI found (nil before).
func ortAPITable() unsafe.Pointer {
	ortAPI.Lock()
	defer ortAPI.Unlock()
	return unsafe.Pointer(C.ks_api_table())
}

// mallocTrim hands the C heap's free pages back to the system (glibc only;
// a no-op elsewhere).
func mallocTrim() { C.ks_malloc_trim() }
