package pipeline

import (
	"fmt"
	"slices"
	"time"
	"unsafe"

	ort "github.com/yalue/onnxruntime_go"
)

// IOBinding is how the transformer's inputs and outputs reach its graph in
// the denoising loop (docs/iobinding.md).
type IOBinding int

const (
	// IOBindingOn (the default) binds them once per call layout with ONNX
	// Runtime's IoBinding. On a GPU provider every input and output lives in
	// memory of the session's device allocator: the text embeddings,
	// position ids and LoRA inputs are copied there when they change (once
	// per request, or when the rows of a shared call change), the latents
	// and timesteps before each call, and only the velocity comes back
	// after it. On the CPU the bound memory is the host tensors themselves,
	// so nothing is copied. Both give the same bits as IOBindingOff.
	IOBindingOn IOBinding = iota
	// IOBindingOff runs the transformer with Run on host tensors: on a GPU,
	// ONNX Runtime copies every input to the device and the output back on
	// every call.
	IOBindingOff
)

// ParseIOBinding reads "on" or "off" (a command's flag).
func ParseIOBinding(s string) (IOBinding, error) {
	for _, b := range []IOBinding{IOBindingOn, IOBindingOff} {
		if s == b.String() {
			return b, nil
		}
	}
	return 0, fmt.Errorf("io binding %q: want on or off", s)
}

func (b IOBinding) String() string {
	switch b {
	case IOBindingOn:
		return "on"
	case IOBindingOff:
		return "off"
	}
	return fmt.Sprintf("IOBinding(%d)", int(b))
}

// ioPlacement is where bound values live and how bytes get there.
type ioPlacement struct {
	// memory is ONNX Runtime's name of the device memory ("Cuda", "Cpu");
	// empty: the host tensors are bound as they are.
	memory string
	device int
	copy   func(dst, src unsafe.Pointer, n uintptr) error
}

func (p ioPlacement) staged() bool { return p.memory != "" }

// placementFor is the placement of a provider's bound values: device memory
// of the CUDA allocator (TensorRT runs on CUDA's memory too), or the host
// tensors on the CPU.
func placementFor(provider string, deviceID int) ioPlacement {
	if onGPU(provider) {
		return ioPlacement{memory: "Cuda", device: deviceID, copy: cudaCopy}
	}
	return ioPlacement{}
}

// stagedOnHost is the GPU placement's code path with host memory: values of
// the session's CPU allocator, filled by copies, so that the CPU tests cover
// what a GPU runs (tests set it).
var stagedOnHost = ioPlacement{memory: "Cpu", copy: hostCopy}

// boundIO is a graph's inputs and outputs bound once (ONNX Runtime's
// IoBinding): a call is then copies of what changed and one RunWithBinding.
type boundIO struct {
	g       *graphSession
	o       ortCall
	place   ioPlacement
	session unsafe.Pointer // OrtSession*
	binding unsafe.Pointer // OrtIoBinding*
	memInfo unsafe.Pointer // OrtMemoryInfo* of the device (staged only)
	alloc   unsafe.Pointer // the session's OrtAllocator* for it (staged only)
	values  map[string]*boundValue
	inputs  []*boundValue
	outputs []*boundValue
	clock   *time.Duration // accumulates time in ONNX Runtime and in copies
	// final marks the graph's last Run of a request (memory.go).
	final bool
}

// boundValue is one bound tensor: its host data and, when staged, the
// device tensor that is bound instead.
type boundValue struct {
	name    string
	host    unsafe.Pointer // the host tensor's data
	bytes   uintptr
	dev     unsafe.Pointer // OrtValue* allocated here; nil: the host tensor is bound
	devData unsafe.Pointer
}

// onnxElementBytes is the size of the ONNX element types bound here
// (TensorProto.DataType values, as ONNX Runtime numbers them too).
var onnxElementBytes = map[int]uintptr{1: 4, 7: 8, 9: 1, 10: 2, 16: 2}

// sessionPointer is the OrtSession* of a session: onnxruntime_go v1.27's
// DynamicAdvancedSession holds one *AdvancedSession whose first field it is
// (go.mod pins the version; bindIO checks the pointer with a C API call).
func sessionPointer(s *ort.DynamicAdvancedSession) unsafe.Pointer {
	adv := *(*unsafe.Pointer)(unsafe.Pointer(s))
	return *(*unsafe.Pointer)(adv)
}

// valuePointer is the OrtValue* of a value (GetInternals' struct holds only
// it in onnxruntime_go v1.27).
func valuePointer(v ort.Value) unsafe.Pointer {
	return *(*unsafe.Pointer)(unsafe.Pointer(v.GetInternals()))
}

// runOptionsPointer is the OrtRunOptions* of run options (nil: none).
func runOptionsPointer(ro *ort.RunOptions) unsafe.Pointer {
	if ro == nil {
		return nil
	}
	return *(*unsafe.Pointer)(unsafe.Pointer(ro))
}

