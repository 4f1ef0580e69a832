package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/kleinserve/kleinserve/internal/playground"
	"github.com/kleinserve/kleinserve/internal/testenv"
	"github.com/kleinserve/kleinserve/internal/wire"
)

// Environment of the browser test:
//
//	KLEINSERVE_CHROMIUM           the browser (default: /usr/bin/chromium, else chromium on PATH)
//	KLEINSERVE_TEST_ARTIFACTS     where screenshots go (default .cache/test-artifacts under the repository)
//	KLEINSERVE_UPDATE_SCREENSHOT  when set, also writes docs/playground.png (the README's picture)

// chromiumPath finds Debian's chromium (scripts/install_test_tools.sh).
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("KLEINSERVE_CHROMIUM"); p != "" {
		return p
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	return testenv.RequireTool(t, "chromium")
}

func artifactDir(t *testing.T, root string) string {
	t.Helper()
	dir := os.Getenv("KLEINSERVE_TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(root, ".cache", "test-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// newBrowser starts headless Chromium with the flags that work on the
// build machines (no sandbox as root, no GPU, nothing fetched from the
// network) and a fresh profile. Uncaught page errors and console errors are
// collected for the test to check.
func newBrowser(t *testing.T, chromium string) (context.Context, func() []string) {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	if err := chromedp.Do(ctx); err != nil {
		cancelCtx()
		cancelAlloc()
		testenv.SkipUnlessRequired(t, "chromium at %s does not start: %v", chromium, err)
	}

	var mu sync.Mutex
	var problems []string
	var wg sync.WaitGroup
	record := func(p string) {
		mu.Lock()
		problems = append(problems, p)
		mu.Unlock()
	}
	console := chromedp.Events(ctx, runtime.ConsoleAPICalled)
	exceptions := chromedp.Events(ctx, runtime.ExceptionThrown)
	wg.Go(func() {
		for ev, err := range console {
			if err != nil {
				return
			}
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				record("console.error: " + strings.Join(args, " "))
			}
		}
	})
	wg.Go(func() {
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			record("exception: " + (&chromedp.ExceptionError{ExceptionDetails: ev.ExceptionDetails}).Error())
		}
	})
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
		wg.Wait()
	})
	return ctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), problems...)
	}
}

// setField sets a form control's value as a user would, firing the input
// and change events the page listens to.
func setField(id, value string) chromedp.Action[chromedp.Void] {
	js := chromedp.Evaluate[bool](fmt.Sprintf(`(() => {
		const e = document.getElementById(%q);
		e.value = %q;
		e.dispatchEvent(new Event("input", {bubbles: true}));
		e.dispatchEvent(new Event("change", {bubbles: true}));
		return true;
	})()`, id, value))
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := js(ctx, t)
		return chromedp.Void{}, err
	}
}

// waitJS polls a JavaScript condition until it is true.
func waitJS(cond string) chromedp.Action[chromedp.Void] {
	poll := chromedp.Poll[bool](cond, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(2*time.Minute))
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := poll(ctx, t)
		return chromedp.Void{}, err
	}
}

