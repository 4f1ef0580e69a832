// Package ops tests the deployment pieces as far as a machine without a
// Docker engine or a GPU allows: the compose file (with and without its
// grafana profile) through docker-compose's own validation, the
// Dockerfile's stages against the code, the Grafana dashboard's queries
// through promtool and against the metrics the server exports, a real
// Prometheus scraping a running server and answering every dashboard
// query, and docs/operations.md against the real flags and metrics.
//
// Dependencies (Debian packages, installed by scripts/install_test_tools.sh):
// docker-compose, prometheus (with promtool). Tests skip without them unless
// KLEINSERVE_REQUIRE_CLIENTS is set (make test and CI set it), where a
// missing tool fails.
package ops

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kleinserve/kleinserve/internal/testenv"
)

// readRepoFile reads a file given relative to the repository root.
func readRepoFile(t *testing.T, root, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// composeService is what these tests read of one service in the output of
// docker-compose config: scalar values by key (nested keys too, such as
// environment variables) and list items by the key that holds them.
type composeService struct {
	scalars map[string]string
	lists   map[string][]string
}

// composeServices reads the services block of docker-compose config output
// (block-style YAML as docker-compose prints it).
func composeServices(out string) map[string]composeService {
	services := map[string]composeService{}
	inServices, svcIndent := false, -1
	var cur *composeService
	lastKey := ""
	unquote := func(v string) string { return strings.Trim(strings.TrimSpace(v), `"'`) }
	for _, line := range strings.Split(out, "\n") {
		text := strings.TrimSpace(line)
		if text == "" {
			continue
		}
		indent := len(line) - len(strings.TrimLeft(line, " "))
		if indent == 0 {
			inServices, cur = text == "services:", nil
			continue
		}
		if !inServices {
			continue
		}
		if svcIndent < 0 {
			svcIndent = indent
		}
		if indent == svcIndent {
			s := composeService{scalars: map[string]string{}, lists: map[string][]string{}}
			services[strings.TrimSuffix(text, ":")] = s
			cur = &s
			continue
		}
		if item, ok := strings.CutPrefix(text, "- "); ok {
			cur.lists[lastKey] = append(cur.lists[lastKey], unquote(item))
			continue
		}
		k, v, _ := strings.Cut(text, ":")
		if v = strings.TrimSpace(v); v == "" {
			lastKey = unquote(k)
		} else {
			cur.scalars[unquote(k)] = unquote(v)
		}
	}
	return services
}

// TestComposeFileIsValid runs docker-compose's own validation with and
// without the grafana profile, and checks the resolved services: plain
// `docker compose up` starts only the server and Prometheus, Grafana is a
// pinned image behind the grafana profile, every bind-mounted host path
// exists, and every KLEINSERVE_* variable is one the server reads.
func TestComposeFileIsValid(t *testing.T) {
	dc := testenv.RequireTool(t, "docker-compose")
	root := testenv.RepoRoot(t)
	compose := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(dc, append([]string{"-f", "docker-compose.yml"}, args...)...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("docker-compose %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if profiles := strings.Fields(compose("config", "--profiles")); strings.Join(profiles, ",") != "grafana" {
		t.Errorf("profiles %v, want just grafana", profiles)
	}
	envs := map[string]bool{}
	for _, f := range serverFlags(t) {
		envs[f.env()] = true
	}
	for _, args := range [][]string{{"config"}, {"--profile", "grafana", "config"}} {
		out := compose(args...)
		for _, want := range []string{"kleinserve:", "prometheus:", "driver: nvidia", "capabilities:", "/models",
			"deploy/prometheus/prometheus.yml"} {
			if !strings.Contains(out, want) {
				t.Errorf("%v: resolved compose file lacks %q:\n%s", args, want, out)
			}
		}
		services := composeServices(out)
		for name, s := range services {
			always := name == "kleinserve" || name == "prometheus"
			if got := len(s.lists["profiles"]); always != (got == 0) {
				t.Errorf("%v: service %s has profiles %v; only kleinserve and prometheus start without one",
					args, name, s.lists["profiles"])
			}
			for _, v := range s.lists["volumes"] {
				if src, _, _ := strings.Cut(v, ":"); strings.HasPrefix(src, "/") {
					if _, err := os.Stat(src); err != nil {
						t.Errorf("%v: service %s mounts %s, which does not exist", args, name, src)
					}
				}
			}
			for k := range s.scalars {
				if strings.HasPrefix(k, "KLEINSERVE_") && !envs[k] {
					t.Errorf("service %s sets %s, which no server flag reads", name, k)
				}
			}
		}
		for _, name := range []string{"kleinserve", "prometheus"} {
			if _, ok := services[name]; !ok {
				t.Errorf("%v: no service %s", args, name)
			}
		}
		if len(args) == 1 {
			continue
		}
		g, ok := services["grafana"]
		if !ok {
			t.Fatalf("--profile grafana: no grafana service:\n%s", out)
		}
		image, tag, _ := strings.Cut(g.scalars["image"], ":")
		if image != "grafana/grafana-oss" || tag == "" || tag == "latest" {
			t.Errorf("grafana image %q; want grafana/grafana-oss with a pinned tag", g.scalars["image"])
		}
		if !slices.Contains(g.lists["profiles"], "grafana") {
			t.Errorf("grafana profiles %v", g.lists["profiles"])
		}
	}
}

// TestPrometheusConfigIsValid checks the compose file's Prometheus config
// with Prometheus' own promtool.
func TestPrometheusConfigIsValid(t *testing.T) {
	promtool := testenv.RequireTool(t, "promtool")
	cmd := exec.Command(promtool, "check", "config", "deploy/prometheus/prometheus.yml")
	cmd.Dir = testenv.RepoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
}

// stage is one build stage of Dockerfile.cuda.
type stage struct {
	name, base string
	lines      []string
}

func parseDockerfile(t *testing.T, path string) (args map[string]string, stages []stage) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	args = map[string]string{}
	var logical []string
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			cur.WriteString(strings.TrimSuffix(l, "\\") + " ")
			continue
		}
		cur.WriteString(l)
		logical = append(logical, cur.String())
		cur.Reset()
	}
	fromRe := regexp.MustCompile(`^FROM\s+(\S+)(?:\s+AS\s+(\S+))?$`)
	for _, l := range logical {
		if m := fromRe.FindStringSubmatch(l); m != nil {
			stages = append(stages, stage{name: m[2], base: m[1]})
			continue
		}
		if strings.HasPrefix(l, "ARG ") && len(stages) == 0 {
			k, v, _ := strings.Cut(strings.TrimPrefix(l, "ARG "), "=")
			args[k] = v
			continue
		}
		if len(stages) > 0 {
			stages[len(stages)-1].lines = append(stages[len(stages)-1].lines, l)
		}
	}
	return args, stages
}

