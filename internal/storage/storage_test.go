package storage

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/kleinserve/kleinserve/internal/storage/storagetest"
)

const testPublicURL = "http://127.0.0.1:9"

// medium is one shared storage medium (a directory, a bucket) on which a
// test opens one or more store instances, as processes on different hosts
// would.
type medium struct {
	// open opens a new store instance on the medium.
	open func(t *testing.T, opts Options) Store
	// backdate makes an entry (a path under the store root: files/<key>,
	// uploads/<id>.json) look last modified age ago.
	backdate func(t *testing.T, s Store, rel string, age time.Duration)
}

// media are the backends every behavioural test runs against.
var media = map[string]func(t *testing.T) medium{
	"local": func(t *testing.T) medium {
		root := t.TempDir()
		return medium{
			open: func(t *testing.T, opts Options) Store {
				s, err := OpenLocal(root, opts)
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
			backdate: func(t *testing.T, _ Store, rel string, age time.Duration) {
				past := time.Now().Add(-age)
				paths := []string{filepath.Join(root, rel)}
				if key, ok := strings.CutPrefix(rel, "files/"); ok {
					paths = append(paths, filepath.Join(root, "meta", key+".json"))
				}
				for _, p := range paths {
					if err := os.Chtimes(p, past, past); err != nil {
						t.Fatal(err)
					}
				}
			},
		}
	},
	"s3": func(t *testing.T) medium {
		fake := storagetest.New(t, "kleinserve")
		return medium{
			open: func(t *testing.T, opts Options) Store { return openFakeS3(t, fake, "deploy-a", opts) },
			backdate: func(t *testing.T, st Store, rel string, age time.Duration) {
				// Objects cannot be re-dated: write the same bytes and
				// metadata again while the server clock is in the past.
				s := st.(*S3)
				ctx := context.Background()
				name := s.prefix + rel
				info, err := s.client.StatObject(ctx, s.bucket, name, minio.StatObjectOptions{})
				if err != nil {
					t.Fatal(err)
				}
				obj, err := s.client.GetObject(ctx, s.bucket, name, minio.GetObjectOptions{})
				if err != nil {
					t.Fatal(err)
				}
				data, err := io.ReadAll(obj)
				obj.Close()
				if err != nil {
					t.Fatal(err)
				}
				restore := fake.Clock.Shift(-age)
				defer restore()
				_, err = s.client.PutObject(ctx, s.bucket, name, bytes.NewReader(data), int64(len(data)),
					minio.PutObjectOptions{ContentType: info.ContentType, UserMetadata: info.UserMetadata})
				if err != nil {
					t.Fatal(err)
				}
			},
		}
	},
}

func openFakeS3(t *testing.T, fake *storagetest.FakeS3, prefix string, opts Options) *S3 {
	t.Helper()
	s, err := OpenS3(context.Background(), S3Options{Endpoint: fake.Endpoint, Region: storagetest.Region,
		AccessKey: storagetest.AccessKey, SecretKey: storagetest.SecretKey, Transport: fake.Transport, PathStyle: true,
		Bucket: "kleinserve", Prefix: prefix, PartSize: minPartSize}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// forEachBackend runs test once per backend, each on a fresh medium.
func forEachBackend(t *testing.T, test func(t *testing.T, m medium)) {
	for _, name := range []string{"local", "s3"} {
		t.Run(name, func(t *testing.T) { test(t, media[name](t)) })
	}
}

func smallLimit() Options { return Options{PublicURL: testPublicURL + "/", MaxUploadBytes: 1024} }

type served struct {
	status int
	header http.Header
	body   string
}

func serveReq(t *testing.T, s Store, r *http.Request, key string) served {
	t.Helper()
	rec := httptest.NewRecorder()
	if err := s.Serve(rec, r, key); err != nil {
		t.Fatalf("serve %s: %v", key, err)
	}
	return served{rec.Code, rec.Header(), rec.Body.String()}
}

func get(t *testing.T, s Store, key string) served {
	t.Helper()
	return serveReq(t, s, httptest.NewRequest(http.MethodGet, "/files/"+key, nil), key)
}

func keyOf(url string) string { return url[strings.LastIndex(url, "/")+1:] }

func TestSaveStatServe(t *testing.T) {
	forEachBackend(t, func(t *testing.T, m medium) {
		s := m.open(t, smallLimit())
		ctx := context.Background()
		f, err := s.Save(ctx, []byte("PNGDATA"), "image/png", "png")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(f.URL, testPublicURL+"/files/") || !strings.HasSuffix(f.Key, ".png") || f.Size != 7 ||
			f.FileName != f.Key || f.URL != s.FileURL(f.Key) {
			t.Fatalf("file %+v", f)
		}
		st, err := s.Stat(ctx, f.Key)
		if err != nil || st != f {
			t.Fatalf("stat %+v, %v; saved %+v", st, err, f)
		}
		got := get(t, s, f.Key)
		if got.status != 200 || got.body != "PNGDATA" || got.header.Get("Content-Type") != "image/png" ||
			got.header.Get("X-Content-Type-Options") != "nosniff" || got.header.Get("Content-Security-Policy") != "sandbox" ||
			got.header.Get("Last-Modified") == "" {
			t.Fatalf("served %+v", got)
		}
		// Ranges: clients and browsers resume and seek.
		r := httptest.NewRequest(http.MethodGet, "/files/"+f.Key, nil)
		r.Header.Set("Range", "bytes=2-4")
		if got := serveReq(t, s, r, f.Key); got.status != http.StatusPartialContent || got.body != "GDA" {
			t.Fatalf("range: %+v", got)
		}
		head := serveReq(t, s, httptest.NewRequest(http.MethodHead, "/files/"+f.Key, nil), f.Key)
		if head.status != 200 || head.body != "" || head.header.Get("Content-Length") != "7" {
			t.Fatalf("head: %+v", head)
		}
	})
}

func TestNotFound(t *testing.T) {
	forEachBackend(t, func(t *testing.T, m medium) {
		s := m.open(t, smallLimit())
		ctx := context.Background()
		for _, key := range []string{"../meta/x.json", "abc.png", strings.Repeat("a", 32) + ".png", "", "../../etc/passwd"} {
			if err := s.Serve(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil), key); !errors.Is(err, ErrNotFound) {
				t.Errorf("serve %q: %v", key, err)
			}
			if _, err := s.Stat(ctx, key); !errors.Is(err, ErrNotFound) {
				t.Errorf("stat %q: %v", key, err)
			}
		}
		for _, id := range []string{"", "../../etc/passwd", "0123456789abcdef0123456789abcdef"} {
			if _, err := s.CompleteUpload(ctx, id, "", strings.NewReader("x"), ""); !errors.Is(err, ErrNotFound) {
				t.Errorf("complete %q: %v", id, err)
			}
			if _, err := s.PutPart(ctx, id, "", 1, strings.NewReader("x")); !errors.Is(err, ErrNotFound) {
				t.Errorf("part %q: %v", id, err)
			}
			if _, err := s.CompleteMultipart(ctx, id, "", []Part{{PartNumber: 1, ETag: "x"}}); !errors.Is(err, ErrNotFound) {
				t.Errorf("complete multipart %q: %v", id, err)
			}
		}
	})
}

// TestUploadAcrossHosts initiates on one store instance and PUTs through
// another: API processes behind a load balancer share the medium.
func TestUploadAcrossHosts(t *testing.T) {
	forEachBackend(t, func(t *testing.T, m medium) {
		hostA, hostB := m.open(t, smallLimit()), m.open(t, smallLimit())
		ctx := context.Background()
		up, err := hostA.InitiateUpload(ctx, "text/plain", "dir/résumé 1.txt")
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`^`+testPublicURL+`/storage/upload/[0-9a-f]{32}\?token=[0-9a-f]{32}$`).MatchString(up.UploadURL) ||
			!strings.HasSuffix(up.FileURL, ".txt") || !strings.Contains(up.UploadURL, "/"+up.ID+"?token="+up.Token) {
			t.Fatalf("upload %+v", up)
		}
		f, err := hostB.CompleteUpload(ctx, up.ID, up.Token, strings.NewReader("Hello, World!"), "text/plain;charset=utf-8")
		if err != nil {
			t.Fatal(err)
		}
		want := File{Key: keyOf(up.FileURL), URL: up.FileURL, ContentType: "text/plain;charset=utf-8", FileName: "résumé 1.txt", Size: 13}
		if f != want {
			t.Fatalf("file %+v, want %+v", f, want)
		}
		if st, err := hostA.Stat(ctx, f.Key); err != nil || st != want {
			t.Fatalf("stat on the other host %+v, %v", st, err)
		}
		got := get(t, hostA, f.Key)
		if got.body != "Hello, World!" || got.header.Get("Content-Type") != "text/plain;charset=utf-8" {
			t.Fatalf("served %+v", got)
		}
		// An upload id works once, whichever host gets the second PUT.
		if _, err := hostA.CompleteUpload(ctx, up.ID, up.Token, strings.NewReader("again"), ""); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second PUT: %v", err)
		}
		// Without a type at either end the file is binary.
		up, _ = hostB.InitiateUpload(ctx, "", "")
		f, err = hostA.CompleteUpload(ctx, up.ID, up.Token, strings.NewReader("?"), "")
		if err != nil || f.ContentType != "application/octet-stream" || !strings.HasSuffix(f.Key, ".bin") {
			t.Fatalf("untyped upload %+v, %v", f, err)
		}
	})
}

