package lora

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

func TestParseSafetensorsRejects(t *testing.T) {
	body8 := make([]byte, 8)
	for _, tc := range []struct {
		name string
		data []byte
		key  string // the key the error must name ("" for file-level errors)
	}{
		{"shorter than the length prefix", []byte{1, 2, 3}, ""},
		{"header length past the end", binary.LittleEndian.AppendUint64(nil, 100), ""},
		{"header length over the bound", append(binary.LittleEndian.AppendUint64(nil, MaxHeaderBytes+1), make([]byte, 64)...), ""},
		{"header not an object", rawFile(`[1,2]`, nil), ""},
		{"header not JSON", rawFile(`{"a":`, nil), ""},
		{"trailing bytes after the header", rawFile(`{} x`, nil), ""},
		{"integer dtype", rawFile(`{"w":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}`, body8), "w"},
		{"fp8 dtype", rawFile(`{"w":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}}`, body8), "w"},
		{"offsets past the data", rawFile(`{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, body8), "w"},
		{"negative offset", rawFile(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}`, body8), "w"},
		{"bytes do not match the shape", rawFile(`{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, body8), "w"},
		{"overlap", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, body8), "b"},
		{"hole", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, body8), "a"},
		{"unindexed tail", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, body8), ""},
		{"duplicate name", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, body8), "a"},
		{"shape overflow", rawFile(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}`, body8), "a"},
		{"negative dim", rawFile(`{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, body8), "a"},
		{"metadata not strings", rawFile(`{"__metadata__":{"a":1}}`, nil), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSafetensors(tc.data)
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("got %v, want ErrFormat", err)
			}
			var ke *KeyError
			if tc.key != "" && (!errors.As(err, &ke) || ke.Key != tc.key) {
				t.Fatalf("error %v does not name key %q", err, tc.key)
			}
		})
	}
}

func TestParseSafetensorsReadsEveryDType(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	vals := randVals(rng, 12)
	data := encode(t, map[string]st{
		"f32": {F32, []int{3, 4}, vals}, "f16": {F16, []int{12}, vals}, "bf16": {BF16, []int{2, 6}, vals},
		"scalar": {F32, []int{}, []float32{2.5}},
	}, map[string]string{"format": "pt"})
	f, err := ParseSafetensors(data)
	if err != nil {
		t.Fatal(err)
	}
	if f.Metadata["format"] != "pt" || len(f.Tensors) != 4 {
		t.Fatalf("metadata %v, %d tensors", f.Metadata, len(f.Tensors))
	}
	for name, tol := range map[string]float64{"f32": 0, "f16": 1e-3, "bf16": 8e-3} {
		got, err := f.Tensors[name].Float32()
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			if d := math.Abs(float64(got[i] - v)); d > tol*math.Max(1, math.Abs(float64(v))) {
				t.Fatalf("%s[%d] = %v, want %v", name, i, got[i], v)
			}
		}
	}
	if s, _ := f.Tensors["scalar"].Float32(); len(s) != 1 || s[0] != 2.5 {
		t.Fatalf("scalar: %v", s)
	}
	// A header padded with spaces (the format allows it) still parses.
	padded := rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}   `, make([]byte, 4))
	if _, err := ParseSafetensors(padded); err != nil {
		t.Fatal(err)
	}
}

func TestFloat32RefusesNaN(t *testing.T) {
	data := encode(t, map[string]st{"w": {F32, []int{2}, []float32{1, float32(math.NaN())}}}, nil)
	f, err := ParseSafetensors(data)
	if err != nil {
		t.Fatal(err)
	}
	var ke *KeyError
	if _, err := f.Tensors["w"].Float32(); !errors.Is(err, ErrValue) || !errors.As(err, &ke) || ke.Key != "w" {
		t.Fatalf("got %v", err)
	}
}

// FuzzParseSafetensors: no input makes the parser panic, and whatever it
// accepts has every tensor inside the data.
func FuzzParseSafetensors(f *testing.F) {
	f.Add(rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)))
	f.Add(rawFile(`{"__metadata__":{"k":"v"},"b":{"dtype":"BF16","shape":[2,1],"data_offsets":[0,4]}}`, make([]byte, 4)))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := ParseSafetensors(data)
		if err != nil {
			return
		}
		for _, ten := range file.Tensors {
			if _, err := ten.Float32(); err != nil && !errors.Is(err, ErrValue) {
				t.Fatal(err)
			}
		}
	})
}