// bindIO binds every input and output of the graph: the host tensors
// themselves, or device tensors of the same type and shape when the
// placement is staged (then upload and run copy the bytes).
func (g *graphSession) bindIO(clock *time.Duration, place ioPlacement, inputs, outputs map[string]ort.Value) (_ *boundIO, err error) {
	o, err := newORTCall()
	if err != nil {
		return nil, fmt.Errorf("graph %s: io binding: %w", g.name, err)
	}
	b := &boundIO{g: g, o: o, place: place, session: sessionPointer(g.sess), clock: clock, values: map[string]*boundValue{}}
	defer func() {
		if err != nil {
			b.destroy()
			err = fmt.Errorf("graph %s: io binding: %w", g.name, err)
		}
	}()
	if b.binding, err = o.pp("CreateIoBinding", ortAPICreateIoBinding, b.session); err != nil {
		return nil, err
	}
	if place.staged() {
		if b.memInfo, err = o.memoryInfo(place.memory, place.device); err != nil {
			return nil, err
		}
		if b.alloc, err = o.allocator(b.session, b.memInfo); err != nil {
			return nil, err
		}
	}
	for _, side := range []struct {
		names  []string
		values map[string]ort.Value
		fn     int
		dst    *[]*boundValue
	}{{g.inputs, inputs, ortAPIBindInput, &b.inputs}, {g.outputs, outputs, ortAPIBindOutput, &b.outputs}} {
		for _, name := range side.names {
			v, ok := side.values[name]
			if !ok {
				return nil, fmt.Errorf("%q not provided", name)
			}
			bv, bound, err := b.value(name, v)
			if err != nil {
				return nil, err
			}
			if err := o.bind(side.fn, b.binding, name, bound); err != nil {
				return nil, err
			}
			b.values[name] = bv
			*side.dst = append(*side.dst, bv)
		}
	}
	return b, nil
}

// value prepares one tensor for binding and returns the OrtValue to bind.
func (b *boundIO) value(name string, v ort.Value) (*boundValue, unsafe.Pointer, error) {
	host := valuePointer(v)
	size, ok := onnxElementBytes[int(v.DataType())]
	if !ok {
		return nil, nil, fmt.Errorf("%s: element type %d not bound here", name, int(v.DataType()))
	}
	data, err := b.o.data(host)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	shape := v.GetShape()
	bv := &boundValue{name: name, host: data, bytes: size * uintptr(shape.FlattenedSize())}
	if !b.place.staged() {
		return bv, host, nil
	}
	if bv.dev, err = b.o.tensor(b.alloc, shape, int(v.DataType())); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	if bv.devData, err = b.o.data(bv.dev); err != nil {
		b.o.release(ortAPIReleaseValue, bv.dev)
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	return bv, bv.dev, nil
}

// upload copies the named inputs' host bytes to their device tensors (a
// no-op when the host tensors are bound).
func (b *boundIO) upload(names ...string) error {
	if !b.place.staged() {
		return nil
	}
	start := time.Now()
	defer func() { *b.clock += time.Since(start) }()
	for _, n := range names {
		v, ok := b.values[n]
		if !ok {
			return fmt.Errorf("graph %s: upload: no bound input %q", b.g.name, n)
		}
		if err := b.place.copy(v.devData, v.host, v.bytes); err != nil {
			return fmt.Errorf("graph %s: upload %s: %w", b.g.name, n, err)
		}
	}
	return nil
}

// uploadExcept uploads every input but the named ones.
func (b *boundIO) uploadExcept(skip ...string) error {
	var names []string
	for _, v := range b.inputs {
		if !slices.Contains(skip, v.name) {
			names = append(names, v.name)
		}
	}
	return b.upload(names...)
}

// run runs the graph on the bound values and, when staged, brings the
// outputs back to their host tensors. The copies ride on the CUDA
// runtime's default stream and ONNX Runtime computes on its own, so the
// binding's synchronisation orders them: the inputs are on the device
// before the Run starts, the outputs complete before they are read.
func (b *boundIO) run() error {
	start := time.Now()
	defer func() { *b.clock += time.Since(start) }()
	o := b.o
	if b.place.staged() {
		if err := o.p("SynchronizeBoundInputs", ortAPISynchronizeBoundInputs, b.binding); err != nil {
			return fmt.Errorf("graph %s: %w", b.g.name, err)
		}
	}
	err := b.g.runShrinking(b.final, func(ro *ort.RunOptions) error {
		return o.ppp("RunWithBinding", ortAPIRunWithBinding, b.session, runOptionsPointer(ro), b.binding)
	})
	if err != nil {
		return fmt.Errorf("graph %s: %w", b.g.name, err)
	}
	if !b.place.staged() {
		return nil
	}
	if err := o.p("SynchronizeBoundOutputs", ortAPISynchronizeBoundOuts, b.binding); err != nil {
		return fmt.Errorf("graph %s: %w", b.g.name, err)
	}
	for _, v := range b.outputs {
		if err := b.place.copy(v.host, v.devData, v.bytes); err != nil {
			return fmt.Errorf("graph %s: download %s: %w", b.g.name, v.name, err)
		}
	}
	return nil
}

// destroy releases the binding and the device tensors (never the host
// ones: their owner does).
func (b *boundIO) destroy() {
	if b == nil {
		return
	}
	o := b.o
	o.release(ortAPIReleaseIoBinding, b.binding)
	for _, v := range b.values {
		o.release(ortAPIReleaseValue, v.dev) // before the allocator they came from
	}
	o.release(ortAPIReleaseAllocator, b.alloc)
	o.release(ortAPIReleaseMemoryInfo, b.memInfo)
	b.binding, b.alloc, b.memInfo, b.values, b.inputs, b.outputs = nil, nil, nil, nil, nil, nil
}

// checkIOBinding checks, at start, what binding relies on: the OrtApi
// table and the session pointer read out of onnxruntime_go's struct, so
// that a mismatch fails Open rather than a request.
func (g *graphSession) checkIOBinding() error {
	o, err := newORTCall()
	if err == nil {
		var n int
		n, err = o.inputCount(sessionPointer(g.sess))
		if err == nil && n != len(g.inputs) {
			err = fmt.Errorf("the session pointer read from onnxruntime_go is not the session (%d inputs, want %d)", n, len(g.inputs))
		}
	}
	if err != nil {
		return fmt.Errorf("graph %s: io binding: %w (Config.IOBinding = IOBindingOff runs without it)", g.name, err)
	}
	return nil
}