func evalJS[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// TestPlaygroundInBrowser fills the playground's form in headless Chromium,
// runs a generation on the model, follows its progress events and
// previews to the final image, checks the image's natural size is the size
// asked for, cancels a second run, and saves screenshots at desktop and
// phone widths.
func TestPlaygroundInBrowser(t *testing.T) {
	chromium := chromiumPath(t)
	if _, err := exec.LookPath(chromium); err != nil {
		testenv.SkipUnlessRequired(t, "no chromium at %s (scripts/install_test_tools.sh)", chromium)
	}
	root := testenv.RepoRoot(t)
	bin := serverBinary(t, root)
	srv := startServer(t, bin, root, t.TempDir(), testenv.FreePort(t))
	artifacts := artifactDir(t, root)
	ctx, problems := newBrowser(t, chromium)
	defer func() {
		if t.Failed() {
			t.Logf("server log:\n%s", srv.logs.String())
		}
	}()

	// The page learns from /playground/config.json that this server has
	// keys, and shows the key box.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(srv.base+"/"),
		waitJS(`document.body.dataset.ready === "true"`),
	); err != nil {
		t.Fatal(err)
	}
	if evalJS[bool](t, ctx, `document.getElementById("key-box").hidden`) {
		t.Fatal("the API key box is hidden on a server with keys")
	}
	// One model: no model picker.
	if !evalJS[bool](t, ctx, `document.getElementById("model-box").hidden`) {
		t.Error("the model picker shows on a server with one model")
	}
	if got := evalJS[string](t, ctx, `document.getElementById("title-sub").textContent`); got != "FLUX.2 [klein] 4B Base playground" {
		t.Errorf("one model's header %q", got)
	}

	// A generation: 96x64, 12 steps (previews every 4 steps: 4 and 8). Seed
	// 1, because the tiny model's safety checker flags this prompt's image
	// at some seeds (7, 2), and the README's screenshot should show a picture.
	const width, height, steps = 96, 64, 12
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("api-key"), apiKey),
		setField("prompt", ""),
		chromedp.SendKeys(chromedp.ID("prompt"), "a lighthouse at dusk, oil painting"),
		setField("image_size", "custom"),
		setField("width", fmt.Sprint(width)),
		setField("height", fmt.Sprint(height)),
		setField("num_inference_steps", fmt.Sprint(steps)),
		setField("seed", "1"),
		chromedp.Click(chromedp.ID("run")),
		waitJS(`document.querySelector("#results img") !== null && document.querySelector("#results img").complete`),
	); err != nil {
		t.Fatal(err)
	}
	type result struct {
		W, H     int
		Previews string
		Status   string
		Gallery  int
		Code     string
		Results  string
	}
	got := evalJS[result](t, ctx, `(() => {
		const img = document.querySelector("#results img");
		return {W: img.naturalWidth, H: img.naturalHeight, Previews: document.body.dataset.previews || "0",
			Status: document.getElementById("status").textContent,
			Gallery: document.querySelectorAll("#gallery li").length,
			Code: document.getElementById("code").textContent,
			Results: document.getElementById("results").textContent};
	})()`)
	if got.W != width || got.H != height {
		t.Errorf("result image is %dx%d, asked for %dx%d", got.W, got.H, width, height)
	}
	if got.Previews == "0" || got.Previews == "" {
		t.Errorf("no preview arrived during the run (status %q)", got.Status)
	}
	if !strings.HasPrefix(got.Status, "Done") || !strings.Contains(got.Status, "seed 1") {
		t.Errorf("status after the run: %q", got.Status)
	}
	if strings.Contains(got.Results, "flagged") {
		t.Errorf("the safety checker flagged the result (a black picture): %q", got.Results)
	}
	if got.Gallery != 1 {
		t.Errorf("gallery has %d entries", got.Gallery)
	}
	if !strings.Contains(got.Code, `"num_inference_steps":12`) || !strings.Contains(got.Code, `"width":96`) {
		t.Errorf("curl code does not show the request:\n%s", got.Code)
	}
	evalJS[bool](t, ctx, `(window.scrollTo(0, 0), true)`)
	desktop, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	writeArtifact(t, artifacts, "playground-desktop.png", desktop)
	if os.Getenv("KLEINSERVE_UPDATE_SCREENSHOT") != "" {
		writeArtifact(t, filepath.Join(root, "docs"), "playground.png", desktop)
	}

	// A run queued behind a slow request (one worker): the page shows its
	// queue position, and cancels it.
	blocker := srv.submitFal(`{"prompt":"slow","num_inference_steps":50,"image_size":{"width":512,"height":512}}`)
	defer srv.call("PUT", "/queue/fal-ai/flux-2/requests/"+blocker+"/cancel", "")
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("run")),
		waitJS(`(document.body.dataset.requestId || "") !== "" && document.getElementById("queue-position").textContent.includes("queue")`),
		chromedp.Click(chromedp.ID("cancel")),
		waitJS(`document.getElementById("run").disabled === false`),
	); err != nil {
		t.Fatal(err)
	}
	requestID := evalJS[string](t, ctx, `document.body.dataset.requestId`)
	status := evalJS[string](t, ctx, `document.getElementById("status").textContent`)
	if status != "Cancelled." {
		t.Errorf("status after cancel: %q", status)
	}
	code, body := srv.call("GET", "/queue/fal-ai/flux-2/requests/"+requestID+"/status", "")
	if code != 200 || body["error_type"] != "request_cancelled" {
		t.Errorf("cancelled request's status: %d %v", code, body)
	}

	// Phone width: nothing wider than the screen, and a screenshot.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2))); err != nil {
		t.Fatal(err)
	}
	evalJS[bool](t, ctx, `(window.scrollTo(0, 0), true)`)
	phone, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if evalJS[bool](t, ctx, `document.documentElement.scrollWidth > window.innerWidth`) {
		t.Error("the page is wider than a 390 px phone screen")
	}
	writeArtifact(t, artifacts, "playground-phone.png", phone)

	for _, p := range problems() {
		t.Errorf("page error: %s", p)
	}
}

