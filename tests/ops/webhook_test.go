package ops

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kleinserve/kleinserve/internal/queue"
	"github.com/kleinserve/kleinserve/internal/queue/boltstore"
	"github.com/kleinserve/kleinserve/internal/testenv"
)

// TestWebhookSignatureSnippet runs the receiver's verification snippet of
// docs/operations.md, in Python, against a real signed delivery: it
// accepts it, and refuses a changed body, another secret and an old
// timestamp.
func TestWebhookSignatureSnippet(t *testing.T) {
	python := testenv.RequireTool(t, "python3")
	snippet := pythonBlock(t, docSection(t, "Webhook signatures"))
	const secret = "whsec_c25pcHBldC10ZXN0LWtleS0wMTIzNDU2Nzg5YWI=" // 29 bytes

	type delivery struct {
		Headers map[string]string `json:"headers"`
		Body    string            `json:"body"`
	}
	got := make(chan delivery, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h := map[string]string{}
		for k := range r.Header {
			h[strings.ToLower(k)] = r.Header.Get(k)
		}
		got <- delivery{Headers: h, Body: string(b)}
	}))
	defer srv.Close()
	store, err := boltstore.Open(context.Background(), filepath.Join(t.TempDir(), "queue.db"))
	if err != nil {
		t.Fatal(err)
	}
	q, err := queue.Open(store, queue.Options{
		Describe: func(err error) queue.Failure { return queue.Failure{HTTPStatus: 500, Message: err.Error()} },
		Webhook:  queue.WebhookOptions{Secret: secret}, Logger: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	q.Start(func(ctx context.Context, job *queue.Job, log queue.LogFunc) (json.RawMessage, error) {
		return json.RawMessage(`{"images":[],"seed":7}`), nil
	})
	if _, err := q.Submit(context.Background(), queue.SubmitRequest{ID: "req-42", Payload: json.RawMessage(`{}`),
		WebhookURL: srv.URL}); err != nil {
		t.Fatal(err)
	}
	var d delivery
	select {
	case d = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery")
	}

	harness := snippet + `
import json, sys
case = json.load(sys.stdin)
print(verify(case["secret"], case["headers"], case["body"].encode()))
`
	verify := func(secret string, d delivery) string {
		t.Helper()
		in, _ := json.Marshal(map[string]any{"secret": secret, "headers": d.Headers, "body": d.Body})
		cmd := exec.Command(python, "-c", harness)
		cmd.Stdin = strings.NewReader(string(in))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("the snippet failed: %v\n%s\n%s", err, out, snippet)
		}
		return strings.TrimSpace(string(out))
	}
	if v := verify(secret, d); v != "True" {
		t.Fatalf("the snippet refused a real delivery: %s\nheaders %v", v, d.Headers)
	}
	changed := d
	changed.Body = strings.Replace(d.Body, `"seed":7`, `"seed":8`, 1)
	old := d
	old.Headers = map[string]string{}
	for k, v := range d.Headers {
		old.Headers[k] = v
	}
	old.Headers["webhook-timestamp"] = "1700000000"
	for name, tc := range map[string]struct {
		secret string
		d      delivery
	}{
		"changed body":  {secret, changed},
		"other secret":  {"another secret, raw bytes", d},
		"old timestamp": {secret, old},
	} {
		if v := verify(tc.secret, tc.d); v != "False" {
			t.Errorf("%s: the snippet says %s", name, v)
		}
	}
}

// pythonBlock returns the one ```python block of a section.
func pythonBlock(t *testing.T, lines []string) string {
	t.Helper()
	var b strings.Builder
	in, n := false, 0
	for _, l := range lines {
		switch {
		case strings.TrimSpace(l) == "```python":
			in = true
			n++
		case in && strings.TrimSpace(l) == "```":
			in = false
		case in:
			b.WriteString(l + "\n")
		}
	}
	if n != 1 {
		t.Fatalf("want one python block, found %d", n)
	}
	return b.String()
}
