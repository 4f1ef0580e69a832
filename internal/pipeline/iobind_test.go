package pipeline

import (
	"bytes"
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unsafe"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/lora"
	"github.com/kleinserve/kleinserve/internal/sampler"
	"github.com/kleinserve/kleinserve/internal/testenv"
)

// TestOrtAPIIndices checks every OrtApi index this package calls against
// the onnxruntime_c_api.h that onnxruntime_go ships: the members of struct
// OrtApi, in order (each ORT_API2_STATUS, ORT_API_T, ORT_CLASS_RELEASE or
// plain function pointer is one).
func TestOrtAPIIndices(t *testing.T) {
	goTool := testenv.RequireTool(t, "go")
	out, err := exec.Command(goTool, "list", "-m", "-f", "{{.Dir}}", "github.com/yalue/onnxruntime_go").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	src, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "onnxruntime_c_api.h"))
	if err != nil {
		t.Fatal(err)
	}
	members := ortAPIMembers(t, string(src))
	if len(members) < 300 {
		t.Fatalf("found %d OrtApi members: the header was not read right", len(members))
	}
	index := map[string]int{}
	for i, m := range members {
		index[m] = i
	}
	for name, got := range map[string]int{
		"GetErrorMessage": ortAPIGetErrorMessage, "ReleaseStatus": ortAPIReleaseStatus,
		"AddRunConfigEntry": ortAPIAddRunConfigEntry, "SessionGetInputCount": ortAPISessionGetInputCount,
		"CreateTensorAsOrtValue": ortAPICreateTensorAsOrtValue, "GetTensorMutableData": ortAPIGetTensorMutableData,
		"CreateMemoryInfo": ortAPICreateMemoryInfo, "ReleaseMemoryInfo": ortAPIReleaseMemoryInfo,
		"ReleaseValue": ortAPIReleaseValue, "CreateAllocator": ortAPICreateAllocator,
		"ReleaseAllocator": ortAPIReleaseAllocator, "RunWithBinding": ortAPIRunWithBinding,
		"CreateIoBinding": ortAPICreateIoBinding, "ReleaseIoBinding": ortAPIReleaseIoBinding,
		"BindInput": ortAPIBindInput, "BindOutput": ortAPIBindOutput,
		"SynchronizeBoundInputs": ortAPISynchronizeBoundInputs, "SynchronizeBoundOutputs": ortAPISynchronizeBoundOuts,
	} {
		want, ok := index[name]
		if !ok {
			t.Errorf("%s: not an OrtApi member", name)
		} else if got != want {
			t.Errorf("%s: index %d, the header has it at %d", name, got, want)
		}
	}
}

// ortAPIMembers lists struct OrtApi's member names in order.
func ortAPIMembers(t *testing.T, src string) []string {
	t.Helper()
	src = regexp.MustCompile(`(?s)/\*.*?\*/`).ReplaceAllString(src, "")
	src = regexp.MustCompile(`//[^\n]*`).ReplaceAllString(src, "")
	start := strings.Index(src, "struct OrtApi {")
	if start < 0 {
		t.Fatal("no struct OrtApi in the header")
	}
	body, depth := "", 0
	for i := start + len("struct OrtApi "); i < len(src); i++ {
		switch src[i] {
		case '{':
			depth++
		case '}':
			depth--
		}
		if depth == 0 {
			body = src[start+len("struct OrtApi {") : i]
			break
		}
	}
	status := regexp.MustCompile(`^ORT_API2_STATUS\(\s*(\w+)`)
	typed := regexp.MustCompile(`^ORT_API_T\([^,]+,\s*(\w+)`)
	release := regexp.MustCompile(`^ORT_CLASS_RELEASE\(\s*(\w+)`)
	pointer := regexp.MustCompile(`ORT_API_CALL\s*\*\s*(\w+)\s*\)`)
	var names []string
	for _, decl := range strings.Split(body, ";") {
		decl = strings.TrimSpace(decl)
		if decl == "" {
			continue
		}
		switch {
		case status.MatchString(decl):
			names = append(names, status.FindStringSubmatch(decl)[1])
		case typed.MatchString(decl):
			names = append(names, typed.FindStringSubmatch(decl)[1])
		case release.MatchString(decl):
			names = append(names, "Release"+release.FindStringSubmatch(decl)[1])
		case pointer.MatchString(decl):
			names = append(names, pointer.FindStringSubmatch(decl)[1])
		default:
			t.Fatalf("an OrtApi member of no known form: %.80q", decl)
		}
	}
	return names
}

