package ops

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kleinserve/kleinserve/internal/testenv"
)

const dashboardFile = "deploy/grafana/dashboards/kleinserve.json"

// dashboard is the part of a Grafana dashboard model these tests read.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
			Datasource *datasourceRef  `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource *datasourceRef `json:"datasource"`
	GridPos    *struct {
		X, Y, W, H int
	} `json:"gridPos"`
	Targets []struct {
		Expr       string         `json:"expr"`
		RefID      string         `json:"refId"`
		Datasource *datasourceRef `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a row's collapsed panels
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// dashboardQuery is one PromQL expression of the dashboard: a panel target
// or the selector of a label_values variable.
type dashboardQuery struct {
	where, expr string
}

// loadDashboard parses the dashboard and checks its structure: unique
// panel ids, a grid position, every query on the dashboard's Prometheus
// data source variable, unique target refIds.
func loadDashboard(t *testing.T) (dashboard, []dashboardQuery) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard uid %q, title %q: both needed for provisioning", d.UID, d.Title)
	}
	dsVar := ""
	for _, v := range d.Templating.List {
		if v.Type == "datasource" {
			dsVar = "${" + v.Name + "}"
		}
	}
	if dsVar == "" {
		t.Fatal("no data source variable: panels would be tied to one data source uid")
	}
	checkDS := func(where string, ds *datasourceRef) {
		if ds == nil || ds.Type != "prometheus" || ds.UID != dsVar {
			t.Errorf("%s: data source %+v, want prometheus %s", where, ds, dsVar)
		}
	}

	var queries []dashboardQuery
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*([A-Za-z_]\w*)\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		checkDS("variable "+v.Name, v.Datasource)
		var q struct {
			Query string `json:"query"`
		}
		if json.Unmarshal(v.Query, &q) != nil {
			_ = json.Unmarshal(v.Query, &q.Query)
		}
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, q.Query)
			continue
		}
		queries = append(queries, dashboardQuery{"variable " + v.Name, m[1]})
	}

	ids := map[int]bool{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
			if ids[p.ID] || p.ID == 0 {
				t.Errorf("%s: id missing or repeated", where)
			}
			ids[p.ID] = true
			if p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("%s: bad grid position %+v", where, p.GridPos)
			}
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			checkDS(where, p.Datasource)
			if len(p.Targets) == 0 {
				t.Errorf("%s: no query", where)
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				checkDS(where+" target "+tg.RefID, tg.Datasource)
				if refs[tg.RefID] || tg.RefID == "" {
					t.Errorf("%s: refId %q missing or repeated", where, tg.RefID)
				}
				refs[tg.RefID] = true
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("%s target %s: empty expression", where, tg.RefID)
					continue
				}
				queries = append(queries, dashboardQuery{where + " target " + tg.RefID, tg.Expr})
			}
		}
	}
	walk(d.Panels)
	return d, queries
}

// grafanaVariable matches $name, ${name} and ${name:format}.
var grafanaVariable = regexp.MustCompile(`\$\{?([A-Za-z_]\w*)(?::\w+)?\}?`)

// expandVariables replaces the dashboard's variables and Grafana's built-in
// ones with values Prometheus accepts, as Grafana does before it queries.
// rateWindow stands for $__rate_interval (and $__interval).
func expandVariables(expr, rateWindow string) (string, error) {
	values := map[string]string{
		"__rate_interval": rateWindow, "__interval": rateWindow, "__range": "1h",
		"job": ".*", "instance": ".*",
	}
	var unknown []string
	out := grafanaVariable.ReplaceAllStringFunc(expr, func(v string) string {
		name := grafanaVariable.FindStringSubmatch(v)[1]
		if val, ok := values[name]; ok {
			return val
		}
		unknown = append(unknown, v)
		return v
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("unknown variables %v", unknown)
	}
	if strings.Contains(out, "[[") {
		return "", fmt.Errorf("deprecated [[variable]] syntax")
	}
	return out, nil
}

// promqlMetricNames returns the metric names an expression selects: the
// identifiers left after removing strings, label matchers, ranges, grouping
// clauses, numbers and keywords, that are not function or aggregation
// calls.
func promqlMetricNames(expr string) []string {
	strip := []*regexp.Regexp{
		regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`"),
		regexp.MustCompile(`\{[^}]*\}`),
		regexp.MustCompile(`\[[^\]]*\]`),
		regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`),
		regexp.MustCompile(`\boffset\s+-?\w+`),
	}
	for _, re := range strip {
		expr = re.ReplaceAllString(expr, " ")
	}
	// Numbers, keeping the character before them (it may be a call's "(").
	number := regexp.MustCompile(`(^|[^\w:.])(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?`)
	expr = number.ReplaceAllString(expr, "${1} ")
	keywords := map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "inf": true, "nan": true,
		"group_left": true, "group_right": true}
	var names []string
	ident := regexp.MustCompile(`[A-Za-z_:][\w:]*`)
	for _, loc := range ident.FindAllStringIndex(expr, -1) {
		word := expr[loc[0]:loc[1]]
		if keywords[strings.ToLower(word)] {
			continue
		}
		if rest := strings.TrimLeft(expr[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") {
			continue // a function or aggregation
		}
		names = append(names, word)
	}
	return names
}

