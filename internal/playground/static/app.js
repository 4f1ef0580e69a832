// kleinserve playground: plain ES module, no build step, no network
// beyond this server. It speaks fal's protocol to the server it came from:
// POST /{endpoint}/stream for progress and previews, the queue status
// stream for the queue position and logs, PUT …/cancel, and the storage
// upload API for reference images. The served models, their endpoints and
// each endpoint's defaults and bounds come from /playground/config.json
// (the server's own constants).

const $ = (id) => document.getElementById(id);
const KEY_STORE = "kleinserve.apiKey";
const GALLERY_STORE = "kleinserve.gallery";
const MODEL_STORE = "kleinserve.model";
const GALLERY_MAX = 24;
const THUMB_SIDE = 160;

// The form's fields, beyond the prompt. Labels and help are the page's;
// defaults and bounds are the server's (each endpoint's fields); a model
// whose endpoints lack a field does not show it.
const MAIN_FIELDS = [
  { name: "image_size", label: "Image size", kind: "size" },
  { name: "num_images", label: "Number of images", kind: "int" },
  { name: "num_inference_steps", label: "Inference steps", kind: "int" },
  { name: "guidance_scale", label: "Guidance scale", kind: "float", step: 0.1 },
  { name: "seed", label: "Seed", kind: "int", help: "Empty: random. The seed used is reported with the result." },
  { name: "acceleration", label: "Acceleration", kind: "enum", help: "Reuses some steps' velocity: faster, slightly different." },
  { name: "output_format", label: "Output format", kind: "enum" },
  { name: "negative_prompt", label: "Negative prompt", kind: "text", wide: true, help: "What guidance steers away from." },
  { name: "enable_safety_checker", label: "Safety checker", kind: "bool" },
  { name: "sync_mode", label: "Sync mode (images inline as data URIs, nothing stored)", kind: "bool" },
];
const CNS_FIELDS = [
  { name: "enable_cns", label: "Enable CNS (the fields below take effect)", kind: "bool", wide: true },
  { name: "cns_s_churn", label: "s_churn: noise injected per step", kind: "float", step: 0.05 },
  { name: "cns_gamma_source", label: "Gamma source", kind: "enum" },
  { name: "cns_power_gamma", label: "Power on (1 − gamma)", kind: "float", step: 0.05 },
  { name: "cns_gamma_divider", label: "Gamma divider", kind: "float", step: 0.01 },
  { name: "cns_alpha_tilt_start", label: "Frequency tilt at start", kind: "float", step: 0.05 },
  { name: "cns_alpha_tilt_end", label: "Frequency tilt at end", kind: "float", step: 0.05 },
  { name: "cns_alpha_use_fnorm", label: "Frequency-weighted tilt", kind: "bool" },
  { name: "cns_alpha_exp_interp", label: "Exponential tilt interpolation", kind: "bool" },
  { name: "cns_alpha_exp_sharpness", label: "Interpolation sharpness", kind: "float", step: 0.05 },
  { name: "cns_num_freq_bins", label: "Frequency bands", kind: "int" },
  { name: "cns_energy_scale", label: "Energy scale", kind: "float", step: 0.01 },
];
const ALL_FIELDS = [...MAIN_FIELDS, ...CNS_FIELDS];

const state = {
  cfg: null,
  model: null, // one of cfg.models
  mode: "text",
  images: [], // {url, name}
  running: null, // {id, ctrl, statusCtrl, cancelled}
  lang: "curl",
};

// ---------------------------------------------------------------- helpers

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) e.append(c);
  return e;
}

function apiKey() {
  return $("api-key").value.trim();
}

function headers(json) {
  const h = {};
  if (apiKey()) h.Authorization = "Key " + apiKey();
  if (json) h["Content-Type"] = "application/json";
  return h;
}

function setStatus(text, kind = "") {
  const s = $("status");
  s.textContent = text;
  s.dataset.kind = kind;
}

function log(line) {
  $("log").textContent += line + "\n";
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // Not a secure context (http on another host): the old way.
    const ta = el("textarea", { class: "visually-hidden" });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    const ok = document.execCommand("copy");
    ta.remove();
    return ok;
  }
}

function describeDefault(v) {
  if (v === null || v === undefined) return "random";
  if (v === "") return "empty";
  return String(v);
}

// ---------------------------------------------------------------- form

