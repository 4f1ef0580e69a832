package ops

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/kleinserve/kleinserve/internal/config"
	"github.com/kleinserve/kleinserve/internal/metrics"

	"github.com/kleinserve/kleinserve/internal/testenv"
)

// metricFamily is one metric the server exports, as its registry gathers it.
type metricFamily struct {
	name, typ, help string
	labels          []string  // sorted
	buckets         []float64 // histograms: finite upper bounds
}

// exportedMetrics builds the server's registry exactly as cmd/server does
// (metrics.New plus the queue gauges), records one value through every
// recording method so that every labelled family has a series, and gathers
// it. It fails when internal/metrics defines a metric that the gathered set
// lacks (a new family whose recording method this helper does not call yet).
func exportedMetrics(t *testing.T) []metricFamily {
	t.Helper()
	m := metrics.New()
	m.RegisterQueueGauges(func() int { return 0 }, func() int { return 0 })
	m.ObserveHTTP("/readyz", "GET", 200, time.Millisecond)
	m.ObserveQueueWait(time.Second)
	m.ObserveInference(time.Second)
	m.ObserveStep(time.Second)
	m.AddImages(1, 0)
	m.FinishRequest(metrics.OutcomeOK)
	m.SetModelInfo("model", "variant", "cpu", "float32")
	gathered, err := m.Registry.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var fams []metricFamily
	for _, g := range gathered {
		f := metricFamily{name: g.GetName(), typ: strings.ToLower(g.GetType().String()), help: g.GetHelp()}
		if len(g.GetMetric()) > 0 {
			mt := g.GetMetric()[0]
			for _, l := range mt.GetLabel() {
				f.labels = append(f.labels, l.GetName())
			}
			if h := mt.GetHistogram(); h != nil && g.GetType() == dto.MetricType_HISTOGRAM {
				for _, b := range h.GetBucket() {
					if !math.IsInf(b.GetUpperBound(), 1) {
						f.buckets = append(f.buckets, b.GetUpperBound())
					}
				}
			}
		}
		sort.Strings(f.labels)
		fams = append(fams, f)
	}

	have := map[string]bool{}
	for _, f := range fams {
		have[f.name] = true
	}
	for _, name := range definedMetricNames(t) {
		if !have[name] {
			t.Fatalf("internal/metrics defines %s but the gathered registry lacks it: record into it in exportedMetrics", name)
		}
	}
	return fams
}

// definedMetricNames reads internal/metrics' source for the Name fields of
// its prometheus.*Opts literals, prefixed with its namespace constant: the
// metrics the package defines, whether or not a series exists yet.
func definedMetricNames(t *testing.T) []string {
	t.Helper()
	dir := filepath.Join(testenv.RepoRoot(t), "internal", "metrics")
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	namespace := ""
	var names []string
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatalf("parse %s: %v", path, err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.ValueSpec:
				for i, id := range n.Names {
					if id.Name == "namespace" && i < len(n.Values) {
						if lit, ok := n.Values[i].(*ast.BasicLit); ok {
							namespace, _ = strconv.Unquote(lit.Value)
						}
					}
				}
			case *ast.CompositeLit:
				sel, ok := n.Type.(*ast.SelectorExpr)
				if !ok || !strings.HasSuffix(sel.Sel.Name, "Opts") {
					return true
				}
				for _, el := range n.Elts {
					kv, ok := el.(*ast.KeyValueExpr)
					if !ok {
						continue
					}
					if key, ok := kv.Key.(*ast.Ident); ok && key.Name == "Name" {
						if lit, ok := kv.Value.(*ast.BasicLit); ok {
							name, _ := strconv.Unquote(lit.Value)
							names = append(names, name)
						}
					}
				}
			}
			return true
		})
	}
	if namespace == "" || len(names) == 0 {
		t.Fatalf("found no namespace constant or no metric definitions in %s", dir)
	}
	for i := range names {
		names[i] = namespace + "_" + names[i]
	}
	return names
}

// exportedSeriesNames are the metric names that appear in a scrape: every
// family, plus _bucket/_sum/_count of histograms and _sum/_count of
// summaries.
func exportedSeriesNames(fams []metricFamily) map[string]bool {
	names := map[string]bool{}
	for _, f := range fams {
		names[f.name] = true
		switch f.typ {
		case "histogram":
			names[f.name+"_bucket"], names[f.name+"_sum"], names[f.name+"_count"] = true, true, true
		case "summary":
			names[f.name+"_sum"], names[f.name+"_count"] = true, true
		}
	}
	return names
}

// serverFlag is one flag of `server serve`.
type serverFlag struct {
	name, typ, usage string
	// def is the default as the flag package prints it; "" for a zero
	// default of any type (the flag package prints none then).
	def string
}

