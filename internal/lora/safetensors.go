package lora

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/x448/float16"
)

// MaxHeaderBytes bounds a safetensors JSON header. Real LoRA files have a
// few hundred kilobytes of header at most; the bound keeps a hostile
// length prefix from making the parser allocate.
const MaxHeaderBytes = 16 << 20

// DType is a tensor element type this package reads.
type DType string

// The element types accepted in a LoRA file. Quantised or integer types
// are refused by name (a LoRA is a float adapter).
const (
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
)

func (d DType) size() int {
	switch d {
	case F32:
		return 4
	case F16, BF16:
		return 2
	}
	return 0
}

// Tensor is one entry of a safetensors file. Its bytes alias the file's
// buffer.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	data  []byte
}

// Len is the number of elements.
func (t *Tensor) Len() int { return len(t.data) / t.DType.size() }

// Float32 converts the tensor to float32, refusing NaN and infinities (one
// such value would poison every image the adapter touches).
func (t *Tensor) Float32() ([]float32, error) {
	n := t.Len()
	out := make([]float32, n)
	switch t.DType {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.data[4*i:]))
		}
	case F16:
		for i := range out {
			out[i] = float16.Frombits(binary.LittleEndian.Uint16(t.data[2*i:])).Float32()
		}
	case BF16:
		for i := range out {
			out[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(t.data[2*i:])) << 16)
		}
	}
	for i, v := range out {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, &KeyError{Key: t.Name, Err: fmt.Errorf("%w: element %d is %v", ErrValue, i, v)}
		}
	}
	return out, nil
}

// File is a parsed safetensors file.
type File struct {
	Tensors  map[string]*Tensor
	Metadata map[string]string
}

// Keys returns the tensor names in sorted order (the order errors are
// reported in, so that "the first offending key" is well defined).
func (f *File) Keys() []string {
	keys := make([]string, 0, len(f.Tensors))
	for k := range f.Tensors {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

type headerEntry struct {
	DType       string  `json:"dtype"`
	Shape       []int64 `json:"shape"`
	DataOffsets []int64 `json:"data_offsets"`
}

// ParseSafetensors reads a safetensors file held in data. It trusts
// nothing: the header length is bounded by MaxHeaderBytes and by the
// file, duplicate names are refused, every tensor must be F32, F16 or
// BF16 with a byte range that matches its shape, and the ranges must
// cover the data section exactly, without overlaps or holes (the format's
// own rule). The tensors alias data.
func ParseSafetensors(data []byte) (*File, error) {
	if len(data) < 8 {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the 8-byte header length", ErrFormat, len(data))
	}
	n := binary.LittleEndian.Uint64(data)
	if n > MaxHeaderBytes {
		return nil, fmt.Errorf("%w: header of %d bytes exceeds %d", ErrFormat, n, MaxHeaderBytes)
	}
	if n > uint64(len(data)-8) {
		return nil, fmt.Errorf("%w: header of %d bytes runs past the end of a %d-byte file", ErrFormat, n, len(data))
	}
	header := data[8 : 8+n]
	body := data[8+n:]
	if len(bytes.TrimSpace(header)) == 0 || bytes.TrimSpace(header)[0] != '{' {
		return nil, fmt.Errorf("%w: header is not a JSON object", ErrFormat)
	}
	entries, meta, err := decodeHeader(header)
	if err != nil {
		return nil, err
	}
	f := &File{Tensors: make(map[string]*Tensor, len(entries)), Metadata: meta}
	type span struct {
		begin, end int64
		name       string
	}
	spans := make([]span, 0, len(entries))
	for _, name := range sortedKeys(entries) {
		e := entries[name]
		dt := DType(e.DType)
		if dt.size() == 0 {
			return nil, &KeyError{Key: name, Err: fmt.Errorf("%w: dtype %q (want F32, F16 or BF16)", ErrFormat, e.DType)}
		}
		if len(e.DataOffsets) != 2 {
			return nil, &KeyError{Key: name, Err: fmt.Errorf("%w: data_offsets must have 2 entries", ErrFormat)}
		}
		begin, end := e.DataOffsets[0], e.DataOffsets[1]
		if begin < 0 || end < begin || end > int64(len(body)) {
			return nil, &KeyError{Key: name, Err: fmt.Errorf("%w: data_offsets [%d, %d] outside the %d-byte data section", ErrFormat, begin, end, len(body))}
		}
		elems := int64(1)
		shape := make([]int, len(e.Shape))
		for i, d := range e.Shape {
			if d < 0 || (d > 0 && elems > math.MaxInt32/d) {
				return nil, &KeyError{Key: name, Err: fmt.Errorf("%w: shape %v", ErrFormat, e.Shape)}
			}
			elems *= d
			shape[i] = int(d)
		}
		if want := elems * int64(dt.size()); end-begin != want {
			return nil, &KeyError{Key: name, Err: fmt.Errorf("%w: %d bytes for %s %v, want %d", ErrFormat, end-begin, dt, e.Shape, want)}
		}
		f.Tensors[name] = &Tensor{Name: name, DType: dt, Shape: shape, data: body[begin:end]}
		spans = append(spans, span{begin, end, name})
	}
	slices.SortFunc(spans, func(a, b span) int {
		if a.begin != b.begin {
			return int(a.begin - b.begin)
		}
		return int(a.end - b.end)
	})
	var at int64
	for _, s := range spans {
		switch {
		case s.begin < at:
			return nil, &KeyError{Key: s.name, Err: fmt.Errorf("%w: data overlaps the previous tensor", ErrFormat)}
		case s.begin > at:
			return nil, &KeyError{Key: s.name, Err: fmt.Errorf("%w: %d unindexed bytes before this tensor", ErrFormat, s.begin-at)}
		}
		at = s.end
	}
	if at != int64(len(body)) {
		return nil, fmt.Errorf("%w: %d bytes after the last tensor", ErrFormat, int64(len(body))-at)
	}
	return f, nil
}

// decodeHeader walks the header object token by token so that duplicate
// names are seen (a map decode would keep the last one silently).
func decodeHeader(header []byte) (map[string]headerEntry, map[string]string, error) {
	dec := json.NewDecoder(bytes.NewReader(header))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil {
		return nil, nil, fmt.Errorf("%w: header: %w", ErrFormat, err)
	}
	entries := map[string]headerEntry{}
	var meta map[string]string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, fmt.Errorf("%w: header: %w", ErrFormat, err)
		}
		name, _ := tok.(string)
		if name == "__metadata__" {
			if meta != nil {
				return nil, nil, fmt.Errorf("%w: __metadata__ appears twice", ErrFormat)
			}
			if err := dec.Decode(&meta); err != nil {
				return nil, nil, fmt.Errorf("%w: __metadata__ must map strings to strings: %w", ErrFormat, err)
			}
			if meta == nil {
				meta = map[string]string{}
			}
			continue
		}
		if _, dup := entries[name]; dup {
			return nil, nil, &KeyError{Key: name, Err: fmt.Errorf("%w: tensor name appears twice", ErrFormat)}
		}
		var e headerEntry
		if err := dec.Decode(&e); err != nil {
			return nil, nil, &KeyError{Key: name, Err: fmt.Errorf("%w: %w", ErrFormat, err)}
		}
		entries[name] = e
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, fmt.Errorf("%w: header: %w", ErrFormat, err)
	}
	if rest := strings.TrimSpace(string(header[dec.InputOffset():])); rest != "" {
		return nil, nil, fmt.Errorf("%w: trailing bytes after the header object", ErrFormat)
	}
	return entries, meta, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