function buildField(f) {
  const cfgField = formDefaults()[f.name] || {};
  const def = cfgField.default;
  const wrap = el("div", { class: "field" + (f.wide ? " wide" : "") + (f.kind === "bool" ? " check" : "") });
  const errId = "err-" + f.name;
  const helpId = "help-" + f.name;
  const described = [f.help ? helpId : "", errId].filter(Boolean).join(" ");
  let input;
  if (f.kind === "size") return buildSizeField(f);
  if (f.kind === "bool") {
    input = el("input", { type: "checkbox", id: f.name, name: f.name, "aria-describedby": described });
    input.checked = !!def;
    wrap.append(input, el("label", { for: f.name, text: f.label }));
  } else {
    if (f.kind === "enum") {
      input = el("select", { id: f.name, name: f.name, "aria-describedby": described });
      for (const v of cfgField.enum || []) input.append(el("option", { value: v, text: v }));
      input.value = def;
    } else if (f.kind === "text") {
      input = el("input", { type: "text", id: f.name, name: f.name, "aria-describedby": described });
      input.value = def ?? "";
    } else {
      input = el("input", {
        type: "number", id: f.name, name: f.name, inputmode: f.kind === "int" ? "numeric" : "decimal",
        step: f.kind === "int" ? 1 : f.step, min: cfgField.min, max: cfgField.max, "aria-describedby": described,
      });
      input.value = def ?? "";
      if (f.name === "seed") input.placeholder = "random";
    }
    wrap.append(el("label", { for: f.name }, f.label + " ", el("span", { class: "default", text: `(default ${describeDefault(def)})` })), input);
  }
  if (f.help) wrap.append(el("p", { class: "help", id: helpId, text: f.help }));
  wrap.append(el("p", { class: "field-error", id: errId, "aria-live": "polite" }));
  return wrap;
}

function buildSizeField() {
  const cfg = state.cfg;
  const wrap = el("div", { class: "field wide" });
  const select = el("select", { id: "image_size", name: "image_size", "aria-describedby": "help-image_size err-image_size" });
  select.append(el("option", { value: "", text: "endpoint default" }));
  for (const [name, s] of Object.entries(cfg.size_presets).sort((a, b) => a[1].width * a[1].height - b[1].width * b[1].height || a[0].localeCompare(b[0]))) {
    select.append(el("option", { value: name, text: `${name} (${s.width}×${s.height})` }));
  }
  select.append(el("option", { value: "custom", text: "custom…" }));
  const dims = el("div", { class: "row", id: "custom-size", hidden: true });
  for (const side of ["width", "height"]) {
    const input = el("input", {
      type: "number", id: side, name: side, min: cfg.min_side, max: cfg.max_side, step: cfg.size_multiple,
      inputmode: "numeric", "aria-describedby": "help-image_size",
    });
    input.value = 1024;
    dims.append(el("label", { for: side, text: side === "width" ? "Width" : "Height" }), input);
  }
  wrap.append(
    el("label", { for: "image_size" }, "Image size ", el("span", { class: "default", text: `(default ${formDefaults().image_size.default})` })),
    select, dims,
    el("p", { class: "help", id: "help-image_size", text: `Custom: ${cfg.min_side}–${cfg.max_side} px per side, multiples of ${cfg.size_multiple}, at most ${(cfg.max_pixels / 1048576).toFixed(0)} MP.` }),
    el("p", { class: "field-error", id: "err-image_size", "aria-live": "polite" }),
  );
  select.addEventListener("change", () => {
    dims.hidden = select.value !== "custom";
  });
  return wrap;
}

// buildForm builds the model's fields, with their defaults.
function buildForm() {
  const main = $("fields");
  const cns = $("cns-fields");
  main.replaceChildren();
  cns.replaceChildren();
  for (const f of formFields()) (MAIN_FIELDS.includes(f) ? main : cns).append(buildField(f));
  $("cns-details").hidden = cns.children.length === 0;
  resetFields();
}

function resetFields() {
  for (const f of formFields()) {
    const def = endpointFields()[f.name]?.default;
    if (f.kind === "size") {
      $("image_size").value = state.mode === "text" ? def : "";
      $("custom-size").hidden = true;
    } else if (f.kind === "bool") $(f.name).checked = !!def;
    else $(f.name).value = def ?? "";
  }
}

function numberValue(input, kind) {
  if (input.value.trim() === "") return undefined;
  const n = kind === "int" ? Number.parseInt(input.value, 10) : Number.parseFloat(input.value);
  // An unreadable number goes as typed: the server names the field.
  return Number.isNaN(n) ? input.value : n;
}

