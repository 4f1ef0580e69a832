package pipeline

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/kleinserve/kleinserve/internal/onnxpb"
	"google.golang.org/protobuf/encoding/protowire"
)

// onnxValue is a graph input or output as the ONNX file declares it.
type onnxValue struct {
	Name  string
	DType string   // float32, float16, bfloat16, int64, bool, ...
	Dims  []string // a number for a fixed dimension, a name (or "?") for a dynamic one
}

// ONNX TensorProto.DataType values we name.
var onnxDTypes = map[uint64]string{
	1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64",
	9: "bool", 10: "float16", 11: "float64", 16: "bfloat16",
}

// maxValueInfoBytes bounds one declared input or output's ValueInfoProto.
const maxValueInfoBytes = 1 << 20

// readONNXInterface returns a graph's declared inputs and outputs by
// streaming through the ModelProto and skipping everything else (weights
// included), so checking a multi-gigabyte model costs a sequential read of
// its graph file and no ONNX Runtime session.
func readONNXInterface(path string) (inputs, outputs []onnxValue, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("open onnx: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<16)
	found := false
	for {
		num, typ, err := readTag(r)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		if num == onnxpb.ModelGraph && typ == protowire.BytesType {
			n, err := readVarint(r)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: graph length: %w", path, err)
			}
			inputs, outputs, err = readGraphInterface(io.LimitReader(r, int64(n)).(*io.LimitedReader))
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", path, err)
			}
			found = true
			continue
		}
		if err := skipField(r, typ); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	if !found {
		return nil, nil, fmt.Errorf("%s: no graph in model", path)
	}
	return inputs, outputs, nil
}

func readGraphInterface(lr *io.LimitedReader) (inputs, outputs []onnxValue, err error) {
	r := bufio.NewReaderSize(lr, 1<<16)
	for {
		num, typ, err := readTag(r)
		if errors.Is(err, io.EOF) {
			return inputs, outputs, nil
		}
		if err != nil {
			return nil, nil, err
		}
		if (num == onnxpb.GraphInput || num == onnxpb.GraphOutput) && typ == protowire.BytesType {
			n, err := readVarint(r)
			if err != nil {
				return nil, nil, err
			}
			if n > maxValueInfoBytes {
				return nil, nil, fmt.Errorf("value info of %d bytes", n)
			}
			buf := make([]byte, n)
			if _, err := io.ReadFull(r, buf); err != nil {
				return nil, nil, fmt.Errorf("read value info: %w", err)
			}
			v, err := parseValueInfo(buf)
			if err != nil {
				return nil, nil, err
			}
			if num == onnxpb.GraphInput {
				inputs = append(inputs, v)
			} else {
				outputs = append(outputs, v)
			}
			continue
		}
		if err := skipField(r, typ); err != nil {
			return nil, nil, err
		}
	}
}

func parseValueInfo(b []byte) (onnxValue, error) {
	var v onnxValue
	err := onnxpb.EachField(b, func(num protowire.Number, typ protowire.Type, val []byte, u uint64) error {
		switch {
		case num == onnxpb.ValueName && typ == protowire.BytesType:
			v.Name = string(val)
		case num == onnxpb.ValueType && typ == protowire.BytesType:
			return onnxpb.EachField(val, func(num protowire.Number, typ protowire.Type, tensor []byte, _ uint64) error {
				if num != onnxpb.TypeTensor || typ != protowire.BytesType {
					return nil
				}
				return onnxpb.EachField(tensor, func(num protowire.Number, typ protowire.Type, val []byte, u uint64) error {
					switch {
					case num == onnxpb.TensorElem && typ == protowire.VarintType:
						v.DType = onnxDTypes[u]
						if v.DType == "" {
							v.DType = fmt.Sprintf("onnx-type-%d", u)
						}
					case num == onnxpb.TensorShape && typ == protowire.BytesType:
						v.Dims = []string{} // a declared shape of rank 0 stays distinct from none
						return onnxpb.EachField(val, func(num protowire.Number, typ protowire.Type, dim []byte, _ uint64) error {
							if num != onnxpb.ShapeDim || typ != protowire.BytesType {
								return nil
							}
							d := "?"
							err := onnxpb.EachField(dim, func(num protowire.Number, typ protowire.Type, val []byte, u uint64) error {
								switch {
								case num == onnxpb.DimValue && typ == protowire.VarintType:
									d = fmt.Sprint(int64(u))
								case num == onnxpb.DimParam && typ == protowire.BytesType:
									d = string(val)
								}
								return nil
							})
							v.Dims = append(v.Dims, d)
							return err
						})
					}
					return nil
				})
			})
		}
		return nil
	})
	return v, err
}

