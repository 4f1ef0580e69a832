package queue_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/kleinserve/kleinserve/internal/queue"
	"github.com/kleinserve/kleinserve/internal/testenv"
)

// delivery is one webhook POST as its receiver saw it.
type delivery struct {
	header http.Header
	body   []byte
}

// receiver records the POSTs it gets and answers them with status.
func receiver(t *testing.T, status int) (*httptest.Server, <-chan delivery) {
	t.Helper()
	got := make(chan delivery, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- delivery{header: r.Header.Clone(), body: b}
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

// finishedWithWebhook runs one job to completion on a new queue whose
// webhooks use opts and returns the queue.
func finishedWithWebhook(t *testing.T, url string, opts queue.WebhookOptions, logs io.Writer) *queue.Queue {
	t.Helper()
	opts.BaseDelay, opts.MaxDelay = time.Millisecond, 2*time.Millisecond
	store := openBolt(t, filepath.Join(t.TempDir(), "q.db"))
	q, err := queue.Open(store, queue.Options{Describe: describe, Webhook: opts, Logger: zerolog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	q.Start(func(ctx context.Context, job *queue.Job, log queue.LogFunc) (json.RawMessage, error) {
		return json.RawMessage(`{"images":[]}`), nil
	})
	submit(t, q, queue.SubmitRequest{ID: "req-1", WebhookURL: url})
	return q
}

// webhookState waits until the job's webhook is delivered or given up.
func webhookState(t *testing.T, q *queue.Queue) *queue.Webhook {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		j, err := q.Read(context.Background(), "req-1", 0)
		if err != nil {
			t.Fatal(err)
		}
		if j.Webhook != nil && (j.Webhook.Delivered || j.Webhook.GaveUp) {
			return j.Webhook
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook still pending: %+v", j.Webhook)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestWebhookSignature: with a secret, a delivery carries Standard
// Webhooks headers that the specification's reference library (an
// implementation independent of ours) verifies, for both secret forms.
func TestWebhookSignature(t *testing.T) {
	key := bytes.Repeat([]byte{0xa5, 0x17, 0x3c}, 8) // 24 bytes
	for _, tc := range []struct {
		name, secret string
		verifier     func() (*standardwebhooks.Webhook, error)
	}{
		{"whsec", "whsec_" + base64.StdEncoding.EncodeToString(key),
			func() (*standardwebhooks.Webhook, error) {
				return standardwebhooks.NewWebhook("whsec_" + base64.StdEncoding.EncodeToString(key))
			}},
		{"raw", "a raw shared secret, 34 bytes long",
			func() (*standardwebhooks.Webhook, error) {
				return standardwebhooks.NewWebhookRaw([]byte("a raw shared secret, 34 bytes long"))
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, got := receiver(t, http.StatusOK)
			q := finishedWithWebhook(t, srv.URL, queue.WebhookOptions{Secret: tc.secret}, io.Discard)
			d := <-got
			wh, err := tc.verifier()
			if err != nil {
				t.Fatal(err)
			}
			if err := wh.Verify(d.body, d.header); err != nil {
				t.Fatalf("reference verification: %v\nheaders %v", err, d.header)
			}
			if id := d.header.Get("webhook-id"); id != "req-1" || d.header.Get("X-Fal-Webhook-Request-Id") != "req-1" {
				t.Fatalf("ids: webhook-id %q, fal %q", id, d.header.Get("X-Fal-Webhook-Request-Id"))
			}
			// A changed body, or another secret, does not verify.
			if wh.Verify(append(d.body, ' '), d.header) == nil {
				t.Fatal("a changed body verified")
			}
			other, _ := standardwebhooks.NewWebhookRaw([]byte("another secret of some length"))
			if other.Verify(d.body, d.header) == nil {
				t.Fatal("another secret verified")
			}
			if w := webhookState(t, q); !w.Delivered || w.Attempts != 1 {
				t.Fatalf("webhook %+v", w)
			}
		})
	}
	// Without a secret nothing is signed.
	srv, got := receiver(t, http.StatusOK)
	finishedWithWebhook(t, srv.URL, queue.WebhookOptions{}, io.Discard)
	if d := <-got; d.header.Get("webhook-signature") != "" {
		t.Fatalf("unsigned delivery has %q", d.header.Get("webhook-signature"))
	}
}

// TestWebhookDoesNotFollowRedirects: a receiver that redirects gets the
// delivery once and the target never; the attempt fails, even with a
// client that would follow redirects.
func TestWebhookDoesNotFollowRedirects(t *testing.T) {
	target, hits := receiver(t, http.StatusOK)
	var redirects sync.WaitGroup
	redirects.Add(2)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer redirects.Done()
		http.Redirect(w, r, target.URL+"/internal", http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()
	follows := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return nil }}
	q := finishedWithWebhook(t, redirector.URL, queue.WebhookOptions{Client: follows, MaxAttempts: 2}, io.Discard)
	w := webhookState(t, q)
	redirects.Wait()
	if !w.GaveUp || w.Attempts != 2 || !strings.Contains(w.LastError, "status 307: redirects are not followed") {
		t.Fatalf("webhook %+v", w)
	}
	select {
	case d := <-hits:
		t.Fatalf("the redirect target got a delivery: %s", d.body)
	default:
	}
}

// TestWebhookURLsAreRedacted: credentials in a webhook URL reach neither
// the stored error nor the log, whether the receiver answers or cannot be
// reached; a Redact option replaces the default.
func TestWebhookURLsAreRedacted(t *testing.T) {
	srv, _ := receiver(t, http.StatusInternalServerError)
	unreachable := "http://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	for _, base := range []string{srv.URL, unreachable} {
		url := strings.Replace(base, "http://", "http://hookuser:hookpass@", 1) + "/hook?token=tok-secret&plain"
		var logs testenv.SyncBuffer
		q := finishedWithWebhook(t, url, queue.WebhookOptions{MaxAttempts: 1}, &logs)
		w := webhookState(t, q)
		waitLogged(t, &logs, "webhook failed; giving up") // logged after the state is stored
		out := w.LastError + "\n" + logs.String()
		for _, secret := range []string{"hookpass", "hookuser", "tok-secret", "plain"} {
			if strings.Contains(out, secret) {
				t.Fatalf("%q leaked:\n%s", secret, out)
			}
		}
		if !strings.Contains(logs.String(), "/hook?token=REDACTED&REDACTED") || w.LastError == "" {
			t.Fatalf("no redacted URL in the log:\n%s", out)
		}
	}
	var logs testenv.SyncBuffer
	q := finishedWithWebhook(t, unreachable+"/x", queue.WebhookOptions{MaxAttempts: 1,
		Redact: func(string) string { return "<webhook>" }}, &logs)
	w := webhookState(t, q)
	waitLogged(t, &logs, "webhook failed; giving up")
	if !strings.Contains(w.LastError, "post to <webhook>") || strings.Contains(logs.String(), unreachable) {
		t.Fatalf("custom redaction not used: %q\n%s", w.LastError, logs.String())
	}
}

// waitLogged waits until the log holds want.
func waitLogged(t *testing.T, logs *testenv.SyncBuffer, want string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), want); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the log lacks %q:\n%s", want, logs.String())
		}
	}
}

func TestParseWebhookSecret(t *testing.T) {
	key := []byte("0123456789abcdef0123")
	for in, want := range map[string]string{
		"whsec_" + base64.StdEncoding.EncodeToString(key):    string(key),
		"whsec_" + base64.RawStdEncoding.EncodeToString(key): string(key),
		"a plain secret that is long":                        "a plain secret that is long",
	} {
		got, err := queue.ParseWebhookSecret(in)
		if err != nil || string(got) != want {
			t.Errorf("ParseWebhookSecret(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "short", "whsec_", "whsec_!!!!", "whsec_" + base64.StdEncoding.EncodeToString([]byte("15 bytes only!!"))} {
		if _, err := queue.ParseWebhookSecret(bad); err == nil {
			t.Errorf("ParseWebhookSecret(%q) accepted", bad)
		}
	}
	store := openBolt(t, filepath.Join(t.TempDir(), "q.db"))
	defer store.Close(context.Background())
	if _, err := queue.Open(store, queue.Options{Describe: describe, Webhook: queue.WebhookOptions{Secret: "short"}}); err == nil ||
		!strings.Contains(err.Error(), "webhook secret") {
		t.Fatalf("Open with a bad secret: %v", err)
	}
}
