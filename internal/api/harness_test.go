package api

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kleinserve/kleinserve/internal/imageinput"
	"github.com/kleinserve/kleinserve/internal/metrics"
	"github.com/kleinserve/kleinserve/internal/netguard"
	"github.com/kleinserve/kleinserve/internal/queue"
	"github.com/kleinserve/kleinserve/internal/queue/boltstore"
	"github.com/kleinserve/kleinserve/internal/storage"
	"github.com/kleinserve/kleinserve/internal/storage/storagetest"
	"github.com/kleinserve/kleinserve/internal/wire"
	"github.com/kleinserve/kleinserve/internal/worker"
)

const (
	submitPath = "/queue/fal-ai/flux-2/klein/4b/base"
	runPath    = "/fal-ai/flux-2/klein/4b/base"
	streamPath = "/fal-ai/flux-2/klein/4b/base/stream"
	reqPrefix  = "/queue/fal-ai/flux-2/requests/"
)

// testEnv is a full server (queue, storage, metrics, API) on a loopback
// port, backed by a fake engine.
type testEnv struct {
	t       *testing.T
	engine  *fakeEngine
	worker  *worker.Worker
	queue   *queue.Queue
	store   storage.Store
	server  *Server
	http    *httptest.Server
	base    string
	dataDir string
}

type envOptions struct {
	keys         []string
	maxQueued    int
	workers      int
	maxBody      int64
	previewEvery int
	noEngine     bool
	webhook      queue.WebhookOptions
	keepAlive    time.Duration
	// s3, when set, stores files in its bucket "kleinserve" instead of a
	// local directory; envs given the same server share their files, like
	// API hosts sharing a bucket.
	s3 *storagetest.FakeS3
	// admit is the server's submit-time admission check.
	admit func(wire.Params) error
	// pace overrides the body and write deadlines.
	pace         Pace
	privateFiles bool
	// urlPolicy is the outbound-URL policy of reference images.
	urlPolicy netguard.Policy
	// imageLimits bound one reference image.
	imageLimits imageinput.Limits
	// catalog is what the server serves (nil: the default catalog); the
	// fake engine serves wire.Base4B only.
	catalog *wire.Catalog
}

func newEnv(t *testing.T, o envOptions) *testEnv {
	t.Helper()
	dir := t.TempDir()
	bolt, err := boltstore.Open(context.Background(), filepath.Join(dir, "queue.db"))
	if err != nil {
		t.Fatal(err)
	}
	if o.workers == 0 {
		o.workers = 1
	}
	guard := netguard.New(o.urlPolicy)
	t.Cleanup(guard.Close)
	if o.webhook.Client == nil {
		o.webhook.Client = guard.Client(netguard.ClientOptions{NoRedirects: true})
	}
	q, err := queue.Open(bolt, queue.Options{Workers: o.workers, MaxQueued: o.maxQueued, Describe: DescribeFailure,
		Logger: zerolog.Nop(), Webhook: o.webhook})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(nil)
	base := "http://" + ts.Listener.Addr().String()
	var files storage.Store
	fileOpts := storage.Options{PublicURL: base, MaxUploadBytes: 1 << 20}
	if o.s3 != nil {
		files, err = storage.OpenS3(context.Background(), storage.S3Options{Endpoint: o.s3.Endpoint,
			Region: storagetest.Region, AccessKey: storagetest.AccessKey, SecretKey: storagetest.SecretKey,
			Transport: o.s3.Transport, PathStyle: true, Bucket: "kleinserve", Prefix: "api-test"}, fileOpts)
	} else {
		files, err = storage.OpenLocal(filepath.Join(dir, "files"), fileOpts)
	}
	if err != nil {
		t.Fatal(err)
	}
	seed := int64(0)
	m := metrics.New()
	m.RegisterQueueGauges(q.Depth, q.Running)
	wk := worker.New(worker.Options{Storage: files, Metrics: m, Events: q, Logger: zerolog.Nop(),
		Images: &imageinput.Loader{Fetcher: guard, Files: files, Limits: o.imageLimits}})
	srv := New(Options{Queue: q, Storage: files, Metrics: m, Events: q, Logger: zerolog.Nop(), Keys: o.keys,
		PublicURL: base, MaxBodyBytes: o.maxBody, PreviewEvery: o.previewEvery, KeepAlive: o.keepAlive,
		NewSeed: func() int64 { seed++; return 1000 + seed }, Admit: o.admit, Pace: o.pace, CheckURL: guard.Preflight,
		PrivateFiles: o.privateFiles, Catalog: o.catalog,
		Ready: []ReadyCheck{{Status: "loading", Phase: true, Check: func(context.Context) error {
			if !wk.Ready() {
				return worker.ErrNotReady
			}
			return nil
		}}},
		ReadyInfo: func() map[string]any {
			info := wk.Engine(wire.Base4B.ID).Info()
			return map[string]any{"model": info.Model, "variant": info.Variant, "queue_depth": q.Depth()}
		}})
	eng := newFakeEngine()
	if !o.noEngine {
		wk.SetEngine(wire.Base4B.ID, eng)
		q.Start(wk.Process)
	}
	ts.Config.Handler = srv.Handler()
	ts.Start()
	env := &testEnv{t: t, engine: eng, worker: wk, queue: q, store: files, server: srv, http: ts, base: base, dataDir: dir}
	t.Cleanup(func() {
		srv.BeginShutdown()
		// Closing the server's connections ends handlers; closing the queue
		// cancels jobs still held by the fake engine.
		ts.CloseClientConnections()
		q.Close()
		ts.Close()
	})
	return env
}