func writeArtifact(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(data))
}

// submitFal queues a request on fal's queue route and returns its id.
func (s *server) submitFal(input string) string {
	s.t.Helper()
	code, body := s.call("POST", "/queue/fal-ai/flux-2/klein/4b/base", input)
	id, _ := body["request_id"].(string)
	if code != 200 || id == "" {
		s.t.Fatalf("submit: %d %v", code, body)
	}
	return id
}

// recordPosts makes the page record the URL of every POST it sends, in
// window.posts.
const recordPosts = `(() => {
	window.posts = [];
	const fetch0 = window.fetch;
	window.fetch = (url, opts) => {
		if (opts && opts.method === "POST") window.posts.push(new URL(String(url), location.href).pathname);
		return fetch0(url, opts);
	};
	return true;
})()`

// TestPlaygroundModels serves the 4B Base and the distilled 4B from one
// process: the page offers both, the Base selected; choosing the distilled
// model shows its own fields (no guidance, negative prompt, acceleration or
// CNS; 4 steps by default) and endpoint, and a generation runs on that
// endpoint with its 4 steps. A gallery item re-runs on its own endpoint
// whichever model is selected, and the choice of model survives a reload.
func TestPlaygroundModels(t *testing.T) {
	chromium := chromiumPath(t)
	if _, err := exec.LookPath(chromium); err != nil {
		testenv.SkipUnlessRequired(t, "no chromium at %s (scripts/install_test_tools.sh)", chromium)
	}
	root := testenv.RepoRoot(t)
	bin := serverBinary(t, root)
	srv := startServer(t, bin, root, t.TempDir(), testenv.FreePort(t),
		"-models", modelDir(root)+","+filepath.Join(root, "models", "tiny-4b-distilled"))
	ctx, problems := newBrowser(t, chromium)
	defer func() {
		if t.Failed() {
			t.Logf("server log:\n%s", srv.logs.String())
		}
	}()
	const baseID, distilledID = "fal-ai/flux-2/klein/4b/base", "fal-ai/flux-2/klein/4b"

	if err := chromedp.Do(ctx,
		chromedp.Navigate(srv.base+"/"),
		waitJS(`document.body.dataset.ready === "true"`),
	); err != nil {
		t.Fatal(err)
	}
	type form struct {
		PickerHidden bool
		Models       []string
		Model        string
		Endpoint     string
		Steps        string
		StepsLabel   string
		Guidance     bool
		Negative     bool
		Acceleration bool
		CNSHidden    bool
		LoRATab      bool
	}
	readForm := func() form {
		return evalJS[form](t, ctx, `(() => {
			const $ = (id) => document.getElementById(id);
			const steps = $("num_inference_steps");
			return {PickerHidden: $("model-box").hidden, Models: [...$("model").options].map((o) => o.value),
				Model: $("model").value, Endpoint: $("endpoint-id").textContent,
				Steps: steps.value, StepsLabel: document.querySelector('label[for="num_inference_steps"]').textContent,
				Guidance: $("guidance_scale") !== null, Negative: $("negative_prompt") !== null,
				Acceleration: $("acceleration") !== null, CNSHidden: $("cns-details").hidden,
				LoRATab: !$("tab-lora").hidden};
		})()`)
	}
	got := readForm()
	if got.PickerHidden || strings.Join(got.Models, " ") != baseID+" "+distilledID || got.Model != baseID {
		t.Fatalf("model picker: hidden %v, models %v, selected %q", got.PickerHidden, got.Models, got.Model)
	}
	if got.Endpoint != baseID || got.Steps != "28" || !got.Guidance || !got.Negative || !got.Acceleration || got.CNSHidden {
		t.Errorf("the Base's form: %+v", got)
	}

	// The distilled model: its fields and defaults, its endpoint.
	if err := chromedp.Do(ctx, setField("model", distilledID)); err != nil {
		t.Fatal(err)
	}
	got = readForm()
	if got.Endpoint != distilledID || got.Steps != "4" || !strings.Contains(got.StepsLabel, "(default 4)") ||
		got.Guidance || got.Negative || got.Acceleration || !got.CNSHidden || !got.LoRATab {
		t.Errorf("the distilled model's form: %+v", got)
	}
	code := evalJS[string](t, ctx, `document.getElementById("code").textContent`)
	if !strings.Contains(code, "POST "+srv.base+"/"+distilledID+" ") || strings.Contains(code, "guidance") {
		t.Errorf("curl code for the distilled model:\n%s", code)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("code-tab-py"))); err != nil {
		t.Fatal(err)
	}
	if code := evalJS[string](t, ctx, `document.getElementById("code").textContent`); !strings.Contains(code, `"`+distilledID+`",`) {
		t.Errorf("Python code for the distilled model:\n%s", code)
	}

	// A small generation on the distilled endpoint, at its 4 default steps.
	evalJS[bool](t, ctx, recordPosts)
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("api-key"), apiKey),
		setField("prompt", "a fox in the snow"),
		setField("image_size", "custom"),
		setField("width", "64"),
		setField("height", "64"),
		setField("seed", "3"),
		chromedp.Click(chromedp.ID("run")),
		waitJS(`document.querySelector("#results img") !== null && document.querySelector("#results img").complete`),
	); err != nil {
		t.Fatal(err)
	}
	type run struct {
		Posts     []string
		Status    string
		W, H      int
		RequestID string
		Gallery   []string
	}
	readRun := func() run {
		return evalJS[run](t, ctx, `(() => {
			const img = document.querySelector("#results img");
			return {Posts: window.posts, Status: document.getElementById("status").textContent,
				W: img.naturalWidth, H: img.naturalHeight, RequestID: document.body.dataset.requestId,
				Gallery: [...document.querySelectorAll("#gallery li .meta .help")].map((p) => p.textContent)};
		})()`)
	}
	r := readRun()
	if strings.Join(r.Posts, " ") != "/"+distilledID+"/stream" || !strings.HasPrefix(r.Status, "Done") || r.W != 64 || r.H != 64 {
		t.Fatalf("distilled run: %+v", r)
	}
	if len(r.Gallery) != 1 || !strings.HasPrefix(r.Gallery[0], "klein/4b · ") {
		t.Errorf("gallery after the distilled run: %q", r.Gallery)
	}
	evalJS[bool](t, ctx, `(window.scrollTo(0, 0), true)`)
	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	writeArtifact(t, artifactDir(t, root), "playground-models.png", shot)
	status, body := srv.call("GET", "/queue/fal-ai/flux-2/requests/"+r.RequestID+"/status?logs=1", "")
	logs, _ := json.Marshal(body["logs"])
	if status != 200 || !strings.Contains(string(logs), "with 4 steps") {
		t.Errorf("the distilled run's status: %d, logs %s", status, logs)
	}

	// Back to the Base; re-running the gallery item runs on the distilled
	// endpoint again, and selects its model.
	evalJS[bool](t, ctx, `(window.posts = [], true)`)
	if err := chromedp.Do(ctx,
		setField("model", baseID),
		chromedp.Click(chromedp.CSS(`#gallery li button`)),
		waitJS(`(document.querySelectorAll("#gallery li").length === 2 || document.getElementById("status").dataset.kind === "error") &&
			document.getElementById("run").disabled === false`),
	); err != nil {
		t.Fatal(err)
	}
	r = readRun()
	if strings.Join(r.Posts, " ") != "/"+distilledID+"/stream" || !strings.HasPrefix(r.Status, "Done") || !strings.Contains(r.Status, "seed 3") {
		t.Errorf("re-run: %+v", r)
	}
	if got := readForm(); got.Model != distilledID || got.Guidance {
		t.Errorf("form after the re-run: %+v", got)
	}

	// The choice survives a reload.
	if err := chromedp.Do(ctx,
		chromedp.Reload(),
		waitJS(`document.body.dataset.ready === "true"`),
	); err != nil {
		t.Fatal(err)
	}
	if got := readForm(); got.Model != distilledID || got.Steps != "4" || got.Guidance {
		t.Errorf("form after a reload: %+v", got)
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2))); err != nil {
		t.Fatal(err)
	}
	if evalJS[bool](t, ctx, `document.documentElement.scrollWidth > window.innerWidth`) {
		t.Error("the page with a model picker is wider than a 390 px phone screen")
	}

	for _, p := range problems() {
		t.Errorf("page error: %s", p)
	}
}

