// Package onnxpb reads the few fields of ONNX's protobuf messages
// (onnx.proto) that kleinserve needs, with protowire instead of generated
// code: the server checks a model's declared interface and the GPU check
// reads its node names, neither of which needs the weights decoded.
package onnxpb

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of onnx.proto.
const (
	ModelGraph      = 7  // ModelProto.graph
	GraphNode       = 1  // GraphProto.node
	GraphInput      = 11 // GraphProto.input
	GraphOutput     = 12 // GraphProto.output
	NodeName        = 3  // NodeProto.name
	NodeOpType      = 4  // NodeProto.op_type
	NodeAttribute   = 5  // NodeProto.attribute
	AttributeName   = 1  // AttributeProto.name
	AttributeGraph  = 6  // AttributeProto.g
	AttributeGraphs = 11 // AttributeProto.graphs
	ValueName       = 1  // ValueInfoProto.name
	ValueType       = 2  // ValueInfoProto.type
	TypeTensor      = 1  // TypeProto.tensor_type
	TensorElem      = 1  // TypeProto.Tensor.elem_type
	TensorShape     = 2  // TypeProto.Tensor.shape
	ShapeDim        = 1  // TensorShapeProto.dim
	DimValue        = 1  // Dimension.dim_value
	DimParam        = 2  // Dimension.dim_param
)

// EachField calls fn for every field of an in-memory message. val holds
// the payload of length-delimited fields, u the value of varint fields.
func EachField(b []byte, fn func(num protowire.Number, typ protowire.Type, val []byte, u uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("bad protobuf tag: %w", protowire.ParseError(n))
		}
		b = b[n:]
		var val []byte
		var u uint64
		switch typ {
		case protowire.VarintType:
			u, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			val, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("bad protobuf field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(num, typ, val, u); err != nil {
			return err
		}
	}
	return nil
}