func TestMultipartAcrossHosts(t *testing.T) {
	forEachBackend(t, func(t *testing.T, m medium) {
		hostA, hostB := m.open(t, smallLimit()), m.open(t, smallLimit())
		ctx := context.Background()
		up, err := hostA.InitiateMultipartUpload(ctx, "application/pdf", "doc.pdf")
		if err != nil {
			t.Fatal(err)
		}
		// A multipart upload cannot be completed with a single PUT.
		if _, err := hostB.CompleteUpload(ctx, up.ID, up.Token, strings.NewReader("x"), ""); !errors.Is(err, ErrNotFound) {
			t.Fatalf("simple PUT to a multipart upload: %v", err)
		}
		p1, err := hostB.PutPart(ctx, up.ID, up.Token, 1, strings.NewReader("%PDF-"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := hostA.PutPart(ctx, up.ID, up.Token, 2, strings.NewReader("wrong")); err != nil {
			t.Fatal(err)
		}
		p2, err := hostB.PutPart(ctx, up.ID, up.Token, 2, strings.NewReader("1.7")) // a retried part
		if err != nil {
			t.Fatal(err)
		}
		if p1.PartNumber != 1 || len(p1.ETag) != 32 || p2.ETag == p1.ETag {
			t.Fatalf("parts %+v %+v", p1, p2)
		}
		for _, n := range []int{0, -1, MaxParts + 1} {
			if _, err := hostA.PutPart(ctx, up.ID, up.Token, n, strings.NewReader("x")); !errors.Is(err, ErrBadPart) {
				t.Fatalf("part %d: %v", n, err)
			}
		}
		for name, parts := range map[string][]Part{
			"out of order": {p2, p1},
			"bad etag":     {p1, {PartNumber: 2, ETag: "00"}},
			"missing part": {p1, p2, {PartNumber: 3, ETag: p2.ETag}},
			"no parts":     {},
		} {
			if _, err := hostA.CompleteMultipart(ctx, up.ID, up.Token, parts); !errors.Is(err, ErrBadPart) {
				t.Fatalf("%s: %v", name, err)
			}
		}
		f, err := hostA.CompleteMultipart(ctx, up.ID, up.Token, []Part{p1, p2})
		if err != nil {
			t.Fatal(err)
		}
		if f.URL != up.FileURL || f.Size != 8 || f.FileName != "doc.pdf" || f.ContentType != "application/pdf" {
			t.Fatalf("file %+v", f)
		}
		if got := get(t, hostB, f.Key); got.body != "%PDF-1.7" || got.header.Get("Content-Type") != "application/pdf" {
			t.Fatalf("assembled %+v", got)
		}
		if _, err := hostB.PutPart(ctx, up.ID, up.Token, 3, strings.NewReader("late")); !errors.Is(err, ErrNotFound) {
			t.Fatalf("part after complete: %v", err)
		}
		// Without a type, the extension's.
		up, _ = hostA.InitiateMultipartUpload(ctx, "", "notes.txt")
		p, _ := hostA.PutPart(ctx, up.ID, up.Token, 1, strings.NewReader("hi"))
		if f, err := hostB.CompleteMultipart(ctx, up.ID, up.Token, []Part{p}); err != nil || !strings.HasPrefix(f.ContentType, "text/plain") {
			t.Fatalf("untyped multipart %+v, %v", f, err)
		}
	})
}

func TestSizeLimit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, m medium) {
		s := m.open(t, smallLimit())
		ctx := context.Background()
		up, _ := s.InitiateUpload(ctx, "", "blob")
		if _, err := s.CompleteUpload(ctx, up.ID, up.Token, bytes.NewReader(make([]byte, 1025)), ""); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("oversize upload: %v", err)
		}
		// The failed upload left no file behind.
		if _, err := s.Stat(ctx, keyOf(up.FileURL)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("partial upload visible: %v", err)
		}
		up, _ = s.InitiateUpload(ctx, "", "blob")
		if f, err := s.CompleteUpload(ctx, up.ID, up.Token, bytes.NewReader(make([]byte, 1024)), ""); err != nil || f.Size != 1024 {
			t.Fatalf("upload at the limit: %+v, %v", f, err)
		}
		// The handler's http.MaxBytesReader error passes through wrapped, so
		// the API answers 413 the same way on every backend.
		up, _ = s.InitiateUpload(ctx, "", "blob")
		body := http.MaxBytesReader(httptest.NewRecorder(), io.NopCloser(bytes.NewReader(make([]byte, 600))), 500)
		var maxErr *http.MaxBytesError
		if _, err := s.CompleteUpload(ctx, up.ID, up.Token, body, ""); !errors.As(err, &maxErr) {
			t.Fatalf("MaxBytesReader error: %v", err)
		}

		// An oversize part deletes the whole upload.
		mp, _ := s.InitiateMultipartUpload(ctx, "", "big.bin")
		if _, err := s.PutPart(ctx, mp.ID, mp.Token, 1, bytes.NewReader(make([]byte, 1025))); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("oversize part: %v", err)
		}
		if _, err := s.PutPart(ctx, mp.ID, mp.Token, 1, bytes.NewReader(make([]byte, 1))); !errors.Is(err, ErrNotFound) {
			t.Fatalf("part after an oversize part: %v", err)
		}
	})
}

