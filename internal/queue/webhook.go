package queue

import (
	"bytes"
	"container/heap"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kleinserve/kleinserve/internal/netguard"
	"github.com/kleinserve/kleinserve/internal/wire"
)

// WebhookOptions configures webhook delivery. Zero values get defaults.
type WebhookOptions struct {
	// Client sends the POSTs (default: a plain http.Client). Whatever its
	// CheckRedirect, redirects are never followed: a redirect would carry
	// the body to a URL nobody vetted, so a 3xx answer is a failed attempt.
	// Restricting where it may connect is the client's job (its dialer).
	Client *http.Client
	// Redact rewrites a webhook URL for log lines and stored errors
	// (default netguard.Redact): the URL may carry credentials.
	Redact func(string) string
	// Secret, when set, signs every delivery with the Standard Webhooks
	// scheme (see SignWebhook); it is parsed by ParseWebhookSecret.
	Secret string
	// MaxAttempts bounds deliveries per job (default 10).
	MaxAttempts int
	// BaseDelay is the first retry delay; it doubles per attempt (default 5s).
	BaseDelay time.Duration
	// MaxDelay caps the retry delay (default 10m).
	MaxDelay time.Duration
	// Timeout bounds one attempt (default 15s).
	Timeout time.Duration
	// Concurrency bounds parallel deliveries (default 4).
	Concurrency int
}

// webhookDispatcher delivers finished jobs' webhooks with retries and
// exponential backoff. Its state (attempts, next attempt, delivered) is
// stored in the job, so deliveries resume after a restart.
type webhookDispatcher struct {
	q      *Queue
	opts   WebhookOptions
	client *http.Client
	key    []byte // signing key; nil: unsigned

	mu    sync.Mutex
	due   deadlineHeap // reuses the (time, id) min-heap
	kick  chan struct{}
	queue map[string]bool // ids in due, to avoid double scheduling
}

func newWebhookDispatcher(q *Queue, opts WebhookOptions) (*webhookDispatcher, error) {
	if opts.Client == nil {
		opts.Client = &http.Client{}
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 10
	}
	if opts.BaseDelay <= 0 {
		opts.BaseDelay = 5 * time.Second
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = 10 * time.Minute
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 15 * time.Second
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 4
	}
	if opts.Redact == nil {
		opts.Redact = netguard.Redact
	}
	client := *opts.Client
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	w := &webhookDispatcher{q: q, opts: opts, client: &client, kick: make(chan struct{}, 1), queue: map[string]bool{}}
	if opts.Secret != "" {
		var err error
		if w.key, err = ParseWebhookSecret(opts.Secret); err != nil {
			return nil, fmt.Errorf("queue: webhook secret: %w", err)
		}
	}
	return w, nil
}

// schedule plans a delivery attempt of job id at time at.
func (w *webhookDispatcher) schedule(id string, at time.Time) {
	w.mu.Lock()
	if !w.queue[id] {
		w.queue[id] = true
		heap.Push(&w.due, deadlineEntry{at: at, id: id})
	}
	w.mu.Unlock()
	poke(w.kick)
}

// next pops the ids due now and returns the wait until the next one.
func (w *webhookDispatcher) next(now time.Time) ([]string, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var ids []string
	for len(w.due) > 0 && !w.due[0].at.After(now) {
		e := heap.Pop(&w.due).(deadlineEntry)
		delete(w.queue, e.id)
		ids = append(ids, e.id)
	}
	wait := time.Hour
	if len(w.due) > 0 {
		wait = w.due[0].at.Sub(now)
	}
	return ids, wait
}

// run is the dispatcher loop; it returns when ctx is canceled, after the
// attempts in flight have ended.
func (w *webhookDispatcher) run(ctx context.Context) {
	slots := make(chan struct{}, w.opts.Concurrency)
	var inflight sync.WaitGroup
	defer inflight.Wait()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		ids, wait := w.next(w.q.opts.Now())
		for _, id := range ids {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			inflight.Add(1)
			go func() {
				defer inflight.Done()
				defer func() { <-slots }()
				w.attempt(ctx, id)
			}()
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-w.kick:
		}
	}
}

// attempt makes one delivery and records the outcome.
func (w *webhookDispatcher) attempt(ctx context.Context, id string) {
	log := w.q.log.With().Str("request_id", id).Logger()
	opCtx, cancel := context.WithTimeout(ctx, storeOpTimeout)
	job, err := w.q.store.Get(opCtx, id, PartResult)
	cancel()
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			log.Error().Err(err).Msg("webhook: load job")
		}
		return
	}
	if !job.Webhook.Pending() {
		return
	}
	body, err := webhookBody(job)
	if err != nil {
		log.Error().Err(err).Msg("webhook: build body")
		return
	}
	sendErr := w.post(ctx, job, body)
	if ctx.Err() != nil {
		return // shutting down: the attempt is not counted and resumes later
	}
	now := w.q.opts.Now()
	var retryAt time.Time
	opCtx, cancel = context.WithTimeout(ctx, storeOpTimeout)
	defer cancel()
	_, err = w.q.store.Update(opCtx, id, func(j *Job) error {
		if !j.Webhook.Pending() {
			return errStateChanged
		}
		j.Webhook.Attempts++
		switch {
		case sendErr == nil:
			j.Webhook.Delivered = true
			j.Webhook.LastError = ""
		case j.Webhook.Attempts >= w.opts.MaxAttempts:
			j.Webhook.GaveUp = true
			j.Webhook.LastError = sendErr.Error()
		default:
			j.Webhook.LastError = sendErr.Error()
			j.Webhook.NextAttempt = now.Add(w.backoff(j.Webhook.Attempts))
			retryAt = j.Webhook.NextAttempt
		}
		return nil
	})
	if err != nil {
		if !errors.Is(err, errStateChanged) && !errors.Is(err, ErrNotFound) {
			log.Error().Err(err).Msg("webhook: record attempt")
		}
		return
	}
	url := w.opts.Redact(job.Webhook.URL)
	switch {
	case sendErr == nil:
		log.Info().Str("url", url).Msg("webhook delivered")
	case retryAt.IsZero():
		log.Warn().Err(sendErr).Str("url", url).Msg("webhook failed; giving up")
	default:
		log.Warn().Err(sendErr).Str("url", url).Time("retry_at", retryAt).Msg("webhook failed; will retry")
		w.schedule(id, retryAt)
	}
}