// readInput is the endpoint input for the form: the prompt and every field
// that differs from its default.
function readInput() {
  const input = { prompt: $("prompt").value };
  const fields = endpointFields();
  for (const f of formFields()) {
    if (!(f.name in fields)) continue;
    const def = fields[f.name].default;
    let v;
    if (f.kind === "size") {
      const sel = $("image_size").value;
      if (sel === "custom") v = { width: numberValue($("width"), "int"), height: numberValue($("height"), "int") };
      else if (sel === "" || sel === def) continue;
      else v = sel;
    } else if (f.kind === "bool") v = $(f.name).checked;
    else if (f.kind === "enum" || f.kind === "text") v = $(f.name).value;
    else v = numberValue($(f.name), f.kind);
    if (v === undefined || v === def) continue;
    input[f.name] = v;
  }
  if (usesImages()) input.image_urls = state.images.map((i) => i.url);
  if (state.mode === "lora") {
    input.loras = [...document.querySelectorAll("#lora-list .lora-row")]
      .map((row) => ({ path: row.querySelector(".lora-path").value.trim(), scale: numberValue(row.querySelector(".lora-scale"), "float") }))
      .filter((l) => l.path !== "")
      .map((l) => (l.scale === undefined ? { path: l.path } : l));
  }
  return input;
}

function usesImages() {
  return state.mode === "edit" || (state.mode === "lora" && state.images.length > 0);
}

// modeEndpoint is the model's endpoint for a form mode: edit takes
// reference images, LoRA mode takes them optionally (the model's edit LoRA
// endpoint when there are some). Undefined when the model has none.
function modeEndpoint(model, mode, withImages) {
  const edit = mode === "edit" || (mode === "lora" && withImages);
  const lora = mode === "lora";
  return model.endpoints.find((e) => e.edit === edit && e.lora === lora);
}

function endpoint() {
  return modeEndpoint(state.model, state.mode, state.images.length > 0).id;
}

// endpointFields are the fields the endpoint the form submits to takes.
function endpointFields() {
  return modeEndpoint(state.model, state.mode, state.images.length > 0).fields;
}

// formDefaults are the model's text-to-image fields: the form's labels and
// bounds. A model's other endpoints take the same fields (beyond reference
// images and LoRAs) with the same defaults, except that the edit endpoints'
// size defaults to the first reference's.
function formDefaults() {
  return modeEndpoint(state.model, "text", false).fields;
}

function formFields() {
  const fields = formDefaults();
  return ALL_FIELDS.filter((f) => f.name in fields);
}

// modelOf is the served model with an endpoint, if any.
function modelOf(endpointID) {
  return state.cfg.models.find((m) => m.endpoints.some((e) => e.id === endpointID));
}

// selectModel switches the form to a model: its modes, its fields with
// their defaults, its endpoints.
function selectModel(id) {
  const model = state.cfg.models.find((m) => m.id === id) || state.cfg.models[0];
  state.model = model;
  $("model").value = model.id;
  localStorage.setItem(MODEL_STORE, model.id);
  for (const tab of document.querySelectorAll("#mode-tabs [role=tab]")) tab.hidden = !modeEndpoint(model, tab.dataset.mode, false);
  if (!modeEndpoint(model, state.mode, false)) state.mode = "text";
  buildForm();
  setMode(state.mode, false);
}

// modelLabel names a model in the picker: its id below the app's.
function modelLabel(m) {
  const prefix = state.cfg.app_id + "/";
  return (m.id.startsWith(prefix) ? m.id.slice(prefix.length) : m.id) + (m.distilled ? " (distilled)" : "");
}

// modelName is a model's name for the header: "4B Base" for
// …/klein/4b/base, "4B" for the distilled …/klein/4b (fal's names).
function modelName(m) {
  const parts = m.id.split("/");
  const k = parts.indexOf("klein");
  if (k < 0 || k + 1 >= parts.length) return modelLabel(m);
  return parts[k + 1].toUpperCase() + (parts[k + 2] === "base" ? " Base" : "");
}

// endpointLabel names an endpoint in the gallery: below its model's last
// path element when one model is served ("base/edit"), below the app's id
// when several are.
function endpointLabel(id) {
  const models = state.cfg.models;
  const only = models.length === 1 ? models[0].id : null;
  if (only && (id === only || id.startsWith(only + "/"))) return only.split("/").pop() + id.slice(only.length);
  const prefix = state.cfg.app_id + "/";
  return id.startsWith(prefix) ? id.slice(prefix.length) : id;
}