// ditFeeds are transformer inputs of the tiny model for 2 rows of a 4x6
// grid: seeded values, zero LoRA pairs (lora_active false).
func ditFeeds(t *testing.T, e *Engine) (inputs map[string]ort.Value, pred *floatTensor) {
	t.Helper()
	const rows, h, w = 2, 4, 6
	S, L, J := int64(h*w), int64(e.man.Text.MaxLength), int64(e.man.Text.JointAttentionDim)
	ft := e.dit.floatT
	hidden, err := newFloatTensor(ft, rows, S, sampler.PackedChannels)
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := newFloatTensor(ft, rows, L, J)
	if err != nil {
		t.Fatal(err)
	}
	if pred, err = newFloatTensor(ft, rows, S, sampler.PackedChannels); err != nil {
		t.Fatal(err)
	}
	fill := func(t *floatTensor, seed uint32) {
		v := make([]float32, t.len())
		x := seed
		for i := range v {
			x = x*1664525 + 1013904223
			v[i] = float32(int32(x>>8)%2000) / 1000
		}
		t.write(0, v)
	}
	fill(hidden, 1)
	fill(ctx, 2)
	ts, err := ort.NewTensor(ort.NewShape(rows), []float32{0.75, 0.25})
	if err != nil {
		t.Fatal(err)
	}
	imgIDs, err := ort.NewTensor(ort.NewShape(S, 4), sampler.ImageIDs(0, h, w))
	if err != nil {
		t.Fatal(err)
	}
	txtIDs, err := ort.NewTensor(ort.NewShape(L, 4), sampler.TextIDs(int(L)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = destroyAll(hidden, ctx, pred, ts, imgIDs, txtIDs) })
	inputs = map[string]ort.Value{ditLatentsInput: hidden.value(), ditTextInput: ctx.value(), ditTimestepInput: ts,
		"img_ids": imgIDs, "txt_ids": txtIDs}
	if e.lora.zero != nil {
		e.lora.zero.addTo(inputs)
	}
	return inputs, pred
}

// TestBoundIO runs the tiny transformer three ways on the same inputs: Run
// on host tensors, RunWithBinding on the host tensors, and RunWithBinding
// on device tensors of the session's CPU allocator filled by copies (the
// GPU's code path). All three give the same bits; and leaving out the
// latents' copy changes the result, so the staged run reads what was
// copied, not the host tensors.
func TestBoundIO(t *testing.T) {
	e := openTiny(t)
	inputs, pred := ditFeeds(t, e)
	outputs := map[string]ort.Value{"noise_pred": pred.value()}
	var clock time.Duration
	call, err := e.dit.bind(&clock, inputs, outputs)
	if err != nil {
		t.Fatal(err)
	}
	if err := call.run(); err != nil {
		t.Fatal(err)
	}
	want := make([]float32, pred.len())
	pred.read(0, want)
	for _, c := range []struct {
		name  string
		place ioPlacement
	}{{"host tensors bound", ioPlacement{}}, {"device tensors (CPU allocator) bound", stagedOnHost}} {
		t.Run(c.name, func(t *testing.T) {
			pred.write(0, make([]float32, pred.len()))
			b, err := e.dit.bindIO(&clock, c.place, inputs, outputs)
			if err != nil {
				t.Fatal(err)
			}
			defer b.destroy()
			if c.place.staged() {
				for _, v := range b.values {
					if v.dev == nil || v.devData == v.host {
						t.Fatalf("%s: bound to the host tensor", v.name)
					}
				}
			}
			if err := b.uploadExcept(); err != nil {
				t.Fatal(err)
			}
			if err := b.run(); err != nil {
				t.Fatal(err)
			}
			got := make([]float32, pred.len())
			pred.read(0, got)
			if i := firstBitDifference(got, want); i >= 0 {
				t.Fatalf("value %d: %v, Run gives %v", i, got[i], want[i])
			}
			if !c.place.staged() {
				return
			}
			// The latents on the device become zeros; the host ones stay.
			zeros, err := newFloatTensor(e.dit.floatT, inputs[ditLatentsInput].GetShape()...)
			if err != nil {
				t.Fatal(err)
			}
			defer zeros.Destroy()
			hidden := b.values[ditLatentsInput]
			if err := hostCopy(hidden.devData, valueData(t, b, zeros.value()), hidden.bytes); err != nil {
				t.Fatal(err)
			}
			if err := b.run(); err != nil {
				t.Fatal(err)
			}
			pred.read(0, got)
			if firstBitDifference(got, want) < 0 {
				t.Fatal("the staged run ignored its device latents")
			}
		})
	}
}