// TestDockerfileStages checks Dockerfile.cuda against the code without a
// Docker engine: stage order and references, the build stage's go build
// command (run here for real), the runtime's configuration variables, user,
// port and health check.
func TestDockerfileStages(t *testing.T) {
	root := testenv.RepoRoot(t)
	args, stages := parseDockerfile(t, filepath.Join(root, "Dockerfile.cuda"))
	var names []string
	for _, s := range stages {
		names = append(names, s.name)
	}
	if strings.Join(names, ",") != "build,ort,runtime" {
		t.Fatalf("stages %v, want build, ort, runtime", names)
	}
	known := map[string]bool{}
	var runtime stage
	for _, s := range stages {
		for _, l := range s.lines {
			if m := regexp.MustCompile(`COPY --from=(\S+)`).FindStringSubmatch(l); m != nil && !known[m[1]] {
				t.Errorf("stage %s copies from %q, which is not an earlier stage", s.name, m[1])
			}
		}
		known[s.name] = true
		if s.name == "runtime" {
			runtime = s
		}
	}
	if args["ORT_VERSION"] != "1.30.0" {
		t.Errorf("ORT_VERSION %q; the CPU library of scripts/install_ort.sh is 1.30.0", args["ORT_VERSION"])
	}

	// The build stage's command, run here.
	var build string
	for _, l := range stages[0].lines {
		if strings.Contains(l, "go build") {
			build = strings.TrimPrefix(l, "RUN ")
		}
	}
	if build == "" {
		t.Fatal("no go build in the build stage")
	}
	out := filepath.Join(t.TempDir(), "kleinserve")
	build = strings.ReplaceAll(build, "/out/kleinserve", out)
	cmd := exec.Command("sh", "-c", build)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build stage command %q: %v\n%s", build, err, b)
	}

	// Runtime: every KLEINSERVE_* variable is one the server reads, the
	// user is not root, the port and health check match the server.
	env := map[string]string{}
	var user, expose, health string
	for _, l := range runtime.lines {
		switch {
		case strings.HasPrefix(l, "ENV "):
			for _, kv := range regexp.MustCompile(`(\w+)=(\S+)`).FindAllStringSubmatch(l, -1) {
				env[kv[1]] = kv[2]
			}
		case strings.HasPrefix(l, "USER "):
			user = strings.TrimSpace(strings.TrimPrefix(l, "USER "))
		case strings.HasPrefix(l, "EXPOSE "):
			expose = strings.TrimSpace(strings.TrimPrefix(l, "EXPOSE "))
		case strings.HasPrefix(l, "HEALTHCHECK "):
			health = l
		}
	}
	if user == "" || user == "root" || user == "0" {
		t.Errorf("runtime user %q; want a non-root user", user)
	}
	if !strings.HasSuffix(env["KLEINSERVE_ADDR"], ":"+expose) {
		t.Errorf("EXPOSE %s but KLEINSERVE_ADDR=%s", expose, env["KLEINSERVE_ADDR"])
	}
	if !strings.Contains(health, "/readyz") {
		t.Errorf("health check %q does not probe /readyz", health)
	}
	help, err := exec.Command(out, "serve", "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("server -h: %v\n%s", err, help)
	}
	for k := range env {
		if !strings.HasPrefix(k, "KLEINSERVE_") {
			continue
		}
		flag := "-" + strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(k, "KLEINSERVE_")), "_", "-")
		if !strings.Contains(string(help), flag+" ") && !strings.Contains(string(help), flag+"\n") {
			t.Errorf("Dockerfile sets %s but the server has no flag %s", k, flag)
		}
	}
}