// env is the flag's environment variable (config: KLEINSERVE_<FLAG>,
// dashes as underscores).
func (f serverFlag) env() string {
	return config.EnvPrefix + strings.ToUpper(strings.ReplaceAll(f.name, "-", "_"))
}

// docDefault is how the reference table writes the default: the value in
// backquotes, "" for an empty string, 0 for a zero number.
func (f serverFlag) docDefault() string {
	switch {
	case f.def != "":
		return f.def
	case f.typ == "string":
		return `""`
	case f.typ == "":
		return "false"
	default:
		return "0"
	}
}

var defaultSuffix = regexp.MustCompile(`^(.*) \(default (.+)\)$`)

// serverFlags parses config.HelpText (the flag package's PrintDefaults
// output) and checks it against config.EnvVars.
func serverFlags(t *testing.T) []serverFlag {
	t.Helper()
	var flags []serverFlag
	for _, line := range strings.Split(config.HelpText(), "\n") {
		switch {
		case strings.HasPrefix(line, "  -"):
			name, typ, _ := strings.Cut(strings.TrimPrefix(line, "  -"), " ")
			flags = append(flags, serverFlag{name: name, typ: strings.TrimSpace(typ)})
		case strings.HasPrefix(line, "    \t") && len(flags) > 0:
			f := &flags[len(flags)-1]
			f.usage = strings.TrimSpace(f.usage + " " + strings.TrimPrefix(line, "    \t"))
		case strings.TrimSpace(line) != "":
			t.Fatalf("unexpected help line %q", line)
		}
	}
	for i := range flags {
		f := &flags[i]
		m := defaultSuffix.FindStringSubmatch(f.usage)
		if m == nil {
			continue
		}
		// A usage text may say "(default ...)" itself; the flag package's
		// suffix is a quoted string for strings and a literal otherwise.
		switch f.typ {
		case "string":
			if v, err := strconv.Unquote(m[2]); err == nil {
				f.usage, f.def = m[1], v
			}
		case "int", "uint", "float", "duration":
			if _, err := strconv.ParseFloat(m[2], 64); err == nil || f.typ == "duration" {
				f.usage, f.def = m[1], m[2]
			}
		case "":
			if m[2] == "true" {
				f.usage, f.def = m[1], m[2]
			}
		}
	}
	if len(flags) == 0 {
		t.Fatal("config.HelpText lists no flags")
	}
	var derived []string
	for _, f := range flags {
		derived = append(derived, f.env())
	}
	env := config.EnvVars()
	slices.Sort(derived)
	slices.Sort(env)
	if !slices.Equal(derived, env) {
		t.Fatalf("environment variables derived from the help text %v differ from config.EnvVars %v", derived, env)
	}
	return flags
}

// TestReferenceSources checks the helpers above against facts of the code
// they read, so that a parsing slip cannot make the document checks pass
// vacuously.
func TestReferenceSources(t *testing.T) {
	byName := map[string]metricFamily{}
	for _, f := range exportedMetrics(t) {
		byName[f.name] = f
	}
	want := map[string]string{
		"kleinserve_http_requests_total":           "counter:code,method,route",
		"kleinserve_http_request_duration_seconds": "histogram:route",
		"kleinserve_model_info":                    "gauge:model,precision,provider,variant",
		"kleinserve_queue_depth":                   "gauge:",
		"kleinserve_denoising_step_seconds":        "histogram:",
		"go_goroutines":                            "gauge:",
		"process_resident_memory_bytes":            "gauge:",
	}
	for name, w := range want {
		f, ok := byName[name]
		if !ok {
			t.Errorf("%s not gathered", name)
			continue
		}
		if got := f.typ + ":" + strings.Join(f.labels, ","); got != w {
			t.Errorf("%s: %s, want %s", name, got, w)
		}
	}
	if b := byName["kleinserve_inference_seconds"].buckets; len(b) != 14 || b[0] != 0.05 {
		t.Errorf("inference buckets %v, want 14 from 0.05", b)
	}

	flags := map[string]serverFlag{}
	for _, f := range serverFlags(t) {
		flags[f.name] = f
	}
	for name, w := range map[string]string{
		"addr": "string:127.0.0.1:8080", "device-id": "int:", "max-body": "int:16777216",
		"ort-lib": "string:", "public-url": "string:", "worker-id": "string:", "lease": "string:30s",
	} {
		if got := fmt.Sprintf("%s:%s", flags[name].typ, flags[name].def); got != w {
			t.Errorf("flag -%s: type:default %s, want %s", name, got, w)
		}
	}
	if env := flags["public-url"].env(); env != "KLEINSERVE_PUBLIC_URL" {
		t.Errorf("env of -public-url: %s", env)
	}
	if os.Getenv("KLEINSERVE_PRINT_REFERENCE") != "" {
		t.Logf("\n%s\n%s", configTable(serverFlags(t)), metricsTables(exportedMetrics(t)))
	}
}
