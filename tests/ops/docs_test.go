package ops

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kleinserve/kleinserve/internal/testenv"
)

// The operator's page must name every flag and every metric the server
// has, with the real environment variable, default, type and labels, so
// that it cannot drift from the code. A failure prints the rows to add; the
// whole generated tables print with
//
//	KLEINSERVE_PRINT_REFERENCE=1 go test ./tests/ops -run TestReferenceSources -v

const operationsDoc = "docs/operations.md"

// docSection returns the lines of the "## title" section of the page.
func docSection(t *testing.T, title string) []string {
	t.Helper()
	return fileSection(t, operationsDoc, title)
}

// fileSection returns the lines of the "## title" section of a Markdown
// file of the repository.
func fileSection(t *testing.T, doc, title string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), doc))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	in := false
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "## ") {
			in = strings.TrimSpace(strings.TrimPrefix(l, "## ")) == title
			continue
		}
		if in {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		t.Fatalf("%s has no section %q", doc, "## "+title)
	}
	return lines
}

var codeSpan = regexp.MustCompile("`([^`]*)`")

// tableRows returns the cells of the Markdown table rows in lines whose
// first cell is a code span (header and separator rows have none).
func tableRows(lines []string) [][]string {
	var rows [][]string
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, "|") || !strings.HasSuffix(l, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if len(cells) > 0 && strings.HasPrefix(cells[0], "`") {
			rows = append(rows, cells)
		}
	}
	return rows
}

// firstCode is the content of the first code span of a cell.
func firstCode(cell string) (string, bool) {
	m := codeSpan.FindStringSubmatch(cell)
	if m == nil {
		return "", false
	}
	return m[1], true
}

func configRow(f serverFlag) string {
	return fmt.Sprintf("| `-%s` | `%s` | `%s` | %s |", f.name, f.env(), f.docDefault(), f.usage)
}

func configTable(flags []serverFlag) string {
	var b strings.Builder
	b.WriteString("| flag | env var | default | meaning |\n|---|---|---|---|\n")
	for _, f := range flags {
		b.WriteString(configRow(f) + "\n")
	}
	return b.String()
}

// TestOperationsDocConfiguration: the configuration reference has one row
// per flag of `server serve`, with its environment variable and its real
// default, and no row for a flag that does not exist.
func TestOperationsDocConfiguration(t *testing.T) {
	flags := serverFlags(t)
	rows := map[string][]string{}
	for _, cells := range tableRows(docSection(t, "Configuration reference")) {
		name, _ := firstCode(cells[0])
		if len(cells) != 4 {
			t.Errorf("row %s: %d cells, want 4 (flag, env var, default, meaning)", name, len(cells))
			continue
		}
		if _, dup := rows[name]; dup {
			t.Errorf("row %s twice", name)
		}
		rows[name] = cells
	}
	known := map[string]bool{}
	for _, f := range flags {
		known["-"+f.name] = true
		cells, ok := rows["-"+f.name]
		if !ok {
			t.Errorf("%s does not document -%s; add:\n%s", operationsDoc, f.name, configRow(f))
			continue
		}
		if env, _ := firstCode(cells[1]); env != f.env() {
			t.Errorf("-%s: env var %q, want %q", f.name, env, f.env())
		}
		if def, _ := firstCode(cells[2]); def != f.docDefault() {
			t.Errorf("-%s: default %q, want %q (the flag's default)", f.name, def, f.docDefault())
		}
		if strings.TrimSpace(cells[3]) == "" {
			t.Errorf("-%s: no meaning", f.name)
		}
	}
	for name := range rows {
		if !known[name] {
			t.Errorf("%s documents %s, which `server serve` does not have", operationsDoc, name)
		}
	}

	// Every KLEINSERVE_* variable named anywhere on the page is real.
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), operationsDoc))
	if err != nil {
		t.Fatal(err)
	}
	envs := map[string]bool{}
	for _, f := range flags {
		envs[f.env()] = true
	}
	for _, v := range regexp.MustCompile(`KLEINSERVE_[A-Z0-9_]+`).FindAllString(string(b), -1) {
		if !envs[v] && v != "KLEINSERVE_PRINT_REFERENCE" {
			t.Errorf("%s mentions %s, which no flag reads", operationsDoc, v)
		}
	}
}

