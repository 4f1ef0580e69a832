package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/kleinserve/kleinserve/internal/imageinput"
	"github.com/kleinserve/kleinserve/internal/netguard"
	"github.com/kleinserve/kleinserve/internal/wire"
)

const editPath = "/fal-ai/flux-2/klein/4b/base/edit"

func pngBytes(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 7)
	}
	img.Set(0, 0, color.RGBA{A: 255})
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func dataURI(mime string, b []byte) string {
	return "data:" + mime + ";base64," + base64.StdEncoding.EncodeToString(b)
}

// serveOn starts an HTTP server on a loopback address that is not the API
// server's (127.0.0.2), answering every path with the handler.
func serveOn(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no 127.0.0.2 loopback address: %v", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// TestEditInputRejectedAtSubmit: what the schema says is wrong is a 422 at
// submit, naming the field or the list item.
func TestEditInputRejectedAtSubmit(t *testing.T) {
	env := newEnv(t, envOptions{})
	for name, tc := range map[string]struct {
		body string
		loc  string
		typ  string
	}{
		"missing":      {`{"prompt":"x"}`, "image_urls", "missing"},
		"not a list":   {`{"prompt":"x","image_urls":"http://a/b.png"}`, "image_urls", "list_type"},
		"empty":        {`{"prompt":"x","image_urls":[]}`, "image_urls", "too_short"},
		"five":         {`{"prompt":"x","image_urls":["http://a/1","http://a/2","http://a/3","http://a/4","http://a/5"]}`, "image_urls", "too_long"},
		"not a string": {`{"prompt":"x","image_urls":[5]}`, "image_urls.0", "string_type"},
		"ftp":          {`{"prompt":"x","image_urls":["http://a/1","ftp://a/2"]}`, "image_urls.1", "url_scheme"},
		"relative":     {`{"prompt":"x","image_urls":["/files/x.png"]}`, "image_urls.0", "url_scheme"},
	} {
		r := env.do("POST", editPath, tc.body, nil)
		if r.status != 422 {
			t.Errorf("%s: %d %s", name, r.status, r.body)
			continue
		}
		var v wire.ValidationError
		json.Unmarshal(r.body, &v)
		if got := fmt.Sprint(v.Fields()); !strings.Contains(got, strings.Split(tc.loc, ".")[0]) ||
			!strings.Contains(string(r.body), `"`+tc.typ+`"`) || (strings.Contains(tc.loc, ".") && !strings.Contains(string(r.body), `"image_urls",`+strings.Split(tc.loc, ".")[1])) {
			t.Errorf("%s: %s", name, r.body)
		}
	}
}

// TestEditImageFailures: what only fetching or decoding can tell is a 422
// naming image_urls[i] with the reason, for every kind of failure.
func TestEditImageFailures(t *testing.T) {
	good := dataURI("image/png", pngBytes(t, 96, 64))
	big := pngBytes(t, 300, 200)
	receiver := serveOn(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok.png":
			w.Write(pngBytes(t, 80, 80))
		case "/big.png":
			w.Write(big)
		case "/slow.png":
			time.Sleep(3 * time.Second)
		case "/text":
			w.Write([]byte("hello, not an image"))
		default:
			http.NotFound(w, r)
		}
	})
	closed := func() string { // a loopback port nobody listens on
		ln, _ := net.Listen("tcp", "127.0.0.2:0")
		addr := ln.Addr().String()
		ln.Close()
		return "http://" + addr + "/x.png"
	}()
	allow := netguard.Policy{AllowPrivate: true}
	for name, tc := range map[string]struct {
		policy netguard.Policy
		url    string
		typ    string
		reason string
	}{
		"loopback refused by default": {netguard.Policy{}, receiver + "/ok.png", "url_refused", "loopback"},
		"metadata address":            {allow, "http://169.254.169.254/latest/meta-data", "url_refused", "link-local"},
		"unreachable":                 {allow, closed, "image_unreachable", ""},
		"404":                         {allow, receiver + "/missing.png", "image_unreachable", "404"},
		"too large":                   {allow, receiver + "/big.png", "image_too_large", ""},
		"timeout":                     {allow, receiver + "/slow.png", "image_timeout", ""},
		"not an image":                {allow, receiver + "/text", "image_unsupported", ""},
		"bad data URI":                {allow, "data:image/png;base64,%%%", "url_parsing", ""},
		"data URI not an image":       {allow, dataURI("text/plain", []byte("hello")), "image_unsupported", ""},
		"too small for the model":     {allow, dataURI("image/png", pngBytes(t, 32, 32)), "image_size", "64"},
		"aspect ratio over 8":         {allow, dataURI("image/png", pngBytes(t, 900, 100)), "image_size", "aspect"},
	} {
		t.Run(name, func(t *testing.T) {
			lim := imageinput.Limits{Timeout: time.Second}
			if tc.typ == "image_too_large" {
				lim.MaxBytes = int64(len(big)) - 1
			}
			env := newEnv(t, envOptions{urlPolicy: tc.policy, imageLimits: lim})
			body := fmt.Sprintf(`{"prompt":"x","num_inference_steps":1,"image_urls":[%q,%q]}`, good, tc.url)
			r := env.do("POST", editPath, body, nil)
			if r.status != 422 || !strings.Contains(string(r.body), `"loc":["body","image_urls",1]`) ||
				!strings.Contains(string(r.body), `"type":"`+tc.typ+`"`) || !strings.Contains(strings.ToLower(string(r.body)), tc.reason) {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if n := env.engine.calls.Load(); n != 0 {
				t.Fatalf("engine ran %d times", n)
			}
		})
	}
}

