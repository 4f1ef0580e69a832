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
	"strings"
	"testing"
	"time"
)

func open(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir(), Options{PublicURL: "http://127.0.0.1:9/", MaxUploadBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func serve(t *testing.T, s *Store, key string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	if err := s.Serve(rec, httptest.NewRequest(http.MethodGet, "/files/"+key, nil), key); err != nil {
		t.Fatalf("serve %s: %v", key, err)
	}
	return rec.Result()
}

func TestSaveAndServe(t *testing.T) {
	s := open(t)
	f, err := s.Save(context.Background(), []byte("PNGDATA"), "image/png", "png")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(f.URL, "http://127.0.0.1:9/files/") || !strings.HasSuffix(f.Key, ".png") || f.Size != 7 {
		t.Fatalf("file %+v", f)
	}
	resp := serve(t, s, f.Key)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "PNGDATA" || resp.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("served %d %q %q", resp.StatusCode, body, resp.Header.Get("Content-Type"))
	}
}

func TestUploadFlow(t *testing.T) {
	s := open(t)
	up, err := s.InitiateUpload("text/plain", "hello.txt")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(up.UploadURL, "http://127.0.0.1:9/storage/upload/") || !strings.HasSuffix(up.FileURL, ".txt") {
		t.Fatalf("upload %+v", up)
	}
	f, err := s.CompleteUpload(context.Background(), up.ID, strings.NewReader("Hello, World!"), "text/plain;charset=utf-8")
	if err != nil {
		t.Fatal(err)
	}
	if f.URL != up.FileURL || f.Size != 13 || f.FileName != "hello.txt" {
		t.Fatalf("file %+v", f)
	}
	resp := serve(t, s, f.Key)
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "Hello, World!" || resp.Header.Get("Content-Type") != "text/plain;charset=utf-8" {
		t.Fatalf("served %q as %q", body, resp.Header.Get("Content-Type"))
	}
	// An upload id works once.
	if _, err := s.CompleteUpload(context.Background(), up.ID, strings.NewReader("again"), ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second PUT: %v", err)
	}
}

func TestUploadRejections(t *testing.T) {
	s := open(t)
	for _, id := range []string{"", "../../etc/passwd", "0123456789abcdef0123456789abcdef"} {
		if _, err := s.CompleteUpload(context.Background(), id, strings.NewReader("x"), ""); !errors.Is(err, ErrNotFound) {
			t.Fatalf("id %q: %v", id, err)
		}
	}
	up, _ := s.InitiateUpload("", "blob")
	if _, err := s.CompleteUpload(context.Background(), up.ID, bytes.NewReader(make([]byte, 1025)), ""); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversize upload: %v", err)
	}
	// The failed upload left no file behind.
	key := up.FileURL[strings.LastIndex(up.FileURL, "/")+1:]
	if err := s.Serve(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil), key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("partial upload visible: %v", err)
	}
	for _, key := range []string{"../meta/x.json", "abc.png", strings.Repeat("a", 32) + ".png"} {
		if err := s.Serve(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil), key); !errors.Is(err, ErrNotFound) {
			t.Fatalf("key %q: %v", key, err)
		}
	}
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

func TestDeleteOlderThan(t *testing.T) {
	s := open(t)
	old, _ := s.Save(context.Background(), []byte("old"), "image/png", "png")
	fresh, _ := s.Save(context.Background(), []byte("new"), "image/png", "png")
	past := time.Now().Add(-2 * time.Hour)
	for _, p := range []string{filepath.Join(s.root, "files", old.Key), filepath.Join(s.root, "meta", old.Key+".json")} {
		if err := os.Chtimes(p, past, past); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.DeleteOlderThan(time.Now().Add(-time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("deleted %d, %v", n, err)
	}
	if err := s.Serve(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil), old.Key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old file still served: %v", err)
	}
	serve(t, s, fresh.Key)
}

func TestMultipartUpload(t *testing.T) {
	s := open(t)
	up, err := s.InitiateMultipartUpload("application/octet-stream", "big.bin")
	if err != nil {
		t.Fatal(err)
	}
	// A multipart upload cannot be completed with a single PUT.
	if _, err := s.CompleteUpload(context.Background(), up.ID, strings.NewReader("x"), ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("simple PUT to a multipart upload: %v", err)
	}
	p1, err := s.PutPart(context.Background(), up.ID, 1, strings.NewReader("hello, "))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutPart(context.Background(), up.ID, 2, strings.NewReader("wrong")); err != nil {
		t.Fatal(err)
	}
	p2, err := s.PutPart(context.Background(), up.ID, 2, strings.NewReader("world")) // a retried part
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutPart(context.Background(), up.ID, 0, strings.NewReader("x")); !errors.Is(err, ErrBadPart) {
		t.Fatalf("part 0: %v", err)
	}
	if _, err := s.CompleteMultipart(context.Background(), up.ID, []Part{p2, p1}); !errors.Is(err, ErrBadPart) {
		t.Fatalf("out of order: %v", err)
	}
	if _, err := s.CompleteMultipart(context.Background(), up.ID, []Part{p1, {PartNumber: 2, ETag: "00"}}); !errors.Is(err, ErrBadPart) {
		t.Fatalf("bad etag: %v", err)
	}
	f, err := s.CompleteMultipart(context.Background(), up.ID, []Part{p1, p2})
	if err != nil {
		t.Fatal(err)
	}
	if f.URL != up.FileURL || f.Size != 12 {
		t.Fatalf("file %+v", f)
	}
	body, _ := io.ReadAll(serve(t, s, f.Key).Body)
	if string(body) != "hello, world" {
		t.Fatalf("assembled %q", body)
	}
	if _, err := s.PutPart(context.Background(), up.ID, 3, strings.NewReader("late")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("part after complete: %v", err)
	}
}