// applyInput fills the form from a stored request (re-run) on a model.
function applyInput(model, mode, input) {
  if (model !== state.model) selectModel(model.id);
  setMode(mode, false);
  resetFields();
  $("prompt").value = input.prompt ?? "";
  for (const f of formFields()) {
    if (!(f.name in input)) continue;
    const v = input[f.name];
    if (f.kind === "size") {
      if (typeof v === "object") {
        $("image_size").value = "custom";
        $("width").value = v.width;
        $("height").value = v.height;
        $("custom-size").hidden = false;
      } else $("image_size").value = v;
    } else if (f.kind === "bool") $(f.name).checked = !!v;
    else $(f.name).value = v;
  }
  state.images = (input.image_urls || []).map((url, i) => ({ url, name: `image ${i + 1}` }));
  renderImages();
  $("lora-list").replaceChildren();
  for (const l of input.loras || []) addLoraRow(l.path, l.scale);
  updateCode();
}

// ---------------------------------------------------------------- modes

function setMode(mode, focus) {
  state.mode = mode;
  for (const tab of document.querySelectorAll("#mode-tabs [role=tab]")) {
    const on = tab.dataset.mode === mode;
    tab.setAttribute("aria-selected", on);
    tab.tabIndex = on ? 0 : -1;
    if (on) {
      $("form").setAttribute("aria-labelledby", tab.id);
      if (focus) tab.focus();
    }
  }
  $("images-set").hidden = mode === "text";
  $("loras-set").hidden = mode !== "lora";
  $("images-help").textContent = mode === "edit"
    ? `1 to ${state.cfg.max_reference_images} images to edit: upload files (stored on this server) or give URLs.`
    : `Optional: with reference images the LoRA edits them (…/edit/lora).`;
  if (mode === "lora" && $("lora-list").children.length === 0) addLoraRow("", undefined);
  const sizeDefault = formDefaults().image_size.default;
  if (mode !== "text" && $("image_size").value === sizeDefault) $("image_size").value = "";
  if (mode === "text" && $("image_size").value === "") $("image_size").value = sizeDefault;
  updateCode();
}

function tabKeys(list, onSelect) {
  list.addEventListener("keydown", (ev) => {
    const tabs = [...list.querySelectorAll("[role=tab]:not([hidden])")];
    const i = tabs.indexOf(document.activeElement);
    if (i < 0) return;
    let j = null;
    if (ev.key === "ArrowRight") j = (i + 1) % tabs.length;
    else if (ev.key === "ArrowLeft") j = (i - 1 + tabs.length) % tabs.length;
    else if (ev.key === "Home") j = 0;
    else if (ev.key === "End") j = tabs.length - 1;
    if (j === null) return;
    ev.preventDefault();
    onSelect(tabs[j]);
  });
}

// ---------------------------------------------------------------- images and LoRAs

function renderImages() {
  const list = $("image-list");
  list.replaceChildren();
  state.images.forEach((img, i) => {
    const remove = el("button", { type: "button", "aria-label": `Remove reference image ${i + 1}`, text: "Remove" });
    remove.addEventListener("click", () => {
      state.images.splice(i, 1);
      renderImages();
      updateCode();
    });
    list.append(el("li", {}, el("img", { src: img.url, alt: `Reference image ${i + 1}: ${img.name}` }), remove));
  });
  const max = state.cfg.max_reference_images;
  $("images-count").textContent = `(${state.images.length} of ${max})`;
  $("image-add").disabled = state.images.length >= max;
  $("image-file").disabled = state.images.length >= max;
}

async function uploadFile(file) {
  const init = await fetch("/storage/upload/initiate", {
    method: "POST", headers: headers(true),
    body: JSON.stringify({ content_type: file.type || "application/octet-stream", file_name: file.name }),
  });
  if (!init.ok) throw new Error(await errorText(init));
  const { upload_url: uploadURL, file_url: fileURL } = await init.json();
  const put = await fetch(uploadURL, { method: "PUT", headers: { "Content-Type": file.type || "application/octet-stream" }, body: file });
  if (!put.ok) throw new Error(await errorText(put));
  return fileURL;
}

