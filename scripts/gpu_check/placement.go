package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"

	ort "github.com/yalue/onnxruntime_go"
)

// sessionChildEnv makes this program (or the test binary) open sessions
// instead of running its command: ONNX Runtime logs node placement on the
// process's standard error, so the parent runs a child and reads it.
const sessionChildEnv = "GPUCHECK_SESSION_CHILD"

// graphMarker starts each graph's part of the child's log.
const graphMarker = "gpu_check: graph "

// Node is one node of a graph as ONNX Runtime placed it.
type Node struct {
	Op   string `json:"op"`
	Name string `json:"name"`
}

// Placement is where ONNX Runtime put the nodes of one graph with the CUDA
// provider first. ONNX Runtime places and lists the nodes of subgraphs (the
// branches of an If) with the main graph's, so every count here covers
// them; Scopes splits the counts by the graph of the file a node is in.
type Placement struct {
	Graph string `json:"graph"`
	CUDA  int    `json:"cuda_nodes"`
	// CPUPreferred are nodes with a CUDA kernel that ONNX Runtime keeps on
	// the CPU because they compute shapes (small int64 tensors the CPU reads
	// anyway); they are not a coverage gap.
	CPUPreferred []Node `json:"cpu_preferred"`
	// NoKernel are nodes the CUDA provider has no kernel for: they run on
	// the CPU, with copies to and from the GPU.
	NoKernel []Node `json:"no_cuda_kernel"`
	// Other are nodes on any other provider for any other reason.
	Other []Node `json:"other"`
	// Scopes are the counts per graph of the file (MainScope, then each
	// subgraph); only for files with subgraphs.
	Scopes []ScopeCount `json:"scopes,omitempty"`
	// ControlFlow are the nodes that hold subgraphs (If, Loop, Scan) and the
	// provider each runs on.
	ControlFlow []PlacedNode `json:"control_flow,omitempty"`

	nodes []PlacedNode // every placed node, in the log's order
}

// PlacedNode is a node and the execution provider ONNX Runtime gave it.
type PlacedNode struct {
	Node
	EP    string `json:"ep"`
	class nodeClass
}

type nodeClass int

const (
	onCUDA nodeClass = iota
	cpuPreferred
	noKernel
	other
)

// ScopeCount counts the placed nodes of one graph of the file.
type ScopeCount struct {
	Scope        string `json:"scope"`
	CUDA         int    `json:"cuda_nodes"`
	CPUPreferred int    `json:"cpu_preferred"`
	NoKernel     int    `json:"no_cuda_kernel"` // NoKernel and Other
}

// NotOnCUDA lists the nodes that compute data and do not run on CUDA.
func (p Placement) NotOnCUDA() []Node { return append(append([]Node(nil), p.NoKernel...), p.Other...) }

// Covered says whether every node that computes data runs on CUDA.
func (p Placement) Covered() bool { return len(p.NotOnCUDA()) == 0 }

// controlFlowOps are the ops that hold subgraphs. Such a node's own
// placement says nothing about its subgraphs' nodes: ONNX Runtime places
// those one by one, like the main graph's.
var controlFlowOps = map[string]bool{"If": true, "Loop": true, "Scan": true}

var (
	placedOn   = regexp.MustCompile(`(?:Node\(s\)|All nodes) placed on \[(\w+)\]\. Number of nodes: (\d+)`)
	placedNode = regexp.MustCompile(`VerifyEachNodeIsAssignedToAnEp\]\s{3}(\S+) \((.*)\)\s*$`)
	forcedCPU  = regexp.MustCompile(`Force fallback to CPU execution for node: (\S+) `)
)

// parsePlacement reads the verbose ONNX Runtime log of one session.
func parsePlacement(graph string, log []byte) (Placement, error) {
	p := Placement{Graph: graph}
	// Counted, not a set: two subgraphs may hold nodes of one name (ONNX
	// Runtime names the nodes its optimisations make without the branch),
	// and a name forced to the CPU in one must not excuse its twin in the
	// other.
	forced := map[string]int{}
	var onEP string
	seen := false
	sc := bufio.NewScanner(bytes.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Text()
		if m := forcedCPU.FindStringSubmatch(line); m != nil {
			forced[m[1]]++
			continue
		}
		if m := placedOn.FindStringSubmatch(line); m != nil {
			seen = true
			onEP = m[1]
			if onEP == "CUDAExecutionProvider" {
				n, _ := strconv.Atoi(m[2])
				p.CUDA += n
			}
			continue
		}
		m := placedNode.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		n := PlacedNode{Node: Node{Op: m[1], Name: m[2]}, EP: onEP}
		switch {
		case onEP == "CUDAExecutionProvider":
			n.class = onCUDA
		case onEP == "CPUExecutionProvider" && forced[n.Name] > 0:
			forced[n.Name]--
			n.class = cpuPreferred
			p.CPUPreferred = append(p.CPUPreferred, n.Node)
		case onEP == "CPUExecutionProvider":
			// Not offered to CUDA (no kernel for its op, opset or types).
			n.class = noKernel
			p.NoKernel = append(p.NoKernel, n.Node)
		default:
			n.class = other
			p.Other = append(p.Other, n.Node)
		}
		p.nodes = append(p.nodes, n)
		if controlFlowOps[n.Op] {
			p.ControlFlow = append(p.ControlFlow, n)
		}
	}
	if err := sc.Err(); err != nil {
		return p, err
	}
	if !seen {
		return p, fmt.Errorf("%s: ONNX Runtime logged no node placement", graph)
	}
	return p, nil
}