// TestPartsSumLimit: the parts of one upload add up to at most the upload
// limit, checked as each part arrives (a retried part replaces its old
// copy in the sum); the upload that passes it is deleted with its parts.
func TestPartsSumLimit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, m medium) {
		s := m.open(t, smallLimit()) // 1024 bytes
		ctx := context.Background()
		mp, _ := s.InitiateMultipartUpload(ctx, "", "big.bin")
		put := func(n, size int) error {
			_, err := s.PutPart(ctx, mp.ID, mp.Token, n, bytes.NewReader(make([]byte, size)))
			return err
		}
		if err := put(1, 600); err != nil {
			t.Fatal(err)
		}
		if err := put(1, 500); err != nil { // a retry: 500 counts, not 1100
			t.Fatal(err)
		}
		if err := put(2, 524); err != nil { // exactly at the limit
			t.Fatal(err)
		}
		if err := put(3, 1); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("part past the sum limit: %v", err)
		}
		if err := put(1, 1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("upload still open after the limit: %v", err)
		}
		if parts := countParts(t, s, mp.ID); parts != 0 {
			t.Fatalf("%d parts left behind", parts)
		}
		if _, err := s.Stat(ctx, keyOf(mp.FileURL)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("oversize multipart visible: %v", err)
		}
	})
}