function addLoraRow(path, scale) {
  const list = $("lora-list");
  if (list.children.length >= state.cfg.max_loras) return;
  const row = $("lora-row").content.firstElementChild.cloneNode(true);
  const n = list.children.length + 1;
  row.querySelector(".lora-path").value = path || "";
  row.querySelector(".lora-path").setAttribute("aria-label", `LoRA ${n} path`);
  row.querySelector(".lora-scale").value = scale ?? modeEndpoint(state.model, "lora", false).fields.lora_scale.default;
  row.querySelector(".lora-scale").setAttribute("aria-label", `LoRA ${n} scale`);
  row.querySelector(".lora-remove").setAttribute("aria-label", `Remove LoRA ${n}`);
  row.querySelector(".lora-remove").addEventListener("click", () => {
    row.remove();
    $("lora-add").disabled = false;
    updateCode();
  });
  list.append(row);
  $("lora-add").disabled = list.children.length >= state.cfg.max_loras;
}

// ---------------------------------------------------------------- errors

function clearErrors() {
  for (const p of document.querySelectorAll(".field-error")) p.textContent = "";
  for (const i of document.querySelectorAll("[aria-invalid]")) i.removeAttribute("aria-invalid");
}

function showFieldError(field, msg) {
  const target = $("err-" + field) || $("err-body");
  target.textContent = (target.textContent ? target.textContent + " " : "") + msg;
  const input = $(field === "image_size" ? "image_size" : field);
  if (input) input.setAttribute("aria-invalid", "true");
}

async function errorText(res) {
  try {
    const body = await res.json();
    if (typeof body.detail === "string") return `${res.status}: ${body.detail}`;
    if (Array.isArray(body.detail)) return `${res.status}: ` + body.detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
  } catch {
    // not JSON
  }
  return `${res.status} ${res.statusText}`;
}

async function showHTTPError(res) {
  if (res.status === 422) {
    let body = null;
    try {
      body = await res.clone().json();
    } catch {
      // not JSON
    }
    if (Array.isArray(body?.detail)) {
      for (const d of body.detail) {
        const field = typeof d.loc?.[1] === "string" ? d.loc[1] : "body";
        const sub = (d.loc || []).slice(2).join(".");
        showFieldError(field, (sub ? sub + ": " : "") + d.msg);
      }
      setStatus("The server did not accept the input; see the marked fields.", "error");
      const first = document.querySelector("[aria-invalid=true]");
      if (first) first.focus();
      return;
    }
  }
  if (res.status === 401) {
    $("key-box").hidden = false;
    $("api-key").focus();
    setStatus("This server needs an API key: enter one of its keys above.", "error");
    return;
  }
  if (res.status === 404) {
    setStatus(`This server does not serve ${endpoint()}.`, "error");
    return;
  }
  setStatus("Error " + (await errorText(res)), "error");
}

// ---------------------------------------------------------------- running

// sseEvents yields the JSON data of each Server-Sent Event of a body.
async function* sseEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value.replaceAll("\r\n", "\n");
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).replace(/^ /, "")).join("\n");
      if (data) yield JSON.parse(data);
    }
  }
}

function setRunning(on) {
  $("run").disabled = on;
  $("cancel").disabled = !on;
  $("form").setAttribute("aria-busy", on);
}

async function run() {
  clearErrors();
  if (state.running) return;
  const input = readInput();
  const ep = endpoint();
  if (!input.prompt.trim()) {
    showFieldError("prompt", "Enter a prompt.");
    $("prompt").focus();
    return;
  }
  const job = { id: null, ctrl: new AbortController(), statusCtrl: new AbortController(), cancelled: false, endpoint: ep, input, mode: state.mode };
  state.running = job;
  setRunning(true);
  $("progress").value = 0;
  $("queue-position").textContent = "";
  $("preview-box").hidden = true;
  $("log").textContent = "";
  document.body.dataset.requestId = "";
  setStatus("Submitting…");
  try {
    const res = await fetch("/" + ep + "/stream", { method: "POST", headers: headers(true), body: JSON.stringify(input), signal: job.ctrl.signal });
    if (!res.ok) {
      await showHTTPError(res);
      return;
    }
    job.id = res.headers.get("x-fal-request-id");
    document.body.dataset.requestId = job.id || "";
    log(`Request ${job.id} on ${ep}`);
    if (job.id) watchStatus(job);
    let final = null;
    for await (const ev of sseEvents(res.body)) {
      if (ev.partial) onProgress(ev);
      else final = ev;
    }
    if (!final) setStatus(job.cancelled ? "Cancelled." : "The stream ended without a result.", "error");
    else if (final.error !== undefined) {
      if (final.error_type === "request_cancelled") setStatus("Cancelled.", "cancelled");
      else setStatus("Failed: " + final.error, "error");
      if (Array.isArray(final.detail)) for (const d of final.detail) showFieldError(typeof d.loc?.[1] === "string" ? d.loc[1] : "body", d.msg);
    } else await onResult(job, final);
  } catch (err) {
    if (job.cancelled) setStatus("Cancelled.", "cancelled");
    else setStatus("Connection failed: " + err.message, "error");
  } finally {
    job.statusCtrl.abort();
    state.running = null;
    setRunning(false);
  }
}