// TestReadmeConfiguration: the README's short table of flags names real
// flags with their real defaults.
func TestReadmeConfiguration(t *testing.T) {
	flags := map[string]serverFlag{}
	for _, f := range serverFlags(t) {
		flags["-"+f.name] = f
	}
	rows := tableRows(fileSection(t, "README.md", "Configuration"))
	if len(rows) < 10 {
		t.Fatalf("README's configuration table has %d rows", len(rows))
	}
	for _, cells := range rows {
		name, _ := firstCode(cells[0])
		f, ok := flags[name]
		if !ok {
			t.Errorf("README documents %s, which `server serve` does not have", name)
			continue
		}
		if len(cells) != 3 {
			t.Errorf("README row %s: %d cells, want 3 (flag, default, meaning)", name, len(cells))
			continue
		}
		if def, _ := firstCode(cells[1]); def != f.docDefault() {
			t.Errorf("README: %s default %q, want %q (the flag's default)", name, def, f.docDefault())
		}
	}
}

// runtimeEnv is the ENV of Dockerfile.cuda's runtime stage.
func runtimeEnv(t *testing.T) map[string]string {
	t.Helper()
	_, stages := parseDockerfile(t, filepath.Join(testenv.RepoRoot(t), "Dockerfile.cuda"))
	env := map[string]string{}
	for _, s := range stages {
		if s.name != "runtime" {
			continue
		}
		for _, l := range s.lines {
			if strings.HasPrefix(l, "ENV ") {
				for _, kv := range regexp.MustCompile(`(\w+)=(\S+)`).FindAllStringSubmatch(l, -1) {
					env[kv[1]] = kv[2]
				}
			}
		}
	}
	return env
}

// TestOperationsDocDeploymentFacts: what the page states about the image
// and the compose file is what they contain: the variables the image sets,
// its base image and user id, the Grafana image and the stop grace period.
func TestOperationsDocDeploymentFacts(t *testing.T) {
	root := testenv.RepoRoot(t)
	read := func(rel string) string { return readRepoFile(t, root, rel) }
	doc := read(operationsDoc)

	// The image's KLEINSERVE_* values, as the configuration reference lists them.
	env := runtimeEnv(t)
	listed := map[string]string{}
	for _, l := range docSection(t, "Configuration reference") {
		for _, m := range codeSpan.FindAllStringSubmatch(l, -1) {
			if k, v, ok := strings.Cut(m[1], "="); ok && strings.HasPrefix(k, "KLEINSERVE_") {
				listed[k] = v
			}
		}
	}
	for k, v := range env {
		if strings.HasPrefix(k, "KLEINSERVE_") && listed[k] != v {
			t.Errorf("the image sets %s=%s; the configuration reference says %q", k, v, listed[k])
		}
	}
	for k := range listed {
		if _, ok := env[k]; !ok {
			t.Errorf("the configuration reference says the image sets %s; Dockerfile.cuda does not", k)
		}
	}

	args, _ := parseDockerfile(t, filepath.Join(root, "Dockerfile.cuda"))
	uid := regexp.MustCompile(`--uid (\d+)`).FindStringSubmatch(read("Dockerfile.cuda"))
	compose := read("docker-compose.yml")
	grafana := regexp.MustCompile(`image: (grafana/\S+)`).FindStringSubmatch(compose)
	grace := regexp.MustCompile(`stop_grace_period: (\S+)`).FindStringSubmatch(compose)
	if uid == nil || grafana == nil || grace == nil {
		t.Fatalf("Dockerfile.cuda user id %v, compose Grafana image %v, stop grace period %v", uid, grafana, grace)
	}
	for _, fact := range []string{
		"`" + args["CUDA_IMAGE"] + "`",
		"ONNX Runtime GPU " + args["ORT_VERSION"],
		"uid " + uid[1],
		"`" + grafana[1] + "`",
		"`stop_grace_period: " + grace[1] + "`",
	} {
		if !strings.Contains(doc, fact) {
			t.Errorf("%s does not state %s, which the deployment files say", operationsDoc, fact)
		}
	}
}

