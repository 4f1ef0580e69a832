package integration

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kleinserve/kleinserve/internal/testenv"
)

const loraEndpoint = "/fal-ai/flux-2/klein/4b/base/lora"

// loraFile is one of the LoRA files of the tiny model's reference cases.
func loraFile(t *testing.T, root, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "testdata", "reference", "lora", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// safetensors writes a file with one F32 tensor per name, shape [1, 1].
func safetensors(names ...string) []byte {
	header := map[string]any{}
	for i, n := range names {
		header[n] = map[string]any{"dtype": "F32", "shape": []int{1, 1}, "data_offsets": []int{4 * i, 4 * (i + 1)}}
	}
	h, _ := json.Marshal(header)
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
	out = append(out, h...)
	return append(out, make([]byte, 4*len(names))...)
}

// upload stores bytes through the storage API and returns the file URL.
func upload(t *testing.T, s *server, data []byte, contentType string) string {
	t.Helper()
	code, up := s.call("POST", "/storage/upload/initiate", fmt.Sprintf(`{"content_type":%q,"file_name":"f"}`, contentType))
	if code != 200 {
		t.Fatalf("initiate: %d %v", code, up)
	}
	req, _ := http.NewRequest("PUT", up["upload_url"].(string), strings.NewReader(string(data)))
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("upload: %v %v", resp, err)
	}
	resp.Body.Close()
	return up["file_url"].(string)
}

// TestLoRARequests runs LoRA requests on the real pipeline through the
// HTTP API: a file named in -lora-dir, an upload and a data: URI apply;
// every way a LoRA can be unusable answers 422 naming loras[i] and why.
func TestLoRARequests(t *testing.T) {
	root := testenv.RepoRoot(t)
	bin := serverBinary(t, root)
	dir := t.TempDir()
	loraDir := filepath.Join(dir, "loras")
	os.MkdirAll(loraDir, 0o755)
	diffusers := loraFile(t, root, "diffusers_r4.safetensors")
	os.WriteFile(filepath.Join(loraDir, "style.safetensors"), diffusers, 0o644)
	os.WriteFile(filepath.Join(dir, "outside.safetensors"), diffusers, 0o644)
	s := startServer(t, bin, root, filepath.Join(dir, "data"), testenv.FreePort(t),
		"-lora-dir", loraDir, "-lora-max-bytes", "100000")

	run := func(input map[string]any) (int, map[string]any) {
		input["num_inference_steps"] = 2
		input["image_size"] = map[string]int{"width": 64, "height": 64}
		input["seed"] = 3
		body, _ := json.Marshal(input)
		return s.call("POST", loraEndpoint, string(body))
	}
	// One image per source, all the same LoRA: the same picture.
	var first string
	for name, path := range map[string]string{
		"name in -lora-dir": "style",
		"upload":            upload(t, s, diffusers, "application/octet-stream"),
		"data: URI":         "data:application/octet-stream;base64," + base64.StdEncoding.EncodeToString(diffusers),
	} {
		code, out := run(map[string]any{"prompt": "a fox", "sync_mode": true, "loras": []map[string]any{{"path": path, "scale": 0.8}}})
		if code != 200 {
			t.Fatalf("%s: %d %v", name, code, out)
		}
		img := out["images"].([]any)[0].(map[string]any)["url"].(string)
		if first == "" {
			first = img
		} else if img != first {
			t.Errorf("%s: a different image from the same LoRA", name)
		}
	}
	code, plain := run(map[string]any{"prompt": "a fox", "sync_mode": true})
	if code != 200 || plain["images"].([]any)[0].(map[string]any)["url"] == first {
		t.Fatalf("without loras: %d, same image as with: %v", code, plain["images"] != nil)
	}

	refused := func() string { // a receiver on another loopback address
		ln, err := net.Listen("tcp", "127.0.0.2:0")
		if err != nil {
			t.Skipf("no 127.0.0.2: %v", err)
		}
		srv := &http.Server{ReadHeaderTimeout: time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write(diffusers)
		})}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		return "http://" + ln.Addr().String() + "/style.safetensors"
	}()
	// Over -lora-max-bytes (100000).
	tooBig := upload(t, s, append(append([]byte(nil), diffusers...), make([]byte, 20000)...), "application/octet-stream")
	for name, tc := range map[string]struct {
		loras []map[string]any
		loc   string
		msg   string
	}{
		"ftp URL":            {[]map[string]any{{"path": "ftp://h/x.safetensors"}}, `["body","loras",0,"path"]`, "http"},
		"private address":    {[]map[string]any{{"path": refused}}, `["body","loras",0,"path"]`, "loopback address"},
		"too big":            {[]map[string]any{{"path": tooBig}}, `["body","loras",0,"path"]`, "too large"},
		"not safetensors":    {[]map[string]any{{"path": upload(t, s, []byte("hello, I am text"), "text/plain")}}, `["body","loras",0,"path"]`, "safetensors"},
		"wrong keys":         {[]map[string]any{{"path": "style"}, {"path": "data:;base64," + base64.StdEncoding.EncodeToString(safetensors("transformer.no_such_block.lora_A.weight"))}}, `["body","loras",1,"path"]`, "no_such_block"},
		"escaping the dir":   {[]map[string]any{{"path": "../outside"}}, `["body","loras",0,"path"]`, "inside the LoRA directory"},
		"four loras":         {[]map[string]any{{"path": "a"}, {"path": "b"}, {"path": "c"}, {"path": "d"}}, `["body","loras"]`, "at most 3"},
		"scale out of range": {[]map[string]any{{"path": "style", "scale": 5}}, `["body","loras",0,"scale"]`, "less than or equal to 4"},
	} {
		code, out := run(map[string]any{"prompt": "x", "loras": tc.loras})
		raw, _ := json.Marshal(out)
		if code != 422 || !strings.Contains(string(raw), `"loc":`+tc.loc) || !strings.Contains(string(raw), tc.msg) {
			t.Errorf("%s: %d %s", name, code, raw)
		}
	}
}