// watchStatus follows the queue status stream for the position and logs.
async function watchStatus(job) {
  const url = `/queue/${state.cfg.app_id}/requests/${job.id}/status/stream?logs=1`;
  try {
    const res = await fetch(url, { headers: headers(false), signal: job.statusCtrl.signal });
    if (!res.ok) return;
    for await (const st of sseEvents(res.body)) {
      if (st.status === "IN_QUEUE") {
        const ahead = st.queue_position ?? 0;
        $("queue-position").textContent = ahead === 0 ? "Next in the queue." : `In the queue: ${ahead} ahead.`;
        if (!$("progress").value) setStatus("Waiting in the queue…");
      } else if (st.status === "IN_PROGRESS") {
        $("queue-position").textContent = "Running.";
      } else {
        $("queue-position").textContent = "";
      }
      for (const l of st.logs || []) log(`${l.timestamp} ${l.level} ${l.message}`);
    }
  } catch {
    // aborted when the run ends
  }
}

function onProgress(ev) {
  if (ev.num_inference_steps) {
    $("progress").value = ev.progress ?? ev.step / ev.num_inference_steps;
    setStatus(`Step ${ev.step} of ${ev.num_inference_steps}`);
  }
  const url = ev.images?.[0]?.url;
  if (url) {
    $("preview").src = url;
    $("preview-box").hidden = false;
    $("preview-caption").textContent = `Preview after step ${ev.step}`;
    document.body.dataset.previews = String(Number(document.body.dataset.previews || 0) + 1);
  }
}

async function onResult(job, out) {
  $("progress").value = 1;
  $("preview-box").hidden = true;
  const secs = out.timings?.inference;
  setStatus(`Done${secs ? ` in ${secs.toFixed(2)} s` : ""}: ${out.images.length} image(s), seed ${out.seed}.`, "done");
  const results = $("results");
  results.replaceChildren();
  out.images.forEach((img, k) => {
    const nsfw = out.has_nsfw_concepts?.[k];
    results.append(el("figure", { class: "result" },
      el("img", { src: img.url, alt: `Generated image ${k + 1} for: ${job.input.prompt}`, width: img.width, height: img.height }),
      el("figcaption", {},
        `${img.width}×${img.height} · seed ${out.seed + k} · ${img.content_type || ""}${nsfw ? " · flagged by the safety checker" : ""} `,
        el("a", { href: img.url, download: img.file_name || `image_${k}`, text: "Download" }))));
  });
  await addToGallery(job, out);
}

async function cancel() {
  const job = state.running;
  if (!job) return;
  job.cancelled = true;
  setStatus("Cancelling…");
  if (!job.id) {
    // Not queued yet as far as we know: dropping the connection cancels it.
    job.ctrl.abort();
    return;
  }
  const res = await fetch(`/queue/${state.cfg.app_id}/requests/${job.id}/cancel`, { method: "PUT", headers: headers(false) });
  if (!res.ok && res.status !== 400) setStatus("Cancel failed: " + (await errorText(res)), "error");
}

// ---------------------------------------------------------------- gallery

function loadGallery() {
  try {
    return JSON.parse(localStorage.getItem(GALLERY_STORE) || "[]");
  } catch {
    return [];
  }
}

function saveGallery(items) {
  while (items.length) {
    try {
      localStorage.setItem(GALLERY_STORE, JSON.stringify(items));
      return;
    } catch {
      items.pop(); // over the storage quota: drop the oldest
    }
  }
  localStorage.removeItem(GALLERY_STORE);
}

async function thumbnail(url) {
  const img = new Image();
  img.src = url;
  try {
    await img.decode();
  } catch {
    return null;
  }
  const scale = Math.min(1, THUMB_SIDE / Math.max(img.naturalWidth, img.naturalHeight));
  const c = document.createElement("canvas");
  c.width = Math.max(1, Math.round(img.naturalWidth * scale));
  c.height = Math.max(1, Math.round(img.naturalHeight * scale));
  c.getContext("2d").drawImage(img, 0, 0, c.width, c.height);
  return c.toDataURL("image/jpeg", 0.8);
}