// bucketText describes exponential histogram buckets as the metrics
// reference writes them: count, first and last bound, factor.
func bucketText(b []float64) string {
	if len(b) < 2 {
		return ""
	}
	g := func(x float64) string { return strconv.FormatFloat(x, 'g', 4, 64) }
	return fmt.Sprintf("Buckets: %d, from %s s to %s s (×%s).", len(b), g(b[0]), g(b[len(b)-1]), g(b[1]/b[0]))
}

var bucketPattern = regexp.MustCompile(`Buckets: (\d+), from ([0-9.e+-]+) s to ([0-9.e+-]+) s \(×([0-9.]+)\)`)

func metricRow(f metricFamily) string {
	labels := "—"
	if len(f.labels) > 0 {
		labels = "`" + strings.Join(f.labels, "`, `") + "`"
	}
	meaning := f.help
	if f.typ == "histogram" {
		meaning += " " + bucketText(f.buckets)
	}
	return fmt.Sprintf("| `%s` | %s | %s | %s |", f.name, f.typ, labels, meaning)
}

func metricsTables(fams []metricFamily) string {
	var own, runtime strings.Builder
	for _, b := range []*strings.Builder{&own, &runtime} {
		b.WriteString("| metric | type | labels | meaning |\n|---|---|---|---|\n")
	}
	for _, f := range fams {
		if strings.HasPrefix(f.name, "kleinserve_") {
			own.WriteString(metricRow(f) + "\n")
		} else {
			runtime.WriteString(metricRow(f) + "\n")
		}
	}
	return own.String() + "\n" + runtime.String()
}

// TestOperationsDocMetrics: the metrics reference has one row per metric
// family the server exports (its own and the Go runtime and process
// collectors'), with the real type and labels, histogram buckets, and no
// row for a metric that does not exist.
func TestOperationsDocMetrics(t *testing.T) {
	fams := exportedMetrics(t)
	rows := map[string][]string{}
	for _, cells := range tableRows(docSection(t, "Metrics reference")) {
		name, _ := firstCode(cells[0])
		if len(cells) != 4 {
			t.Errorf("row %s: %d cells, want 4 (metric, type, labels, meaning)", name, len(cells))
			continue
		}
		if _, dup := rows[name]; dup {
			t.Errorf("row %s twice", name)
		}
		rows[name] = cells
	}
	known := map[string]bool{}
	for _, f := range fams {
		known[f.name] = true
		cells, ok := rows[f.name]
		if !ok {
			t.Errorf("%s does not document %s; add:\n%s", operationsDoc, f.name, metricRow(f))
			continue
		}
		if cells[1] != f.typ {
			t.Errorf("%s: type %q, want %q", f.name, cells[1], f.typ)
		}
		var labels []string
		for _, m := range codeSpan.FindAllStringSubmatch(cells[2], -1) {
			labels = append(labels, m[1])
		}
		if got, want := strings.Join(slices.Sorted(slices.Values(labels)), ","), strings.Join(f.labels, ","); got != want {
			t.Errorf("%s: labels [%s], want [%s]", f.name, got, want)
		}
		if f.typ == "histogram" {
			checkBuckets(t, f, cells[3])
		}
	}
	for name := range rows {
		if !known[name] {
			t.Errorf("%s documents %s, which the server does not export", operationsDoc, name)
		}
	}
}

func checkBuckets(t *testing.T, f metricFamily, meaning string) {
	t.Helper()
	m := bucketPattern.FindStringSubmatch(meaning)
	if m == nil {
		t.Errorf("%s: the meaning does not describe the buckets; want %q", f.name, bucketText(f.buckets))
		return
	}
	n, _ := strconv.Atoi(m[1])
	first, _ := strconv.ParseFloat(m[2], 64)
	last, _ := strconv.ParseFloat(m[3], 64)
	factor, _ := strconv.ParseFloat(m[4], 64)
	b := f.buckets
	near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-3*math.Abs(b) }
	if n != len(b) || !near(first, b[0]) || !near(last, b[len(b)-1]) || !near(factor, b[1]/b[0]) {
		t.Errorf("%s: documented %q, want %q", f.name, m[0], bucketText(b))
	}
}
