package api

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/kleinserve/kleinserve/internal/storage/storagetest"
	"github.com/kleinserve/kleinserve/internal/wire"
)

// TestFilesOnS3 runs generation, uploads and multipart uploads through
// the HTTP API with the S3 store, on two API hosts sharing one bucket: a
// file or upload made through one is served or completed by the other.
func TestFilesOnS3(t *testing.T) {
	fake := storagetest.New(t, "kleinserve")
	hostA := newEnv(t, envOptions{s3: fake})
	hostB := newEnv(t, envOptions{s3: fake, noEngine: true})
	onB := func(url string) string { return strings.Replace(url, hostA.base, hostB.base, 1) }
	onA := func(url string) string { return strings.Replace(url, hostB.base, hostA.base, 1) }

	r := hostA.do("POST", runPath, `{"prompt":"a cat","image_size":{"width":64,"height":128},"seed":7,"output_format":"png"}`, nil)
	if r.status != 200 {
		t.Fatalf("run: %d %s", r.status, r.body)
	}
	var out wire.Output
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatal(err)
	}
	img := out.Images[0]
	if !fileKeyRe.MatchString(img.URL) || !strings.HasPrefix(img.URL, hostA.base+"/files/") || img.ContentType != "image/png" {
		t.Fatalf("image %+v", img)
	}
	for _, url := range []string{img.URL, onB(img.URL)} {
		f := hostA.do("GET", url, "", nil)
		if f.status != 200 || f.header.Get("Content-Type") != "image/png" || int64(len(f.body)) != img.FileSize ||
			!strings.HasPrefix(string(f.body), "\x89PNG") {
			t.Fatalf("GET %s: %d %q %d bytes", url, f.status, f.header.Get("Content-Type"), len(f.body))
		}
	}
	if f := hostB.do("GET", hostB.base+"/files/0123456789abcdef0123456789abcdef.png", "", nil); f.status != 404 {
		t.Fatalf("unknown file: %d %s", f.status, f.body)
	}

	// A simple upload initiated on A, PUT on B, read on A.
	r = hostA.do("POST", "/storage/upload/initiate?storage_type=fal-cdn-v3", `{"content_type":"text/plain","file_name":"hello.txt"}`, nil)
	var up wire.UploadInitiateResponse
	json.Unmarshal(r.body, &up)
	if put := hostB.do("PUT", onB(up.UploadURL), "Hello, World!", map[string]string{"Content-Type": "text/plain"}); put.status != 200 {
		t.Fatalf("put on B: %d %s", put.status, put.body)
	}
	if get := hostA.do("GET", up.FileURL, "", nil); get.status != 200 || string(get.body) != "Hello, World!" ||
		get.header.Get("Content-Type") != "text/plain" {
		t.Fatalf("get on A: %d %q %q", get.status, get.body, get.header.Get("Content-Type"))
	}
	if again := hostA.do("PUT", up.UploadURL, "again", nil); again.status != 404 {
		t.Fatalf("second put: %d", again.status)
	}

	// A multipart upload initiated on B, parts on A and B, completed on A.
	r = hostB.do("POST", "/storage/upload/initiate-multipart", `{"content_type":"application/pdf","file_name":"doc.pdf"}`, nil)
	json.Unmarshal(r.body, &up)
	var parts []map[string]any
	for i, chunk := range []string{"%PDF-", "1.7"} {
		url := partURL(up.UploadURL, strconv.Itoa(i+1))
		if i == 0 {
			url = onA(url)
		}
		p := hostA.do("PUT", url, chunk, nil)
		if p.status != 200 {
			t.Fatalf("part %d: %d %s", i+1, p.status, p.body)
		}
		parts = append(parts, p.json(t))
	}
	body, _ := json.Marshal(map[string]any{"parts": parts})
	if c := hostA.do("POST", onA(partURL(up.UploadURL, "complete")), string(body), nil); c.status != 200 {
		t.Fatalf("complete: %d %s", c.status, c.body)
	}
	if f := hostA.do("GET", onA(up.FileURL), "", nil); string(f.body) != "%PDF-1.7" || f.header.Get("Content-Type") != "application/pdf" {
		t.Fatalf("file %q %q", f.body, f.header.Get("Content-Type"))
	}
}

// TestOversizeUploadAnswersAlikeOnEveryStore: the size limit gives the
// same status and body with the S3 store as with the local one.
func TestOversizeUploadAnswersAlikeOnEveryStore(t *testing.T) {
	answers := map[string]response{}
	for name, env := range map[string]*testEnv{
		"local": newEnv(t, envOptions{}),
		"s3":    newEnv(t, envOptions{s3: storagetest.New(t, "kleinserve")}),
	} {
		r := env.do("POST", "/storage/upload/initiate", `{"content_type":"application/octet-stream"}`, nil)
		var up wire.UploadInitiateResponse
		json.Unmarshal(r.body, &up)
		answers[name] = env.do("PUT", up.UploadURL, strings.Repeat("x", 2<<20), nil)
	}
	local, s3 := answers["local"], answers["s3"]
	if local.status != 413 || s3.status != local.status || compactJSON(t, s3.body) != compactJSON(t, local.body) {
		t.Fatalf("local %d %s, s3 %d %s", local.status, local.body, s3.status, s3.body)
	}
}
