package storage

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

func TestUploadsNeedTheirToken(t *testing.T) {
	forEachBackend(t, func(t *testing.T, m medium) {
		s := m.open(t, smallLimit())
		ctx := context.Background()
		up, _ := s.InitiateUpload(ctx, "text/plain", "a.txt")
		other, _ := s.InitiateUpload(ctx, "text/plain", "b.txt")
		for _, token := range []string{"", other.Token, strings.ToUpper(up.Token), up.Token + "0"} {
			if _, err := s.CompleteUpload(ctx, up.ID, token, strings.NewReader("x"), ""); !errors.Is(err, ErrNotFound) {
				t.Fatalf("PUT with token %q: %v", token, err)
			}
		}
		if _, err := s.CompleteUpload(ctx, up.ID, up.Token, strings.NewReader("x"), ""); err != nil {
			t.Fatal(err)
		}
		mp, _ := s.InitiateMultipartUpload(ctx, "", "c.bin")
		if _, err := s.PutPart(ctx, mp.ID, other.Token, 1, strings.NewReader("x")); !errors.Is(err, ErrNotFound) {
			t.Fatalf("part with another upload's token: %v", err)
		}
		p, err := s.PutPart(ctx, mp.ID, mp.Token, 1, strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.CompleteMultipart(ctx, mp.ID, "", []Part{p}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("complete without token: %v", err)
		}
	})
}

func TestAuthorizeExpiry(t *testing.T) {
	_, token, m, err := newUploadMeta("", "", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.authorize(token, m.Created.Add(UploadExpiry)); err != nil {
		t.Fatalf("at the expiry: %v", err)
	}
	if err := m.authorize(token, m.Created.Add(UploadExpiry+time.Second)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after the expiry: %v", err)
	}
}

func TestMetadataLengthLimits(t *testing.T) {
	forEachBackend(t, func(t *testing.T, m medium) {
		s := m.open(t, smallLimit())
		ctx := context.Background()
		long := strings.Repeat("n", MaxFileNameBytes+1)
		for _, tc := range []struct {
			ct, name, field string
		}{
			{"text/plain", long, "file_name"},
			{strings.Repeat("t", MaxContentTypeBytes+1), "a.txt", "content_type"},
		} {
			for _, initiate := range []func(context.Context, string, string) (Upload, error){s.InitiateUpload, s.InitiateMultipartUpload} {
				_, err := initiate(ctx, tc.ct, tc.name)
				var ie *InputError
				if !errors.As(err, &ie) || ie.Field != tc.field || ie.Loc != "body" {
					t.Fatalf("%s: %v", tc.field, err)
				}
			}
		}
		// At the limits both are accepted.
		up, err := s.InitiateUpload(ctx, strings.Repeat("t", MaxContentTypeBytes), long[1:])
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.CompleteUpload(ctx, up.ID, up.Token, strings.NewReader("x"), "text/"+strings.Repeat("x", MaxContentTypeBytes))
		var ie *InputError
		if !errors.As(err, &ie) || ie.Loc != "header" {
			t.Fatalf("long PUT content type: %v", err)
		}
	})
}

// gate is a body whose first Read signals and then blocks until released.
type gate struct {
	started chan struct{}
	release chan struct{}
	once    sync.Once
	r       io.Reader
}

func newGate(data string) *gate {
	return &gate{started: make(chan struct{}), release: make(chan struct{}), r: strings.NewReader(data)}
}

func (g *gate) Read(p []byte) (int, error) {
	g.once.Do(func() { close(g.started); <-g.release })
	return g.r.Read(p)
}

// TestConcurrentWritersToOneUpload: while one PUT writes an upload, others
// to the same id get ErrBusy (409), never a failure of their own; once the
// first finished the id is spent (404). A part PUT waits its turn instead.
func TestConcurrentWritersToOneUpload(t *testing.T) {
	forEachBackend(t, func(t *testing.T, m medium) {
		s := m.open(t, smallLimit())
		ctx := context.Background()
		up, _ := s.InitiateUpload(ctx, "text/plain", "a.txt")
		first := newGate("first")
		done := make(chan error, 1)
		go func() {
			_, err := s.CompleteUpload(ctx, up.ID, up.Token, first, "")
			done <- err
		}()
		<-first.started
		for range 3 {
			if _, err := s.CompleteUpload(ctx, up.ID, up.Token, strings.NewReader("other"), ""); !errors.Is(err, ErrBusy) {
				t.Fatalf("concurrent PUT: %v", err)
			}
		}
		close(first.release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if _, err := s.CompleteUpload(ctx, up.ID, up.Token, strings.NewReader("late"), ""); !errors.Is(err, ErrNotFound) {
			t.Fatalf("PUT after completion: %v", err)
		}
		if got := get(t, s, keyOf(up.FileURL)); got.body != "first" {
			t.Fatalf("stored %q", got.body)
		}

		mp, _ := s.InitiateMultipartUpload(ctx, "", "p.bin")
		slow := newGate("aaa")
		partDone := make(chan error, 1)
		go func() {
			_, err := s.PutPart(ctx, mp.ID, mp.Token, 1, slow)
			partDone <- err
		}()
		<-slow.started
		second := make(chan error, 1)
		go func() {
			_, err := s.PutPart(ctx, mp.ID, mp.Token, 2, strings.NewReader("bb"))
			second <- err
		}()
		if _, err := s.CompleteMultipart(ctx, mp.ID, mp.Token, nil); !errors.Is(err, ErrBusy) {
			t.Fatalf("complete while a part is written: %v", err)
		}
		close(slow.release)
		if err := <-partDone; err != nil {
			t.Fatal(err)
		}
		if err := <-second; err != nil {
			t.Fatalf("waiting part: %v", err)
		}
		// A waiting part gives up when its request does.
		blocker := newGate("c")
		blocked := make(chan error, 1)
		go func() {
			_, err := s.PutPart(ctx, mp.ID, mp.Token, 3, blocker)
			blocked <- err
		}()
		<-blocker.started
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := s.PutPart(cctx, mp.ID, mp.Token, 4, strings.NewReader("d")); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled waiting part: %v", err)
		}
		close(blocker.release)
		if err := <-blocked; err != nil {
			t.Fatal(err)
		}
	})
}

func TestOpenAndOpenFileURL(t *testing.T) {
	forEachBackend(t, func(t *testing.T, m medium) {
		s := m.open(t, smallLimit())
		ctx := context.Background()
		f, _ := s.Save(ctx, []byte("PNGDATA"), "image/png", "png")
		for _, u := range []string{f.URL, f.URL + "?x=1", f.URL + "#frag"} {
			rc, ok, err := s.OpenFileURL(ctx, u)
			if !ok || err != nil {
				t.Fatalf("%s: %v %v", u, ok, err)
			}
			b, _ := io.ReadAll(rc)
			rc.Close()
			if string(b) != "PNGDATA" {
				t.Fatalf("read %q", b)
			}
		}
		for _, u := range []string{"https://elsewhere.example/files/" + f.Key, testPublicURL + "/other/" + f.Key, "data:,x"} {
			if _, ok, _ := s.OpenFileURL(ctx, u); ok {
				t.Fatalf("%s taken for a local file", u)
			}
		}
		missing := testPublicURL + "/files/" + strings.Repeat("0", 32) + ".png"
		for _, u := range []string{missing, testPublicURL + "/files/../meta/x.json"} {
			_, ok, err := s.OpenFileURL(ctx, u)
			if !ok || !errors.Is(err, ErrNotFound) || !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("%s: %v %v", u, ok, err)
			}
		}
	})
}

// TestUnfinishedUploadsExpire: the janitor deletes a staging record older
// than UploadExpiry even when the retention of files is much longer.
func TestUnfinishedUploadsExpire(t *testing.T) {
	forEachBackend(t, func(t *testing.T, m medium) {
		s := m.open(t, smallLimit())
		ctx := context.Background()
		stale, _ := s.InitiateUpload(ctx, "", "a.bin")
		fresh, _ := s.InitiateUpload(ctx, "", "b.bin")
		m.backdate(t, s, "uploads/"+stale.ID+".json", UploadExpiry+time.Minute)
		if _, err := s.DeleteOlderThan(ctx, time.Now().Add(-24*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CompleteUpload(ctx, stale.ID, stale.Token, strings.NewReader("x"), ""); !errors.Is(err, ErrNotFound) {
			t.Fatalf("stale upload: %v", err)
		}
		if _, err := s.CompleteUpload(ctx, fresh.ID, fresh.Token, strings.NewReader("x"), ""); err != nil {
			t.Fatalf("fresh upload: %v", err)
		}
	})
}

// TestDiskFull fills a 1 MiB tmpfs (mounting needs root; CI runs as root):
// writes fail with ErrNoSpace, whose message names no path, the failed
// upload leaves nothing behind, and CheckSpace reports the store full.
func TestDiskFull(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	s, err := OpenLocal(dir, Options{PublicURL: testPublicURL, MaxUploadBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.CheckSpace(ctx); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("a 1 MiB store is below MinFreeBytes: %v", err)
	}
	up, err := s.InitiateUpload(ctx, "", "big.bin")
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.CompleteUpload(ctx, up.ID, up.Token, bytes.NewReader(make([]byte, 2<<20)), "")
	if !errors.Is(err, ErrNoSpace) || strings.Contains(err.Error(), dir) {
		t.Fatalf("upload to a full disk: %v", err)
	}
	if _, err := s.Save(ctx, make([]byte, 2<<20), "image/png", "png"); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("save to a full disk: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "files"))
	for _, e := range entries {
		t.Errorf("left behind: %s", e.Name())
	}
	// The upload id stays usable once there is room.
	if f, err := s.CompleteUpload(ctx, up.ID, up.Token, strings.NewReader("small"), ""); err != nil || f.Size != 5 {
		t.Fatalf("retry: %+v %v", f, err)
	}
}

func TestS3NoSpace(t *testing.T) {
	s := &S3{}
	full := minio.ErrorResponse{StatusCode: http.StatusInsufficientStorage, Code: "XMinioStorageFull", Message: "Storage backend has reached its minimum free drive threshold."}
	err := s.s3NoSpace(full)
	if !errors.Is(err, ErrNoSpace) || !errors.Is(s.CheckSpace(context.Background()), ErrNoSpace) {
		t.Fatalf("%v", err)
	}
	if err := s.s3NoSpace(minio.ErrorResponse{StatusCode: 403, Code: "AccessDenied"}); errors.Is(err, ErrNoSpace) {
		t.Fatal("access denied taken for a full store")
	}
	if s.s3NoSpace(nil) != nil || s.CheckSpace(context.Background()) != nil {
		t.Fatal("a successful write does not clear the state")
	}
}
