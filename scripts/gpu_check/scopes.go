package main

import (
	"fmt"
	"os"

	"github.com/kleinserve/kleinserve/internal/onnxpb"
	"google.golang.org/protobuf/encoding/protowire"
)

// MainScope names a file's top-level graph; a subgraph (a branch of an If,
// the body of a Loop or Scan) is named by the node that holds it and the
// attribute, "If lora_or_base.then_branch", nested ones joined by " > ".
const MainScope = "main graph"

// AddedScope collects placed nodes whose names are in no graph of the file:
// nodes ONNX Runtime's optimisations create (fusions, copies between
// devices).
const AddedScope = "added by ONNX Runtime"

// severalScopes collects placed nodes whose name is used in more than one
// graph of the file, so that it does not say which.
const severalScopes = "name in several graphs"

// graphScopes reads an ONNX file's node names and the graph each belongs
// to: the main graph and every subgraph, at any depth. ONNX Runtime logs
// the nodes of all of them in one list, so this is what tells a branch's
// nodes from the main graph's. order lists the scopes as they appear.
func graphScopes(path string) (scopeOf map[string]string, order []string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	scopeOf = map[string]string{}
	var graph []byte
	err = onnxpb.EachField(b, func(num protowire.Number, typ protowire.Type, val []byte, _ uint64) error {
		if num == onnxpb.ModelGraph && typ == protowire.BytesType {
			graph = val
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if graph == nil {
		return nil, nil, fmt.Errorf("%s: no graph in the model", path)
	}
	if err := walkGraph(graph, MainScope, scopeOf, &order); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return scopeOf, order, nil
}

func walkGraph(graph []byte, scope string, scopeOf map[string]string, order *[]string) error {
	*order = append(*order, scope)
	return onnxpb.EachField(graph, func(num protowire.Number, typ protowire.Type, node []byte, _ uint64) error {
		if num != onnxpb.GraphNode || typ != protowire.BytesType {
			return nil
		}
		var name, op string
		type sub struct {
			attr  string
			graph []byte
		}
		var subs []sub
		err := onnxpb.EachField(node, func(num protowire.Number, typ protowire.Type, val []byte, _ uint64) error {
			switch {
			case num == onnxpb.NodeName && typ == protowire.BytesType:
				name = string(val)
			case num == onnxpb.NodeOpType && typ == protowire.BytesType:
				op = string(val)
			case num == onnxpb.NodeAttribute && typ == protowire.BytesType:
				var attr string
				var gs [][]byte
				err := onnxpb.EachField(val, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
					switch {
					case num == onnxpb.AttributeName && typ == protowire.BytesType:
						attr = string(v)
					case (num == onnxpb.AttributeGraph || num == onnxpb.AttributeGraphs) && typ == protowire.BytesType:
						gs = append(gs, v)
					}
					return nil
				})
				for i, g := range gs {
					label := attr
					if len(gs) > 1 { // a GRAPHS attribute
						label = fmt.Sprintf("%s[%d]", attr, i)
					}
					subs = append(subs, sub{label, g})
				}
				return err
			}
			return nil
		})
		if err != nil {
			return err
		}
		if prev, seen := scopeOf[name]; seen && prev != scope {
			scopeOf[name] = severalScopes
		} else {
			scopeOf[name] = scope
		}
		for _, s := range subs {
			label := fmt.Sprintf("%s %s.%s", op, name, s.attr)
			if scope != MainScope {
				label = scope + " > " + label
			}
			if err := walkGraph(s.graph, label, scopeOf, order); err != nil {
				return err
			}
		}
		return nil
	})
}