// TestPrometheusScrapesImagesGenerated generates a known number of images,
// lets a real Prometheus scrape /metrics and queries the counter, then
// every query of the Grafana dashboard.
func TestPrometheusScrapesImagesGenerated(t *testing.T) {
	prom := testenv.RequireTool(t, "prometheus")
	root := testenv.RepoRoot(t)
	lib := filepath.Join(root, ".ort", "lib", "libonnxruntime.so")
	if _, err := os.Stat(lib); err != nil {
		t.Skip("ONNX Runtime not installed (scripts/install_ort.sh)")
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "server")
	if b, err := exec.Command("go", "build", "-o", bin, filepath.Join(root, "cmd", "server")).CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	port := testenv.FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	srv := exec.CommandContext(ctx, bin, "serve", "-addr", "127.0.0.1:"+strconv.Itoa(port), "-data", filepath.Join(tmp, "data"),
		"-models", filepath.Join(root, "models", "tiny"), "-ort-lib", lib, "-threads", "1")
	srvLog := &strings.Builder{}
	srv.Stdout, srv.Stderr = srvLog, srvLog
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	waitFor(t, ctx, base+"/readyz", func(b []byte) bool { return true })

	// Three requests: 1 + 2 + 2 images.
	want := 0
	for _, n := range []int{1, 2, 2} {
		body := fmt.Sprintf(`{"prompt": "a lighthouse", "image_size": "square", "num_inference_steps": 2, "num_images": %d}`, n)
		resp, err := http.Post(base+"/fal-ai/flux-2/klein/4b/base", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("run: %d\n%s", resp.StatusCode, srvLog.String())
		}
		want += n
	}

	promPort := testenv.FreePort(t)
	cfg := filepath.Join(tmp, "prometheus.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
scrape_configs:
  - job_name: kleinserve
    metrics_path: /metrics
    static_configs:
      - targets: ["127.0.0.1:%d"]
`, port)), 0o644)
	pcmd := exec.CommandContext(ctx, prom, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(tmp, "tsdb"),
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(promPort))
	promLog := &strings.Builder{}
	pcmd.Stdout, pcmd.Stderr = promLog, promLog
	if err := pcmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { pcmd.Process.Kill(); pcmd.Wait() }()

	query := fmt.Sprintf("http://127.0.0.1:%d/api/v1/query?query=kleinserve_images_generated_total", promPort)
	got := ""
	waitFor(t, ctx, query, func(b []byte) bool {
		var r struct {
			Status string `json:"status"`
			Data   struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if json.Unmarshal(b, &r) != nil || r.Status != "success" {
			return false
		}
		total := 0.0
		for _, s := range r.Data.Result {
			v, _ := strconv.ParseFloat(fmt.Sprint(s.Value[1]), 64)
			total += v
		}
		got = strconv.FormatFloat(total, 'f', -1, 64)
		return total == float64(want)
	})
	t.Logf("Prometheus reports kleinserve_images_generated_total = %s after %d images", got, want)

	// Every dashboard query, as Grafana would send it, returns series from
	// this Prometheus. The window spans several of the 1s scrapes above.
	_, queries := loadDashboard(t)
	for _, q := range queries {
		expr, err := expandVariables(q.expr, "10s")
		if err != nil {
			t.Fatalf("%s: %v", q.where, err)
		}
		u := fmt.Sprintf("http://127.0.0.1:%d/api/v1/query?query=%s", promPort, url.QueryEscape(expr))
		series := 0
		waitFor(t, ctx, u, func(b []byte) bool {
			var r struct {
				Status string `json:"status"`
				Data   struct {
					Result []json.RawMessage `json:"result"`
				} `json:"data"`
			}
			if json.Unmarshal(b, &r) != nil || r.Status != "success" {
				return false
			}
			series = len(r.Data.Result)
			return series > 0
		})
		t.Logf("%s: %d series", q.where, series)
	}
}

// waitFor polls url until ok accepts a 200 body or ctx ends.
func waitFor(t *testing.T, ctx context.Context, url string, ok func([]byte) bool) {
	t.Helper()
	for {
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && ok(b) {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: no good answer before the deadline", url)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