// splitScopes fills p.Scopes from the graph scope of each node name
// (graphScopes), when the file has subgraphs.
func (p *Placement) splitScopes(scopeOf map[string]string, order []string) {
	if len(order) < 2 {
		return
	}
	counts := map[string]*ScopeCount{}
	for _, s := range append(order, severalScopes, AddedScope) {
		counts[s] = &ScopeCount{Scope: s}
	}
	for _, n := range p.nodes {
		scope, ok := scopeOf[n.Name]
		if !ok {
			scope = AddedScope
		}
		c := counts[scope]
		switch n.class {
		case onCUDA:
			c.CUDA++
		case cpuPreferred:
			c.CPUPreferred++
		default:
			c.NoKernel++
		}
	}
	p.Scopes = nil
	for _, s := range order { // every graph of the file, even one left without nodes
		p.Scopes = append(p.Scopes, *counts[s])
	}
	for _, s := range []string{severalScopes, AddedScope} {
		if c := counts[s]; c.CUDA+c.CPUPreferred+c.NoKernel > 0 {
			p.Scopes = append(p.Scopes, *c)
		}
	}
}

// runPlacement opens each graph with the CUDA provider in a child process
// (this executable) and returns where ONNX Runtime placed its nodes. env is
// added to the child's environment (LD_LIBRARY_PATH for the CUDA libraries).
func runPlacement(ctx context.Context, ortLib string, device int, env []string, graphs []string) ([]Placement, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self, append([]string{ortLib, strconv.Itoa(device)}, graphs...)...)
	cmd.Env = append(append(os.Environ(), env...), sessionChildEnv+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	runErr := cmd.Run()
	parts := bytes.Split(stderr.Bytes(), []byte(graphMarker))
	var out []Placement
	for _, part := range parts[1:] {
		name, log, _ := bytes.Cut(part, []byte("\n"))
		p, err := parsePlacement(string(name), log)
		if err != nil {
			return out, fmt.Errorf("%w\n%s", err, tail(log, 20))
		}
		scopeOf, order, err := graphScopes(p.Graph)
		if err != nil {
			return out, err
		}
		p.splitScopes(scopeOf, order)
		out = append(out, p)
	}
	if runErr != nil || len(out) != len(graphs) {
		return out, fmt.Errorf("sessions: %v\n%s", runErr, tail(stderr.Bytes(), 20))
	}
	return out, nil
}

// sessionChild is the child's side: args are the library, the device and
// the graphs. It logs verbosely and creates one session per graph.
func sessionChild(args []string) error {
	if len(args) < 3 {
		return fmt.Errorf("session child: want LIB DEVICE GRAPH...")
	}
	ort.SetSharedLibraryPath(args[0])
	if err := ort.InitializeEnvironment(ort.WithLogLevelVerbose()); err != nil {
		return err
	}
	defer ort.DestroyEnvironment()
	for _, graph := range args[2:] {
		fmt.Fprintf(os.Stderr, "%s%s\n", graphMarker, graph)
		if err := openWithCUDA(graph, args[1]); err != nil {
			return fmt.Errorf("%s: %w", graph, err)
		}
	}
	return nil
}

func openWithCUDA(graph, device string) error {
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return err
	}
	defer opts.Destroy()
	cuda, err := ort.NewCUDAProviderOptions()
	if err != nil {
		return err
	}
	defer cuda.Destroy()
	if err := cuda.Update(map[string]string{"device_id": device}); err != nil {
		return err
	}
	if err := opts.AppendExecutionProviderCUDA(cuda); err != nil {
		return err
	}
	// Input and output names matter only to Run: creating the session is
	// what places the nodes. (Asking ONNX Runtime for the names would open a
	// CPU session, which a bf16 graph cannot have.)
	sess, err := ort.NewDynamicAdvancedSession(graph, nil, nil, opts)
	if err != nil {
		return err
	}
	return sess.Destroy()
}

func tail(b []byte, lines int) string {
	s := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(s) > lines {
		s = s[len(s)-lines:]
	}
	return strings.Join(s, "\n")
}
