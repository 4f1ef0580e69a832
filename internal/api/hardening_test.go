package api

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kleinserve/kleinserve/internal/netguard"
	"github.com/kleinserve/kleinserve/internal/queue"
)

// rawExchange writes raw bytes on a new connection, half-closes it when
// closeWrite is set, and reads one response.
func rawExchange(t *testing.T, base, raw string, closeWrite bool) (*http.Response, net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	if closeWrite {
		c.(*net.TCPConn).CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	return resp, c
}

// TestBrokenBodiesAre400: a truncated body and a malformed chunked body
// are the client's fault (they answered 500 before).
func TestBrokenBodiesAre400(t *testing.T) {
	env := newEnv(t, envOptions{})
	for name, raw := range map[string]string{
		"truncated": "POST " + runPath + " HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"prompt\":",
		"bad chunk": "POST " + runPath + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{\"prompt\"\r\n0\r\n\r\n",
	} {
		resp, _ := rawExchange(t, env.base, raw, true)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "bad_request") {
			t.Errorf("%s: %d %s", name, resp.StatusCode, body)
		}
	}
}

// TestSlowBodyTimesOut: a keyed client that stalls mid-body is cut off with
// a 408 by the pace deadline instead of holding its connection forever.
func TestSlowBodyTimesOut(t *testing.T) {
	env := newEnv(t, envOptions{keys: []string{"k1"},
		pace: Pace{BodyGrace: 300 * time.Millisecond, BodyIdle: 200 * time.Millisecond}})
	resp, _ := rawExchange(t, env.base, "POST "+runPath+" HTTP/1.1\r\nHost: x\r\nAuthorization: Key k1\r\n"+
		"Content-Length: 1000\r\n\r\n{\"prompt\":", false)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Fatalf("stalled body: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	if n := env.engine.calls.Load(); n != 0 {
		t.Fatalf("%d generations from a stalled body", n)
	}
}

// TestUnauthorizedBeforeBody: without a valid key the answer comes before
// the body is read, and the connection is closed even though the client
// is still (slowly) sending, so it cannot hold a descriptor.
func TestUnauthorizedBeforeBody(t *testing.T) {
	env := newEnv(t, envOptions{keys: []string{"k1"}})
	start := time.Now()
	resp, c := rawExchange(t, env.base, "POST "+runPath+" HTTP/1.1\r\nHost: x\r\nContent-Length: 1024\r\n\r\n{\"pro", false)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// The server closes its side: the next read ends (EOF or reset) long
	// before the client would have finished its body.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1)
	_, err := c.Read(buf)
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("connection still open %v after the 401 (read: %v)", time.Since(start), err)
	}
}

// TestInternalErrorsStayInside: an engine failure reaches the client as a
// fixed message, in the live answer, the stored result and the status.
func TestInternalErrorsStayInside(t *testing.T) {
	env := newEnv(t, envOptions{})
	env.engine.fail = errors.New("device lost at /opt/secret/path")
	r := env.do("POST", runPath, `{"prompt":"x","num_inference_steps":1}`, nil)
	if r.status != 500 || strings.Contains(string(r.body), "secret") || strings.Contains(string(r.body), "device lost") {
		t.Fatalf("sync run: %d %s", r.status, r.body)
	}
	id := env.submit(`{"prompt":"x","num_inference_steps":1}`)
	env.waitJob(id, queue.StatusCompleted)
	for _, path := range []string{reqPrefix + id, reqPrefix + id + "/status?logs=1"} {
		r = env.do("GET", path, "", nil)
		if strings.Contains(string(r.body), "secret") || !strings.Contains(string(r.body), "Internal server error") {
			t.Fatalf("%s: %d %s", path, r.status, r.body)
		}
	}
}

// TestPrivateFiles: with PrivateFiles a stored file needs a key; without,
// its URL is the capability.
func TestPrivateFiles(t *testing.T) {
	for _, private := range []bool{false, true} {
		env := newEnv(t, envOptions{keys: []string{"k1"}, privateFiles: private})
		key := map[string]string{"Authorization": "Key k1"}
		r := env.do("POST", runPath, `{"prompt":"x","num_inference_steps":1,"image_size":"square"}`, key)
		url := r.json(t)["images"].([]any)[0].(map[string]any)["url"].(string)
		anon := env.do("GET", url, "", nil).status
		keyed := env.do("GET", url, "", key).status
		if keyed != 200 || (private && anon != 401) || (!private && anon != 200) {
			t.Fatalf("private=%v: anonymous %d, keyed %d", private, anon, keyed)
		}
	}
}

