package integration

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kleinserve/kleinserve/internal/testenv"
)

// procMemory reads a field of a process's /proc status, in bytes.
func procMemory(t *testing.T, pid int, key string) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc to measure the server's memory: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("no %s for process %d", key, pid)
	return 0
}

// resetPeak restarts the kernel's peak-RSS mark (VmHWM) of a process.
func resetPeak(t *testing.T, pid int) {
	t.Helper()
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		t.Skipf("cannot reset the server's peak RSS: %v", err)
	}
}

const queuePath = "/queue/fal-ai/flux-2/klein/4b/base"

// A 1536x1536 request made a server with the tiny model grow past 6 GiB
// and be killed (and killed it again on every restart, requeued). Under a
// memory budget it is refused at submit with fal's 422 naming the field
// and saying what fits, the server does not grow, and it keeps serving.
func TestMemoryBudgetRefusesAtSubmit(t *testing.T) {
	root := testenv.RepoRoot(t)
	bin := serverBinary(t, root)
	srv := startServer(t, bin, root, t.TempDir(), testenv.FreePort(t), "-memory-budget", "1GiB", "-threads", "1")
	pid := srv.cmd.Process.Pid
	resetPeak(t, pid)
	idle := procMemory(t, pid, "VmRSS")

	for _, path := range []string{queuePath, "/fal-ai/flux-2/klein/4b/base"} {
		code, body := srv.call("POST", path, `{"prompt":"a huge lighthouse","num_inference_steps":1,"image_size":{"width":1536,"height":1536}}`)
		detail, _ := body["detail"].([]any)
		if code != 422 || len(detail) != 1 {
			t.Fatalf("%s 1536x1536: %d %v", path, code, body)
		}
		d := detail[0].(map[string]any)
		msg, _ := d["msg"].(string)
		if fmt.Sprint(d["loc"]) != "[body image_size]" || d["type"] != "value_error" ||
			!strings.Contains(msg, "1536x1536 needs an estimated") || !strings.Contains(msg, "the largest size of this aspect ratio that fits") {
			t.Fatalf("%s 1536x1536: %v", path, d)
		}
		t.Logf("422: %s", msg)
	}
	code, body := srv.call("POST", queuePath, `{"prompt":"many","num_inference_steps":1,"num_images":4,"image_size":{"width":768,"height":768}}`)
	if detail, _ := body["detail"].([]any); code != 422 || len(detail) != 1 ||
		fmt.Sprint(detail[0].(map[string]any)["loc"]) != "[body num_images]" ||
		!strings.Contains(fmt.Sprint(detail[0]), "images of this size fit") {
		t.Fatalf("4 x 768x768: %d %v", code, body)
	}

	// Still serving, and it generated nothing big.
	code, sub := srv.call("POST", queuePath, `{"prompt":"a small one","num_inference_steps":2,"image_size":{"width":256,"height":256}}`)
	if code != 200 {
		t.Fatalf("submit: %d %v", code, sub)
	}
	waitCompleted(t, srv, sub["status_url"].(string), srv)
	peak := procMemory(t, pid, "VmHWM") - idle
	t.Logf("idle %d MiB; peak above it over the refused requests and one 256x256: %d MiB", idle>>20, peak>>20)
	if peak > 512<<20 {
		t.Errorf("the server grew %d MiB", peak>>20)
	}
}

// With -workers 2, two admitted requests that do not fit the budget
// together run one after the other: the server's peak stays inside the
// budget, and its memory goes back once they are done.
func TestMemoryBudgetSharedByWorkers(t *testing.T) {
	const budget = 3 << 30
	root := testenv.RepoRoot(t)
	bin := serverBinary(t, root)
	srv := startServer(t, bin, root, t.TempDir(), testenv.FreePort(t), "-workers", "2", "-memory-budget", "3GiB", "-threads", "1")
	pid := srv.cmd.Process.Pid
	resetPeak(t, pid)
	idle := procMemory(t, pid, "VmRSS")

	var urls []string
	for i := range 2 {
		code, sub := srv.call("POST", queuePath, fmt.Sprintf(
			`{"prompt":"a large one %d","num_inference_steps":1,"image_size":{"width":1024,"height":1024}}`, i))
		if code != 200 {
			t.Fatalf("submit %d: %d %v", i, code, sub)
		}
		urls = append(urls, sub["status_url"].(string))
	}
	var wg sync.WaitGroup
	for _, u := range urls {
		wg.Add(1)
		go func() { defer wg.Done(); waitCompleted(t, srv, u, srv) }()
	}
	wg.Wait()
	for _, u := range urls {
		if _, st := srv.call("GET", u, ""); st["error"] != nil {
			t.Fatalf("failed: %v", st)
		}
	}
	peak := procMemory(t, pid, "VmHWM") - idle
	time.Sleep(100 * time.Millisecond) // the last request's release runs as its job completes
	after := procMemory(t, pid, "VmRSS")
	t.Logf("idle %d MiB, peak +%d MiB (budget %d MiB), after %d MiB", idle>>20, peak>>20, budget>>20, after>>20)
	if peak > budget {
		t.Errorf("peak %d MiB above the %d MiB budget", peak>>20, budget>>20)
	}
	if after > 2*idle {
		t.Errorf("after the requests the server holds %d MiB, more than twice its idle %d MiB", after>>20, idle>>20)
	}
}