// TestEditEndpoint: data URIs, a URL on an allowed loopback receiver and
// this server's own uploaded file (read from storage even though loopback
// is refused) all reach the engine; without image_size the output takes the
// first reference's size.
func TestEditEndpoint(t *testing.T) {
	receiver := serveOn(t, func(w http.ResponseWriter, r *http.Request) { w.Write(pngBytes(t, 80, 80)) })
	for _, allowPrivate := range []bool{false, true} {
		env := newEnv(t, envOptions{urlPolicy: netguard.Policy{AllowPrivate: allowPrivate}})
		up := env.do("POST", "/storage/upload/initiate", `{"content_type":"image/png","file_name":"ref.png"}`, nil).json(t)
		if r := env.do("PUT", up["upload_url"].(string), string(pngBytes(t, 160, 96)), map[string]string{"Content-Type": "image/png"}); r.status != 200 {
			t.Fatalf("upload: %d %s", r.status, r.body)
		}
		refs := []string{up["file_url"].(string), dataURI("image/png", pngBytes(t, 64, 64))}
		if allowPrivate {
			refs = append(refs, receiver+"/ref.png")
		}
		raw, _ := json.Marshal(map[string]any{"prompt": "make it blue", "num_inference_steps": 2, "image_urls": refs})
		r := env.do("POST", editPath, string(raw), nil)
		if r.status != 200 {
			t.Fatalf("allow-private=%v: %d %s", allowPrivate, r.status, r.body)
		}
		var out wire.Output
		json.Unmarshal(r.body, &out)
		if len(out.Images) != 1 || out.Images[0].Width != 160 || out.Images[0].Height != 96 {
			t.Fatalf("output %+v, want the first reference's 160x96", out.Images)
		}
		last := env.engine.last()
		if len(last.References) != len(refs) || last.References[0].Width != 160 || last.References[1].Width != 64 {
			t.Fatalf("engine got %d references", len(last.References))
		}
		// With an explicit size, that size.
		raw, _ = json.Marshal(map[string]any{"prompt": "x", "num_inference_steps": 1, "image_urls": refs[1:2],
			"image_size": map[string]int{"width": 128, "height": 64}})
		if r := env.do("POST", "/queue"+editPath, string(raw), nil); r.status != 200 {
			t.Fatalf("queue submit: %d %s", r.status, r.body)
		}
	}
	// The guard refused the loopback receiver above only by policy: it is
	// a private address.
	if netguard.Classify(netip.MustParseAddr("127.0.0.2")) == netguard.Public {
		t.Fatal("127.0.0.2 classified public")
	}
}