func readVarint(r *bufio.Reader) (uint64, error) {
	var x uint64
	for shift := uint(0); shift < 64; shift += 7 {
		c, err := r.ReadByte()
		if err != nil {
			if shift > 0 && errors.Is(err, io.EOF) {
				return 0, io.ErrUnexpectedEOF
			}
			return 0, err
		}
		x |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return x, nil
		}
	}
	return 0, errors.New("varint overflow")
}

func readTag(r *bufio.Reader) (protowire.Number, protowire.Type, error) {
	v, err := readVarint(r)
	if err != nil {
		return 0, 0, err
	}
	num, typ := protowire.DecodeTag(v)
	if num <= 0 {
		return 0, 0, fmt.Errorf("bad protobuf field number %d", num)
	}
	return num, typ, nil
}

func skipField(r *bufio.Reader, typ protowire.Type) error {
	var n int64
	switch typ {
	case protowire.VarintType:
		_, err := readVarint(r)
		return unexpected(err)
	case protowire.Fixed32Type:
		n = 4
	case protowire.Fixed64Type:
		n = 8
	case protowire.BytesType:
		l, err := readVarint(r)
		if err != nil {
			return unexpected(err)
		}
		n = int64(l)
	default:
		return fmt.Errorf("unsupported protobuf wire type %d", typ)
	}
	for n > 0 {
		step := n
		if step > 1<<30 {
			step = 1 << 30
		}
		d, err := r.Discard(int(step))
		n -= int64(d)
		if err != nil {
			return unexpected(err)
		}
	}
	return nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// checkInterface compares a graph's declared I/O (manifest) with the file.
func checkInterface(graph string, want []TensorIO, got []onnxValue, kind string) error {
	var errs []error
	byName := map[string]onnxValue{}
	for _, g := range got {
		byName[g.Name] = g
	}
	declared := map[string]bool{}
	for _, w := range want {
		declared[w.Name] = true
		g, ok := byName[w.Name]
		if !ok {
			errs = append(errs, fmt.Errorf("%s %s %q: not in the ONNX file (it has %s)", graph, kind, w.Name, names(got)))
			continue
		}
		if g.DType != w.DType {
			errs = append(errs, fmt.Errorf("%s %s %q: dtype %s in the file, %s in the manifest", graph, kind, w.Name, g.DType, w.DType))
		}
		if g.Dims != nil && len(g.Dims) != len(w.Shape) {
			errs = append(errs, fmt.Errorf("%s %s %q: rank %d in the file, %d in the manifest", graph, kind, w.Name, len(g.Dims), len(w.Shape)))
			continue
		}
		for i, d := range w.Shape {
			if g.Dims == nil {
				break
			}
			if n, ok := d.(float64); ok && g.Dims[i] != fmt.Sprint(int64(n)) {
				errs = append(errs, fmt.Errorf("%s %s %q: dim %d is %s in the file, %v in the manifest", graph, kind, w.Name, i, g.Dims[i], int64(n)))
			}
		}
	}
	if kind == "input" {
		for _, g := range got {
			if !declared[g.Name] {
				errs = append(errs, fmt.Errorf("%s input %q: in the ONNX file but not in the manifest", graph, g.Name))
			}
		}
	}
	return errors.Join(errs...)
}

func names(vs []onnxValue) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = v.Name
	}
	return "[" + strings.Join(s, ", ") + "]"
}