// countParts counts an upload's stored parts on either backend.
func countParts(t *testing.T, s Store, id string) int {
	t.Helper()
	var sizes map[int]int64
	var err error
	switch st := s.(type) {
	case *Local:
		sizes, err = st.storedParts(id)
	case *S3:
		sizes, err = st.storedParts(context.Background(), id)
	}
	if err != nil {
		t.Fatal(err)
	}
	return len(sizes)
}

func TestDeleteOlderThan(t *testing.T) {
	forEachBackend(t, func(t *testing.T, m medium) {
		s := m.open(t, smallLimit())
		ctx := context.Background()
		old, _ := s.Save(ctx, []byte("old"), "image/png", "png")
		fresh, _ := s.Save(ctx, []byte("new"), "image/png", "png")
		stale, _ := s.InitiateUpload(ctx, "text/plain", "never-sent.txt")
		pending, _ := s.InitiateUpload(ctx, "text/plain", "sent-soon.txt")
		m.backdate(t, s, "files/"+old.Key, 2*time.Hour)
		m.backdate(t, s, "uploads/"+stale.ID+".json", 2*time.Hour)

		n, err := s.DeleteOlderThan(ctx, time.Now().Add(-time.Hour))
		if err != nil || n != 1 {
			t.Fatalf("deleted %d, %v", n, err)
		}
		if _, err := s.Stat(ctx, old.Key); !errors.Is(err, ErrNotFound) {
			t.Fatalf("old file still there: %v", err)
		}
		if err := s.Serve(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil), old.Key); !errors.Is(err, ErrNotFound) {
			t.Fatalf("old file still served: %v", err)
		}
		if _, err := s.CompleteUpload(ctx, stale.ID, stale.Token, strings.NewReader("late"), ""); !errors.Is(err, ErrNotFound) {
			t.Fatalf("expired upload id still accepted: %v", err)
		}
		if got := get(t, s, fresh.Key); got.body != "new" {
			t.Fatalf("fresh file: %+v", got)
		}
		if _, err := s.CompleteUpload(ctx, pending.ID, pending.Token, strings.NewReader("on time"), ""); err != nil {
			t.Fatalf("fresh upload id: %v", err)
		}
		if n, err := s.DeleteOlderThan(ctx, time.Now().Add(-time.Hour)); err != nil || n != 0 {
			t.Fatalf("second run deleted %d, %v", n, err)
		}
	})
}

