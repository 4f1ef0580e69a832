package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/kleinserve/kleinserve/internal/storage/storagetest"
)

// pattern yields n deterministic bytes, the same however they are read.
func pattern(n int) *io.LimitedReader {
	return &io.LimitedReader{R: &patternReader{}, N: int64(n)}
}

type patternReader struct{ pos int }

func (r *patternReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r.pos*7 + r.pos/251)
		r.pos++
	}
	return len(p), nil
}

func hashOf(r io.Reader) [32]byte {
	h := sha256.New()
	io.Copy(h, r)
	return [32]byte(h.Sum(nil))
}

// gatedReader yields first, then waits until open is closed before
// yielding rest: a body whose end arrives only after the store has acted.
type gatedReader struct {
	first, rest io.Reader
	open        <-chan struct{}
	t           *testing.T
}

func (g *gatedReader) Read(p []byte) (int, error) {
	n, err := g.first.Read(p)
	if err != io.EOF {
		return n, err
	}
	if g.open != nil {
		select {
		case <-g.open:
		case <-time.After(30 * time.Second): // a deadlock guard, not a timing assertion
			g.t.Error("the store waited for the whole body before sending any part to S3")
			return 0, errors.New("gate never opened")
		}
		g.open = nil
	}
	return g.rest.Read(p)
}

// TestS3StreamsLargeUpload checks that an upload larger than the part size
// goes to the bucket part by part while the body is still arriving.
func TestS3StreamsLargeUpload(t *testing.T) {
	fake := storagetest.New(t, "kleinserve")
	s := openFakeS3(t, fake, "p", Options{PublicURL: testPublicURL, MaxUploadBytes: 16 << 20})
	ctx := context.Background()
	firstPart := make(chan struct{})
	var once sync.Once
	fake.Observe(func(r *http.Request) {
		q := r.URL.Query()
		if r.Method == http.MethodPut && q.Get("uploadId") != "" && q.Get("partNumber") == "1" &&
			strings.Contains(r.URL.Path, "/files/") {
			once.Do(func() { close(firstPart) })
		}
	})
	const size = minPartSize*2 + 12345
	all := pattern(size)
	body := &gatedReader{first: io.LimitReader(all, minPartSize+1), rest: all, open: firstPart, t: t}

	up, _ := s.InitiateUpload(ctx, "application/octet-stream", "big.bin")
	f, err := s.CompleteUpload(ctx, up.ID, up.Token, body, "")
	if err != nil {
		t.Fatal(err)
	}
	if f.Size != size {
		t.Fatalf("size %d, want %d", f.Size, size)
	}
	obj, err := s.client.GetObject(ctx, s.bucket, s.fileName(f.Key), minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	if hashOf(obj) != hashOf(pattern(size)) {
		t.Fatal("stored bytes differ from the upload")
	}

	// A large multipart upload: parts over the S3 part size, joined by
	// streaming them back.
	mp, _ := s.InitiateMultipartUpload(ctx, "application/octet-stream", "big.bin")
	p1, err := s.PutPart(ctx, mp.ID, mp.Token, 1, io.LimitReader(pattern(size), minPartSize+100))
	if err != nil {
		t.Fatal(err)
	}
	p2, err := s.PutPart(ctx, mp.ID, mp.Token, 2, bytes.NewReader(make([]byte, 10)))
	if err != nil {
		t.Fatal(err)
	}
	f, err = s.CompleteMultipart(ctx, mp.ID, mp.Token, []Part{p1, p2})
	if err != nil || f.Size != minPartSize+110 {
		t.Fatalf("multipart %+v, %v", f, err)
	}
	want := io.MultiReader(io.LimitReader(pattern(size), minPartSize+100), bytes.NewReader(make([]byte, 10)))
	obj2, _ := s.client.GetObject(ctx, s.bucket, s.fileName(f.Key), minio.GetObjectOptions{})
	defer obj2.Close()
	if hashOf(obj2) != hashOf(want) {
		t.Fatal("joined bytes differ from the parts")
	}
	// Parts and staging record are gone.
	for obj := range s.client.ListObjectsIter(ctx, s.bucket, minio.ListObjectsOptions{Prefix: "p/uploads/", Recursive: true}) {
		t.Errorf("left behind: %s %v", obj.Key, obj.Err)
	}
}

// TestS3OversizeStreamStoresNothing: an upload that passes the limit after
// some parts went to S3 is aborted, leaving neither a file nor an
// incomplete S3 multipart upload.
func TestS3OversizeStreamStoresNothing(t *testing.T) {
	fake := storagetest.New(t, "kleinserve")
	s := openFakeS3(t, fake, "p", Options{PublicURL: testPublicURL, MaxUploadBytes: minPartSize*2 + 1})
	ctx := context.Background()
	up, _ := s.InitiateUpload(ctx, "", "big.bin")
	if _, err := s.CompleteUpload(ctx, up.ID, up.Token, pattern(minPartSize*3), ""); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversize stream: %v", err)
	}
	if _, err := s.Stat(ctx, keyOf(up.FileURL)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("file visible: %v", err)
	}
	res, err := minio.Core{Client: s.client}.ListMultipartUploads(ctx, s.bucket, "", "", "", "", 1000)
	if err != nil && !isNoSuchUpload(err) {
		t.Fatal(err)
	}
	if len(res.Uploads) != 0 {
		t.Fatalf("incomplete uploads left: %+v", res.Uploads)
	}
	// The upload id stays usable for a correct retry.
	if f, err := s.CompleteUpload(ctx, up.ID, up.Token, pattern(100), ""); err != nil || f.Size != 100 {
		t.Fatalf("retry %+v, %v", f, err)
	}
}