async function addToGallery(job, out) {
  const input = { ...job.input, seed: out.seed };
  const entry = {
    id: job.id, at: new Date().toISOString(), mode: job.mode, endpoint: job.endpoint, input,
    images: [],
  };
  for (const img of out.images) {
    entry.images.push({
      url: img.url.startsWith("data:") ? null : img.url, width: img.width, height: img.height,
      thumb: await thumbnail(img.url),
    });
  }
  const items = loadGallery();
  items.unshift(entry);
  saveGallery(items.slice(0, GALLERY_MAX));
  renderGallery();
}

function renderGallery() {
  const list = $("gallery");
  list.replaceChildren();
  for (const item of loadGallery()) {
    const size = item.images[0] ? `${item.images[0].width}×${item.images[0].height}` : "";
    const rerun = el("button", { type: "button", text: "Re-run", "aria-label": `Re-run “${item.input.prompt}” with seed ${item.input.seed}` });
    rerun.addEventListener("click", () => {
      // On the endpoint it ran on, whichever model is selected now.
      const model = modelOf(item.endpoint);
      if (model) applyInput(model, item.mode, item.input);
      if (!model || endpoint() !== item.endpoint) {
        setStatus(`This server does not serve ${item.endpoint}.`, "error");
        return;
      }
      run();
    });
    const copy = el("button", { type: "button", text: "Copy", "aria-label": `Copy the request of “${item.input.prompt}”` });
    copy.addEventListener("click", async () => {
      const ok = await copyText(JSON.stringify({ endpoint: item.endpoint, input: item.input }, null, 2));
      copy.textContent = ok ? "Copied" : "Copy failed";
      setTimeout(() => (copy.textContent = "Copy"), 1500);
    });
    const thumbs = el("div", { class: "thumbs-row" });
    item.images.forEach((img, k) => {
      const pic = el("img", { src: img.thumb || img.url || "", alt: `Result ${k + 1} of “${item.input.prompt}”`, loading: "lazy" });
      thumbs.append(img.url ? el("a", { href: img.url }, pic) : pic);
    });
    list.append(el("li", { class: "gallery-item" }, thumbs,
      el("div", { class: "meta" },
        el("p", { class: "prompt", text: item.input.prompt }),
        el("p", { class: "help", text: `${endpointLabel(item.endpoint)} · ${size} · seed ${item.input.seed} · ${new Date(item.at).toLocaleString()}` }),
        el("div", { class: "row" }, rerun, copy))));
  }
}

// ---------------------------------------------------------------- code

function pyLiteral(v, indent = "") {
  const next = indent + "    ";
  if (v === null || v === undefined) return "None";
  if (v === true) return "True";
  if (v === false) return "False";
  if (typeof v === "number" || typeof v === "string") return JSON.stringify(v);
  if (Array.isArray(v)) {
    if (!v.length) return "[]";
    return "[\n" + v.map((x) => next + pyLiteral(x, next)).join(",\n") + ",\n" + indent + "]";
  }
  const keys = Object.keys(v);
  if (!keys.length) return "{}";
  return "{\n" + keys.map((k) => `${next}${JSON.stringify(k)}: ${pyLiteral(v[k], next)}`).join(",\n") + ",\n" + indent + "}";
}

function codeFor(lang, ep, input) {
  const base = location.origin;
  if (lang === "curl") {
    const body = JSON.stringify(input).replaceAll("'", "'\\''");
    return `curl -s -X POST ${base}/${ep} \\\n  -H "Authorization: Key $FAL_KEY" \\\n  -H 'Content-Type: application/json' \\\n  -d '${body}'`;
  }
  if (lang === "js") {
    return `import { createFalClient } from "@fal-ai/client";
const BASE = ${JSON.stringify(base)};
const fal = createFalClient({
  credentials: process.env.FAL_KEY ?? "unused",
  requestMiddleware: async (req) => ({
    ...req,
    url: req.url
      .replace(/^https:\\/\\/queue\\.fal\\.run(?=[/?]|$)/, \`\${BASE}/queue\`)
      .replace(/^https:\\/\\/fal\\.run(?=[/?]|$)/, BASE)
      .replace(/^https:\\/\\/rest\\.(alpha\\.)?fal\\.ai(?=[/?]|$)/, BASE),
  }),
});
const { data } = await fal.subscribe(${JSON.stringify(ep)}, {
  input: ${JSON.stringify(input, null, 2).replaceAll("\n", "\n  ")},
  logs: true,
});
console.log(data.images.map((i) => i.url), data.seed);`;
  }
  return `import fal_client, fal_client.client as fcc
fcc.RUN_URL_FORMAT = ${JSON.stringify(base + "/")}
fcc.QUEUE_URL_FORMAT = ${JSON.stringify(base + "/queue/")}
# FAL_KEY must be set (to a configured key, or to anything when the server has no keys)
result = fal_client.subscribe(
    ${JSON.stringify(ep)},
    arguments=${pyLiteral(input, "    ")},
    with_logs=True,
)
print([i["url"] for i in result["images"]], result["seed"])`;
}

