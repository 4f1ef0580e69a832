// Package storagetest runs an in-process, in-memory S3-compatible server
// (gofakes3) for tests of the S3 store and of code on top of it. It needs
// no external tool, so tests that use it always run.
package storagetest

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// Credentials and region the fake server is used with. gofakes3 checks
// neither; they exist so the client signs requests as it would for AWS.
const (
	AccessKey = "test-access-key"
	SecretKey = "test-secret-key"
	Region    = "us-east-1"
)

// FakeS3 is a running fake S3 server. Several stores opened against it
// share its buckets, like processes on different hosts share a bucket.
//
// It serves https with a test certificate: over plain http the S3 client
// signs part uploads with aws-chunked streaming signatures, which gofakes3
// stores undecoded; over https the client sends parts as they are, as it
// does against AWS.
type FakeS3 struct {
	// Endpoint is host:port of the https server.
	Endpoint string
	// Transport trusts the server's certificate.
	Transport http.RoundTripper
	// HTTPEndpoint is host:port of the same server over plain http, for
	// configurations that cannot carry Transport (-s3-insecure). Keep to
	// objects under the part size there: multipart parts sent over plain
	// http are stored with their aws-chunked framing.
	HTTPEndpoint string
	// Clock is the server's clock: it stamps LastModified and the
	// initiation time of multipart uploads.
	Clock *Clock

	mu      sync.Mutex
	observe func(*http.Request)
	servers []*httptest.Server
}

// New starts a fake S3 server with the given buckets; it stops when the
// test ends.
func New(t testing.TB, buckets ...string) *FakeS3 {
	t.Helper()
	clock := &Clock{}
	backend := s3mem.New(s3mem.WithTimeSource(clock))
	for _, b := range buckets {
		if err := backend.CreateBucket(b); err != nil {
			t.Fatalf("fake S3: create bucket %s: %v", b, err)
		}
	}
	// The skew check is off: tests move the server clock to age objects.
	faker := gofakes3.New(backend, gofakes3.WithTimeSource(clock), gofakes3.WithTimeSkewLimit(0))
	f := &FakeS3{Clock: clock}
	handler := faker.Server()
	observed := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		observe := f.observe
		f.mu.Unlock()
		if observe != nil {
			observe(r)
		}
		handler.ServeHTTP(w, r)
	})
	server := httptest.NewTLSServer(observed)
	t.Cleanup(server.Close)
	plain := httptest.NewServer(observed)
	t.Cleanup(plain.Close)
	f.Endpoint = strings.TrimPrefix(server.URL, "https://")
	f.Transport = server.Client().Transport
	f.HTTPEndpoint = strings.TrimPrefix(plain.URL, "http://")
	f.servers = []*httptest.Server{server, plain}
	return f
}

// Stop shuts the server down before the test ends: an outage.
func (f *FakeS3) Stop() {
	for _, s := range f.servers {
		s.Close()
	}
}

// Observe calls fn with every request before the server handles it (nil:
// stop observing). fn must not read the body.
func (f *FakeS3) Observe(fn func(*http.Request)) {
	f.mu.Lock()
	f.observe = fn
	f.mu.Unlock()
}

// Clock is a time source that runs with real time plus an offset.
type Clock struct {
	mu     sync.Mutex
	offset time.Duration
}

// Now is real time plus the offset, in UTC as S3 reports it.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset).UTC()
}

// Since is the duration from t to Now.
func (c *Clock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// Shift moves the clock by d (negative: into the past) until the returned
// function restores it.
func (c *Clock) Shift(d time.Duration) (restore func()) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		c.offset -= d
		c.mu.Unlock()
	}
}