// TestRequestsBelongToTheirKey: with several keys, a request is visible
// only to the key that made it; others get 404 as for an unknown id (they
// could read k1's status, logs and result and cancel it before).
func TestRequestsBelongToTheirKey(t *testing.T) {
	env := newEnv(t, envOptions{keys: []string{"k1", "k2"}})
	k1 := map[string]string{"Authorization": "Key k1"}
	k2 := map[string]string{"Authorization": "Key k2"}
	env.engine.hold = make(chan struct{})
	r := env.do("POST", submitPath, `{"prompt":"mine","num_inference_steps":1}`, k1)
	if r.status != 200 {
		t.Fatalf("submit: %d %s", r.status, r.body)
	}
	id := r.json(t)["request_id"].(string)
	for _, c := range []struct{ method, path string }{
		{"GET", reqPrefix + id + "/status?logs=1"}, {"GET", reqPrefix + id + "/status/stream"},
		{"GET", reqPrefix + id}, {"PUT", reqPrefix + id + "/cancel"},
		{"GET", "/queue/fal-ai/flux-2/klein/4b/base/requests/" + id + "/status"},
	} {
		if r := env.do(c.method, c.path, "", k2); r.status != 404 {
			t.Errorf("k2 %s %s: %d %s", c.method, c.path, r.status, r.body)
		}
	}
	if r := env.do("GET", reqPrefix+id+"/status", "", k1); r.status != 202 {
		t.Fatalf("k1 status: %d %s", r.status, r.body)
	}
	close(env.engine.hold)
	env.waitJob(id, queue.StatusCompleted)
	if r := env.do("GET", reqPrefix+id, "", k1); r.status != 200 {
		t.Fatalf("k1 result: %d %s", r.status, r.body)
	}
	if r := env.do("GET", reqPrefix+id, "", k2); r.status != 404 {
		t.Fatalf("k2 result after completion: %d", r.status)
	}
	job, _ := env.queue.Get(context.Background(), id)
	if job.Owner == "" || strings.Contains(job.Owner, "k1") {
		t.Fatalf("stored owner %q", job.Owner)
	}
}

// TestWebhookAddressGuard: a webhook receiver on another loopback address
// (127.0.0.2) is refused at submit by default, naming fal_webhook, and so
// are the metadata address and numeric host spellings; with private URLs
// allowed, the delivery arrives.
func TestWebhookAddressGuard(t *testing.T) {
	got := make(chan struct{}, 1)
	receiver := serveOn(t, func(w http.ResponseWriter, r *http.Request) { got <- struct{}{} })
	env := newEnv(t, envOptions{})
	for _, hook := range []string{receiver + "/hook", "http://169.254.169.254/latest", "http://0x7f000001/",
		"http://2130706433/", "http://[::1]/", "http://10.0.0.1/", "http://metadata.google.internal/"} {
		r := env.do("POST", submitPath+"?fal_webhook="+url.QueryEscape(hook), `{"prompt":"x","num_inference_steps":1}`, nil)
		if r.status != 422 || !strings.Contains(string(r.body), `"fal_webhook"`) {
			t.Errorf("%s: %d %s", hook, r.status, r.body)
		}
	}
	allowed := newEnv(t, envOptions{urlPolicy: netguard.Policy{AllowPrivate: true}})
	allowed.submit2(t, `{"prompt":"x","num_inference_steps":1}`, "?fal_webhook="+url.QueryEscape(receiver+"/hook"))
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery with private URLs allowed")
	}
}

func (e *testEnv) submit2(t *testing.T, body, query string) {
	t.Helper()
	if r := e.do("POST", submitPath+query, body, nil); r.status != 200 {
		t.Fatalf("submit: %d %s", r.status, r.body)
	}
}