function updateCode() {
  if (!state.cfg) return;
  const ep = endpoint();
  $("endpoint-id").textContent = ep;
  $("code").textContent = codeFor(state.lang, ep, readInput());
}

// ---------------------------------------------------------------- start

async function main() {
  const res = await fetch("/playground/config.json");
  state.cfg = await res.json();
  const cfg = state.cfg;

  $("api-key").value = localStorage.getItem(KEY_STORE) || "";
  $("key-box").hidden = !cfg.auth_required;
  $("api-key").addEventListener("input", () => localStorage.setItem(KEY_STORE, apiKey()));

  // Several models: a picker, the last one chosen here selected again.
  const picker = $("model");
  for (const m of cfg.models) picker.append(el("option", { value: m.id, text: modelLabel(m) }));
  if (cfg.models.length > 1) {
    $("model-box").hidden = false;
    $("title-sub").textContent = "FLUX.2 [klein] playground";
    document.title = "kleinserve playground · FLUX.2 [klein]";
  } else {
    const name = modelName(cfg.models[0]);
    $("title-sub").textContent = `FLUX.2 [klein] ${name} playground`;
    document.title = `kleinserve playground · FLUX.2 [klein] ${name}`;
  }
  picker.addEventListener("change", () => selectModel(picker.value));
  selectModel(localStorage.getItem(MODEL_STORE));

  for (const tab of document.querySelectorAll("#mode-tabs [role=tab]")) {
    tab.addEventListener("click", () => setMode(tab.dataset.mode, false));
  }
  tabKeys($("mode-tabs"), (tab) => setMode(tab.dataset.mode, true));
  const selectLang = (tab, focus) => {
    state.lang = tab.dataset.lang;
    for (const t of document.querySelectorAll("#code-tabs [role=tab]")) {
      const on = t === tab;
      t.setAttribute("aria-selected", on);
      t.tabIndex = on ? 0 : -1;
    }
    $("code-panel").setAttribute("aria-labelledby", tab.id);
    if (focus) tab.focus();
    updateCode();
  };
  for (const tab of document.querySelectorAll("#code-tabs [role=tab]")) tab.addEventListener("click", () => selectLang(tab, false));
  tabKeys($("code-tabs"), (tab) => selectLang(tab, true));

  $("form").addEventListener("input", updateCode);
  $("form").addEventListener("change", updateCode);
  $("form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    run();
  });
  $("cancel").addEventListener("click", cancel);
  $("reset").addEventListener("click", () => {
    resetFields();
    clearErrors();
    updateCode();
  });
  $("code-copy").addEventListener("click", async () => {
    const ok = await copyText($("code").textContent);
    $("code-copy").textContent = ok ? "Copied" : "Copy failed";
    setTimeout(() => ($("code-copy").textContent = "Copy code"), 1500);
  });
  $("image-add").addEventListener("click", () => {
    const url = $("image-url").value.trim();
    if (!url) return;
    state.images.push({ url, name: url.slice(0, 60) });
    $("image-url").value = "";
    renderImages();
    updateCode();
  });
  $("image-file").addEventListener("change", async () => {
    const files = [...$("image-file").files].slice(0, cfg.max_reference_images - state.images.length);
    $("image-file").value = "";
    for (const file of files) {
      setStatus(`Uploading ${file.name}…`);
      try {
        state.images.push({ url: await uploadFile(file), name: file.name });
        setStatus(`Uploaded ${file.name}.`);
      } catch (err) {
        showFieldError("image_urls", `Upload of ${file.name} failed: ${err.message}`);
        setStatus("Upload failed.", "error");
      }
      renderImages();
      updateCode();
    }
  });
  $("lora-add").addEventListener("click", () => {
    addLoraRow("", undefined);
    updateCode();
  });
  $("gallery-clear").addEventListener("click", () => {
    localStorage.removeItem(GALLERY_STORE);
    renderGallery();
  });

  renderImages();
  renderGallery();
  document.body.dataset.ready = "true";
}

main().catch((err) => setStatus("The playground could not start: " + err.message, "error"));