func TestURLShapeIsTheSameOnEveryBackend(t *testing.T) {
	fileRe := regexp.MustCompile(`^` + regexp.QuoteMeta(testPublicURL) + `/files/[0-9a-f]{32}\.(png|jpeg|txt)$`)
	uploadRe := regexp.MustCompile(`^` + regexp.QuoteMeta(testPublicURL) + `/storage/upload/[0-9a-f]{32}\?token=[0-9a-f]{32}$`)
	forEachBackend(t, func(t *testing.T, m medium) {
		s := m.open(t, smallLimit())
		ctx := context.Background()
		png, _ := s.Save(ctx, []byte("x"), "image/png", "png")
		jpeg, _ := s.Save(ctx, []byte("x"), "image/jpeg", "jpeg")
		up, _ := s.InitiateUpload(ctx, "text/plain", "a.txt")
		mp, _ := s.InitiateMultipartUpload(ctx, "text/plain", "a.txt")
		for _, u := range []string{png.URL, jpeg.URL, up.FileURL, mp.FileURL, s.FileURL(keyOf(png.URL))} {
			if !fileRe.MatchString(u) {
				t.Errorf("file URL %q", u)
			}
		}
		for _, u := range []string{up.UploadURL, mp.UploadURL} {
			if !uploadRe.MatchString(u) {
				t.Errorf("upload URL %q", u)
			}
		}
	})
}

func TestPing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, m medium) {
		if err := m.open(t, smallLimit()).Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestJanitorRunsUntilCanceled(t *testing.T) {
	forEachBackend(t, func(t *testing.T, m medium) {
		s := m.open(t, smallLimit())
		ctx, cancel := context.WithCancel(context.Background())
		old, _ := s.Save(ctx, []byte("old"), "image/png", "png")
		m.backdate(t, s, "files/"+old.Key, 2*time.Hour)
		deleted := make(chan int, 1)
		done := make(chan struct{})
		go func() {
			defer close(done)
			RunJanitor(ctx, s, time.Millisecond, time.Hour, func(err error) { t.Error(err) }, func(n int) { deleted <- n })
		}()
		if n := <-deleted; n != 1 {
			t.Fatalf("janitor deleted %d", n)
		}
		cancel()
		<-done
	})
}

func TestExtension(t *testing.T) {
	cases := map[[2]string]string{
		{"cat.PNG", ""}:            "png",
		{"", "image/jpeg"}:         "jpeg",
		{"", "image/webp"}:         "webp",
		{"x.tar.gz", ""}:           "gz",
		{"weird.$$$", "image/png"}: "png",
		{"", ""}:                   "bin",
	}
	for in, want := range cases {
		if got := extension(in[0], in[1]); got != want {
			t.Errorf("extension(%q,%q) = %q, want %q", in[0], in[1], got, want)
		}
	}
}

func TestCappedReader(t *testing.T) {
	for _, tc := range []struct {
		size, limit int
		tooLarge    bool
	}{{0, 0, false}, {1, 0, true}, {10, 10, false}, {11, 10, true}, {5000, 4096, true}, {4096, 4096, false}} {
		got, err := io.ReadAll(&cappedReader{r: bytes.NewReader(make([]byte, tc.size)), left: int64(tc.limit)})
		if errors.Is(err, ErrTooLarge) != tc.tooLarge || (err != nil && !tc.tooLarge) || len(got) > tc.limit {
			t.Errorf("size %d limit %d: %d bytes, %v", tc.size, tc.limit, len(got), err)
		}
	}
}