// TestPlaygroundModelWithoutLoRA serves the page alone for a catalog whose
// second model takes no LoRAs: choosing it hides the LoRA mode and leaves
// LoRA mode for text-to-image.
func TestPlaygroundModelWithoutLoRA(t *testing.T) {
	chromium := chromiumPath(t)
	if _, err := exec.LookPath(chromium); err != nil {
		testenv.SkipUnlessRequired(t, "no chromium at %s (scripts/install_test_tools.sh)", chromium)
	}
	noLoRA := wire.Model{ID: "fal-ai/flux-2/klein/9b/base"}
	cat, err := wire.NewCatalog(wire.Base4B, noLoRA)
	if err != nil {
		t.Fatal(err)
	}
	page := httptest.NewServer(playground.Handler(playground.Config{Catalog: cat}))
	defer page.Close()
	ctx, problems := newBrowser(t, chromium)

	if err := chromedp.Do(ctx,
		chromedp.Navigate(page.URL+"/"),
		waitJS(`document.body.dataset.ready === "true"`),
		chromedp.Click(chromedp.ID("tab-lora")),
	); err != nil {
		t.Fatal(err)
	}
	type tabs struct {
		LoRAHidden, EditHidden bool
		Selected, Endpoint     string
		LoRAsHidden            bool
	}
	read := func() tabs {
		return evalJS[tabs](t, ctx, `(() => ({
			LoRAHidden: document.getElementById("tab-lora").hidden, EditHidden: document.getElementById("tab-edit").hidden,
			Selected: document.querySelector('#mode-tabs [aria-selected="true"]').dataset.mode,
			Endpoint: document.getElementById("endpoint-id").textContent,
			LoRAsHidden: document.getElementById("loras-set").hidden}))()`)
	}
	if got := read(); got.LoRAHidden || got.Selected != "lora" || got.Endpoint != wire.EndpointLoRA.ID {
		t.Fatalf("LoRA mode on the 4B Base: %+v", got)
	}
	if err := chromedp.Do(ctx, setField("model", noLoRA.ID)); err != nil {
		t.Fatal(err)
	}
	if got := read(); !got.LoRAHidden || got.EditHidden || got.Selected != "text" || got.Endpoint != noLoRA.ID || !got.LoRAsHidden {
		t.Errorf("after choosing a model without LoRAs: %+v", got)
	}
	for _, p := range problems() {
		t.Errorf("page error: %s", p)
	}
}