// checkRulesWithPromtool writes the expressions as recording rules and runs
// promtool check rules, which parses every expression with Prometheus' own
// PromQL parser.
func checkRulesWithPromtool(t *testing.T, promtool string, exprs []string) ([]byte, error) {
	t.Helper()
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, e := range exprs {
		q, _ := json.Marshal(e) // a JSON string is a YAML double-quoted scalar
		fmt.Fprintf(&b, "      - record: dashboard:query_%d\n        expr: %s\n", i, q)
	}
	path := filepath.Join(t.TempDir(), "dashboard_rules.yml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return exec.Command(promtool, "check", "rules", path).CombinedOutput()
}

// TestGrafanaDashboard: the dashboard parses; every query, with Grafana's
// variables expanded, is valid PromQL by promtool; every metric it selects
// is one the server exports; every kleinserve metric is on it.
func TestGrafanaDashboard(t *testing.T) {
	promtool := testenv.RequireTool(t, "promtool")
	_, queries := loadDashboard(t)
	exported := exportedSeriesNames(exportedMetrics(t))

	var exprs []string
	used := map[string]bool{}
	for _, q := range queries {
		e, err := expandVariables(q.expr, "1m")
		if err != nil {
			t.Errorf("%s: %v", q.where, err)
			continue
		}
		exprs = append(exprs, e)
		names := promqlMetricNames(e)
		if len(names) == 0 {
			t.Errorf("%s: %q selects no metric", q.where, e)
		}
		for _, n := range names {
			used[n] = true
			if !exported[n] {
				t.Errorf("%s: %q selects %s, which the server does not export", q.where, e, n)
			}
		}
	}
	if out, err := checkRulesWithPromtool(t, promtool, exprs); err != nil {
		t.Fatalf("promtool check rules on the dashboard's %d queries: %v\n%s", len(exprs), err, out)
	}
	t.Logf("promtool accepts all %d dashboard queries", len(exprs))

	// The same check rejects a broken query, so the pass above means something.
	if out, err := checkRulesWithPromtool(t, promtool, []string{`sum(rate(kleinserve_images_generated_total[1m])`}); err == nil {
		t.Errorf("promtool accepted an unbalanced expression:\n%s", out)
	}

	for _, f := range exportedMetrics(t) {
		base := strings.HasPrefix(f.name, "kleinserve_")
		if !base {
			continue
		}
		onDashboard := used[f.name] || used[f.name+"_bucket"] || used[f.name+"_sum"] || used[f.name+"_count"]
		if !onDashboard {
			t.Errorf("no dashboard panel shows %s", f.name)
		}
	}
}

func TestPromQLMetricNames(t *testing.T) {
	for expr, want := range map[string]string{
		`histogram_quantile(0.95, sum by (le, route) (rate(kleinserve_http_request_duration_seconds_bucket{route!~".*/stream"}[1m])))`: "kleinserve_http_request_duration_seconds_bucket",
		`sum(rate(a_sum[5m])) / sum(rate(a_count[5m])) * 60`:                                                                           "a_sum,a_count",
		`max(kleinserve_queue_depth{job=~"x"}) or vector(0)`:                                                                           "kleinserve_queue_depth",
		`sum without (instance) (up offset 5m) > bool 1e3`:                                                                             "up",
		`count(x) by (job) unless on(job) y`:                                                                                           "x,y",
		`kleinserve_model_info`:                                                                                                        "kleinserve_model_info",
	} {
		if got := strings.Join(promqlMetricNames(expr), ","); got != want {
			t.Errorf("promqlMetricNames(%q) = %s, want %s", expr, got, want)
		}
	}
}

// TestGrafanaProvisioning checks the provisioning files against the compose
// file and the Prometheus config: the data source points at the compose
// service and port, its timeInterval is the scrape interval, the dashboard
// provider reads the directory that compose mounts the dashboards at.
func TestGrafanaProvisioning(t *testing.T) {
	root := testenv.RepoRoot(t)
	read := func(rel string) string { return readRepoFile(t, root, rel) }
	value := func(text, key string) string {
		m := regexp.MustCompile(`(?m)^\s*` + key + `:\s*(\S+)\s*$`).FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("no %s: in\n%s", key, text)
		}
		return strings.Trim(m[1], `"'`)
	}
	ds := read("deploy/grafana/provisioning/datasources/prometheus.yml")
	if got := value(ds, "type"); got != "prometheus" {
		t.Errorf("data source type %q", got)
	}
	if got := value(ds, "url"); got != "http://prometheus:9090" {
		t.Errorf("data source url %q, want the compose service http://prometheus:9090", got)
	}
	if got, want := value(ds, "timeInterval"), value(read("deploy/prometheus/prometheus.yml"), "scrape_interval"); got != want {
		t.Errorf("data source timeInterval %s, Prometheus scrape_interval %s", got, want)
	}
	provider := read("deploy/grafana/provisioning/dashboards/kleinserve.yml")
	path := value(provider, "path")

	dc := testenv.RequireTool(t, "docker-compose")
	cmd := exec.Command(dc, "-f", "docker-compose.yml", "--profile", "grafana", "config")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("docker-compose --profile grafana config: %v\n%s", err, out)
	}
	g, ok := composeServices(string(out))["grafana"]
	if !ok {
		t.Fatalf("no grafana service:\n%s", out)
	}
	mounts := map[string]string{}
	for _, v := range g.lists["volumes"] {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 {
			mounts[parts[1]] = parts[0]
		}
	}
	if src := mounts[path]; src != filepath.Join(root, "deploy/grafana/dashboards") {
		t.Errorf("the dashboard provider reads %s, where compose mounts %q, not deploy/grafana/dashboards", path, src)
	}
	if src := mounts["/etc/grafana/provisioning"]; src != filepath.Join(root, "deploy/grafana/provisioning") {
		t.Errorf("/etc/grafana/provisioning is %q, not deploy/grafana/provisioning", src)
	}
	home := g.scalars["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
	if home != filepath.Join(path, filepath.Base(dashboardFile)) {
		t.Errorf("home dashboard %q is not the provisioned %s", home, dashboardFile)
	}
}