// backoff is BaseDelay·2^(attempts-1), capped at MaxDelay, with ±20 % jitter
// so that many failing webhooks do not retry in lockstep.
func (w *webhookDispatcher) backoff(attempts int) time.Duration {
	d := w.opts.BaseDelay
	for i := 1; i < attempts && d < w.opts.MaxDelay; i++ {
		d *= 2
	}
	d = min(d, w.opts.MaxDelay)
	jitter := 0.8 + 0.4*rand.Float64()
	return time.Duration(float64(d) * jitter)
}

// post makes one delivery. Its error never holds the URL in clear: it is
// stored in the job and logged.
func (w *webhookDispatcher) post(ctx context.Context, job *Job, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, w.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, job.Webhook.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("build request for %s: %w", w.opts.Redact(job.Webhook.URL), unwrapURLError(err))
	}
	now := w.q.opts.Now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "kleinserve-webhook/1")
	req.Header.Set("X-Fal-Webhook-Request-Id", job.ID)
	req.Header.Set("X-Fal-Webhook-Timestamp", strconv.FormatInt(now.Unix(), 10))
	if w.key != nil {
		for k, v := range SignWebhook(w.key, job.ID, now, body) {
			req.Header[k] = v
		}
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("post to %s: %w", w.opts.Redact(job.Webhook.URL), unwrapURLError(err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode <= 399:
		return fmt.Errorf("post: status %d: redirects are not followed", resp.StatusCode)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return fmt.Errorf("post: status %d", resp.StatusCode)
	}
	return nil
}

// unwrapURLError drops the *url.Error layer of an HTTP client error, whose
// message repeats the URL in clear (the caller names it redacted).
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// webhookSecretPrefix marks a Standard Webhooks secret: base64 after it.
const webhookSecretPrefix = "whsec_"

// MinWebhookKeyBytes is the shortest signing key accepted: 128 bits, so
// that a signature cannot be forged by guessing the secret.
const MinWebhookKeyBytes = 16

// ParseWebhookSecret returns the signing key of a webhook secret: a
// "whsec_<base64>" secret (the Standard Webhooks form) is base64-decoded;
// any other string is used as its raw bytes. The key must have at least
// MinWebhookKeyBytes bytes.
func ParseWebhookSecret(secret string) ([]byte, error) {
	key := []byte(secret)
	if b64, ok := strings.CutPrefix(secret, webhookSecretPrefix); ok {
		var err error
		if key, err = base64.StdEncoding.DecodeString(b64); err != nil {
			if key, err = base64.RawStdEncoding.DecodeString(b64); err != nil {
				return nil, fmt.Errorf("the part after %s is not base64: %w", webhookSecretPrefix, err)
			}
		}
	}
	if len(key) < MinWebhookKeyBytes {
		return nil, fmt.Errorf("the key has %d bytes, want at least %d (e.g. %s and the base64 of 32 random bytes)",
			len(key), MinWebhookKeyBytes, webhookSecretPrefix)
	}
	return key, nil
}

// SignWebhook returns the Standard Webhooks headers of a delivery
// (https://www.standardwebhooks.com): webhook-id (the request id, the same
// on every attempt, so receivers can drop duplicates), webhook-timestamp
// (unix seconds) and webhook-signature, "v1," and the base64 HMAC-SHA256
// under key of id + "." + timestamp + "." + body.
func SignWebhook(key []byte, id string, at time.Time, body []byte) http.Header {
	ts := strconv.FormatInt(at.Unix(), 10)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	h := http.Header{}
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", ts)
	h.Set("webhook-signature", "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	return h
}

// webhookBody is fal's webhook payload: the output on success, the error
// body and "Invalid status code: N" on failure.
func webhookBody(job *Job) ([]byte, error) {
	b := wire.WebhookBody{RequestID: job.ID, GatewayRequestID: job.ID}
	if job.Failure == nil {
		b.Status = wire.WebhookStatusOK
		b.Payload = job.Result
	} else {
		b.Status = wire.WebhookStatusError
		b.Payload = job.Failure.Body
		msg := fmt.Sprintf("Invalid status code: %d", job.Failure.HTTPStatus)
		b.Error = &msg
	}
	if len(b.Payload) == 0 {
		b.Payload = json.RawMessage("null")
	}
	return json.Marshal(b)
}