func valueData(t *testing.T, b *boundIO, v ort.Value) unsafe.Pointer {
	t.Helper()
	p, err := b.o.data(valuePointer(v))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// firstBitDifference is the first index where a and b differ in bits (-1:
// none).
func firstBitDifference(a, b []float32) int {
	if len(a) != len(b) {
		return 0
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	return -1
}

// ioRun is one request's outcome: its final latents and image bytes.
type ioRun struct {
	final  []float32
	images [][]byte
}

// ioRequests are every reference case of testdata/reference as requests:
// text to image (CFG and not, several images, 50 steps), edits with one to
// four reference images, and LoRAs (with references too).
func ioRequests(t *testing.T) (names []string, reqs []engine.Request) {
	t.Helper()
	for _, c := range loadRefIndex(t).Cases {
		names = append(names, c.Name)
		reqs = append(reqs, engine.Request{
			Prompt: c.Prompt, NegativePrompt: c.NegativePrompt, GuidanceScale: c.GuidanceScale,
			Steps: c.Steps, Width: c.Width, Height: c.Height, NumImages: max(1, c.NumImages), Seed: c.Seed,
			Acceleration: engine.AccelerationNone, OutputFormat: engine.FormatPNG,
			InitialNoise: refF32(t, c.Arrays["initial_noise"]),
		})
	}
	idx, refs := loadEditIndex(t)
	for _, c := range idx.Cases {
		names = append(names, "edit/"+c.Name)
		reqs = append(reqs, editRequest(t, c, refs))
	}
	for _, c := range loadLoRAIndex(t) {
		names = append(names, "lora/"+c.Name)
		reqs = append(reqs, loraRequest(t, c, true, true))
	}
	return names, reqs
}

// TestIOBindingBitIdentical runs every reference case with io binding off,
// on (the host tensors bound, as on the CPU) and staged (device tensors
// filled by copies, the GPU's code path on host memory): the final latents
// and the PNG bytes are the same bits in all three.
func TestIOBindingBitIdentical(t *testing.T) {
	names, reqs := ioRequests(t)
	store, err := lora.NewStore(lora.StoreConfig{Dir: loraReferenceDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	runAll := func(mode IOBinding, place *ioPlacement) []ioRun {
		e := openTinyWith(t, func(c *Config) { c.LoRA, c.IOBinding = store, mode })
		if place != nil {
			e.ioPlace = *place
		}
		out := make([]ioRun, len(reqs))
		for i, req := range reqs {
			e.debugFinalLatents = func(x []float32) { out[i].final = append([]float32(nil), x...) }
			res, err := e.Generate(context.Background(), req, nil)
			if err != nil {
				t.Fatalf("%s: %v", names[i], err)
			}
			for _, img := range res.Images {
				out[i].images = append(out[i].images, img.Data)
			}
		}
		return out
	}
	off := runAll(IOBindingOff, nil)
	staged := stagedOnHost
	for _, mode := range []struct {
		name string
		runs []ioRun
	}{{"on", runAll(IOBindingOn, nil)}, {"staged", runAll(IOBindingOn, &staged)}} {
		for i := range reqs {
			got, want := mode.runs[i], off[i]
			if len(want.final) == 0 {
				t.Fatalf("%s: no final latents", names[i])
			}
			if j := firstBitDifference(got.final, want.final); j >= 0 {
				t.Errorf("%s %s: final latent %d is %v, %v without io binding", mode.name, names[i], j, got.final[j], want.final[j])
			}
			if len(got.images) != len(want.images) {
				t.Fatalf("%s %s: %d images, %d without", mode.name, names[i], len(got.images), len(want.images))
			}
			for k := range want.images {
				if !bytes.Equal(got.images[k], want.images[k]) {
					t.Errorf("%s %s: image %d differs", mode.name, names[i], k)
				}
			}
		}
		t.Logf("io binding %s: %d cases, final latents and PNG bytes identical to io binding off", mode.name, len(reqs))
	}
}

// TestIOBindingOpenChecks: an unknown mode is refused at Open.
func TestIOBindingOpenChecks(t *testing.T) {
	lib, err := findLibrary("../../.ort/lib/libonnxruntime.so")
	if err != nil {
		t.Skipf("ONNX Runtime library not installed: %v", err)
	}
	_, err = Open(context.Background(), Config{ModelDir: tinyModelDir, LibraryPath: lib, IOBinding: IOBinding(7)})
	if err == nil || !strings.Contains(err.Error(), "unknown io binding 7") {
		t.Fatalf("Open with IOBinding(7): %v", err)
	}
}