// response is a finished HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v\n%s", err, r.body)
	}
	return m
}

func (e *testEnv) do(method, path string, body string, header map[string]string) response {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	url := path
	if !strings.HasPrefix(path, "http") {
		url = e.base + path
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// waitJob polls the queue until the job is in a status.
func (e *testEnv) waitJob(id string, status queue.Status) *queue.Job {
	e.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		ch := e.queue.Changed()
		j, err := e.queue.Get(context.Background(), id)
		if err == nil && j.Status == status {
			return j
		}
		select {
		case <-ch:
		case <-deadline:
			e.t.Fatalf("job %s never reached %s (last %+v, %v)", id, status, j, err)
		}
	}
}

func (e *testEnv) submit(body string) string {
	e.t.Helper()
	r := e.do("POST", submitPath, body, nil)
	if r.status != 200 {
		e.t.Fatalf("submit: %d %s", r.status, r.body)
	}
	return r.json(e.t)["request_id"].(string)
}

// sseEvent is one parsed Server-Sent Event.
type sseEvent struct {
	fields map[string][]string // field name → values, in order
	data   string
}

// readSSE parses a whole event stream strictly: it fails the test on id:
// or retry: fields, events without data, non-JSON or non-ASCII data.
func readSSE(t *testing.T, r io.Reader) (events []sseEvent, comments int) {
	t.Helper()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	cur := sseEvent{fields: map[string][]string{}}
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if len(cur.fields) > 0 {
				if _, ok := cur.fields["data"]; !ok {
					t.Fatalf("event without data: %v", cur.fields)
				}
				cur.data = strings.Join(cur.fields["data"], "\n")
				events = append(events, cur)
			}
			cur = sseEvent{fields: map[string][]string{}}
			continue
		}
		if strings.HasPrefix(line, ":") {
			comments++
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		if name != "data" && name != "event" {
			t.Fatalf("forbidden SSE field %q in line %q", name, line)
		}
		cur.fields[name] = append(cur.fields[name], value)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(cur.fields) > 0 {
		t.Fatalf("stream ended inside an event: %v", cur.fields)
	}
	for _, ev := range events {
		for i := 0; i < len(ev.data); i++ {
			if ev.data[i] >= 0x80 {
				t.Fatalf("non-ASCII byte in event data %q", ev.data)
			}
		}
		if !json.Valid([]byte(ev.data)) {
			t.Fatalf("event data is not JSON: %q", ev.data)
		}
	}
	return events, comments
}

// compactJSON re-encodes JSON canonically (escapes resolved, keys sorted),
// so documents compare by meaning.
func compactJSON(t *testing.T, raw []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("decode: %v\n%s", err, raw)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// partURL derives a multipart upload's part or complete URL from its
// upload_url as fal's JS client does: {origin}{pathname}/{suffix}{search}.
func partURL(uploadURL, suffix string) string {
	base, query, _ := strings.Cut(uploadURL, "?")
	if query != "" {
		query = "?" + query
	}
	return base + "/" + suffix + query
}