func TestS3JanitorAbortsStaleMultipartUploads(t *testing.T) {
	fake := storagetest.New(t, "kleinserve")
	s := openFakeS3(t, fake, "p", smallLimit())
	ctx := context.Background()
	core := minio.Core{Client: s.client}
	restore := fake.Clock.Shift(-2 * time.Hour)
	stale, err := core.NewMultipartUpload(ctx, s.bucket, "p/files/stale.bin", minio.PutObjectOptions{})
	restore()
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := core.NewMultipartUpload(ctx, s.bucket, "p/files/fresh.bin", minio.PutObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := core.NewMultipartUpload(ctx, s.bucket, "other/stale.bin", minio.PutObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteOlderThan(ctx, time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	res, err := core.ListMultipartUploads(ctx, s.bucket, "", "", "", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	left := map[string]bool{}
	for _, u := range res.Uploads {
		left[u.UploadID] = true
	}
	if left[stale] || !left[fresh] || !left[other] {
		t.Fatalf("uploads left %v (stale %s fresh %s other %s)", left, stale, fresh, other)
	}
}

// TestS3PrefixesAreSeparate: deployments sharing a bucket under different
// prefixes neither see nor expire each other's files.
func TestS3PrefixesAreSeparate(t *testing.T) {
	fake := storagetest.New(t, "kleinserve")
	a := openFakeS3(t, fake, "a", smallLimit())
	b := openFakeS3(t, fake, "b/", smallLimit())
	ctx := context.Background()
	f, _ := a.Save(ctx, []byte("x"), "image/png", "png")
	if _, err := b.Stat(ctx, f.Key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("file of prefix a seen under b: %v", err)
	}
	if n, err := b.DeleteOlderThan(ctx, time.Now().Add(time.Hour)); err != nil || n != 0 {
		t.Fatalf("b's janitor deleted %d, %v", n, err)
	}
	if _, err := a.Stat(ctx, f.Key); err != nil {
		t.Fatal(err)
	}
	// The documented object layout: <prefix>/files/<key> with the type and
	// original name as object metadata.
	info, err := a.client.StatObject(ctx, "kleinserve", "a/files/"+f.Key, minio.StatObjectOptions{})
	if err != nil || info.ContentType != "image/png" || info.UserMetadata[fileNameMeta] != f.Key {
		t.Fatalf("object %+v, %v", info, err)
	}
}

func TestOpenS3Errors(t *testing.T) {
	fake := storagetest.New(t, "kleinserve")
	base := S3Options{Endpoint: fake.Endpoint, Region: storagetest.Region, AccessKey: storagetest.AccessKey,
		SecretKey: storagetest.SecretKey, Transport: fake.Transport, PathStyle: true, Bucket: "kleinserve"}
	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	for name, tc := range map[string]struct {
		edit func(*S3Options)
		want string
	}{
		"missing bucket": {func(o *S3Options) { o.Bucket = "nope" }, `bucket "nope" does not exist`},
		"unreachable":    {func(o *S3Options) { o.Endpoint = closed }, "unreachable"},
		"small parts":    {func(o *S3Options) { o.PartSize = 1 << 20 }, "part size"},
		"no bucket":      {func(o *S3Options) { o.Bucket = "" }, "no S3 bucket"},
	} {
		t.Run(name, func(t *testing.T) {
			o := base
			tc.edit(&o)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, err := OpenS3(ctx, o, Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestS3PingFailsWhenTheStoreIsDown(t *testing.T) {
	fake := storagetest.New(t, "kleinserve")
	s := openFakeS3(t, fake, "p", smallLimit())
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	fake.Stop()
	if err := s.Ping(context.Background()); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("ping of a stopped store: %v", err)
	}
}

// TestS3OverPlainHTTP covers -s3-insecure (an http endpoint, as for a MinIO
// on a private network).
func TestS3OverPlainHTTP(t *testing.T) {
	fake := storagetest.New(t, "kleinserve")
	s, err := OpenS3(context.Background(), S3Options{Endpoint: fake.HTTPEndpoint, Region: storagetest.Region,
		AccessKey: storagetest.AccessKey, SecretKey: storagetest.SecretKey, Insecure: true, Bucket: "kleinserve"}, smallLimit())
	if err != nil {
		t.Fatal(err)
	}
	f, err := s.Save(context.Background(), []byte("PNGDATA"), "image/png", "png")
	if err != nil {
		t.Fatal(err)
	}
	if got := get(t, s, f.Key); got.body != "PNGDATA" || got.header.Get("Content-Type") != "image/png" {
		t.Fatalf("served %+v", got)
	}
}
