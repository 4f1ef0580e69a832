// Drives the real npm @fal-ai/client (1.10.1) against a kleinserve server.
//
//   KLEINSERVE_URL=http://127.0.0.1:8080 KLEINSERVE_KEY=secret node js_client.mjs
//
// The client is redirected with requestMiddleware as in docs/fal-protocol.md §2.
// Every check throws on failure; the last stdout line is a JSON summary.
import assert from "node:assert/strict";
import { ApiError, ValidationError, createFalClient } from "@fal-ai/client";

const BASE = (process.env.KLEINSERVE_URL || "http://127.0.0.1:8080").replace(/\/$/, "");
const KEY = process.env.KLEINSERVE_KEY || "anything";
const ENDPOINT = "fal-ai/flux-2/klein/4b/base";
// Small, quick inputs; SLOW keeps a job running long enough to cancel it.
const FAST = { num_inference_steps: Number(process.env.KLEINSERVE_FAST_STEPS || 4), image_size: { width: 64, height: 64 } };
const SLOW = { num_inference_steps: 50, image_size: { width: 512, height: 512 } };

const rewrite = (u) =>
  u
    .replace(/^https:\/\/queue\.fal\.run(?=[/?]|$)/, `${BASE}/queue`)
    .replace(/^https:\/\/fal\.run(?=[/?]|$)/, BASE)
    .replace(/^https:\/\/rest\.(alpha\.)?fal\.ai(?=[/?]|$)/, BASE);

const fal = createFalClient({
  credentials: KEY,
  suppressLocalCredentialsWarning: true,
  requestMiddleware: async (req) => ({ ...req, url: rewrite(req.url) }),
});

const checks = [];
async function check(name, fn) {
  const started = Date.now();
  await fn();
  checks.push({ name, ms: Date.now() - started });
  console.log(`ok   ${name} (${Date.now() - started} ms)`);
}

async function fetchImage(url, type = "image/png") {
  assert.ok(url.startsWith(`${BASE}/files/`), `image url ${url}`);
  const res = await fetch(url);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), type);
  const bytes = new Uint8Array(await res.arrayBuffer());
  assert.ok(bytes.length > 0);
  return bytes;
}

function assertOutput(data, prompt) {
  assert.ok(Array.isArray(data.images) && data.images.length === 1, JSON.stringify(data));
  assert.equal(data.prompt, prompt);
  assert.equal(typeof data.seed, "number");
  // The tiny model's safety checker has random weights, so only the shape is checked.
  assert.ok(data.has_nsfw_concepts.length === 1 && typeof data.has_nsfw_concepts[0] === "boolean");
  assert.equal(typeof data.timings.inference, "number");
  const img = data.images[0];
  assert.equal(img.width, 64);
  assert.equal(img.height, 64);
  assert.equal(img.content_type, "image/png");
}

async function waitCompleted(requestId) {
  for (;;) {
    const st = await fal.queue.status(ENDPOINT, { requestId, logs: true });
    if (st.status === "COMPLETED") return st;
    await new Promise((r) => setTimeout(r, 50));
  }
}

await check("subscribe (polling, logs, onQueueUpdate)", async () => {
  const updates = [];
  let enqueued;
  const prompt = "a red fox in the snow";
  const result = await fal.subscribe(ENDPOINT, {
    input: { prompt, seed: 42, ...FAST },
    logs: true,
    pollInterval: 50,
    onEnqueue: (id) => (enqueued = id),
    onQueueUpdate: (u) => updates.push(u),
  });
  assert.equal(result.requestId, enqueued);
  assertOutput(result.data, prompt);
  assert.equal(result.data.seed, 42);
  await fetchImage(result.data.images[0].url);
  const last = updates[updates.length - 1];
  assert.equal(last.status, "COMPLETED");
  const messages = last.logs.map((l) => l.message);
  assert.ok(messages.some((m) => m.startsWith("Step ")), JSON.stringify(messages));
  for (const l of last.logs) {
    assert.equal(l.source, "USER");
    assert.ok(!Number.isNaN(Date.parse(l.timestamp)));
  }
});

await check("subscribe (status stream)", async () => {
  const updates = [];
  const prompt = "a lighthouse at dusk";
  const result = await fal.subscribe(ENDPOINT, {
    input: { prompt, ...FAST },
    logs: true,
    mode: "streaming",
    onQueueUpdate: (u) => updates.push(u),
  });
  assertOutput(result.data, prompt);
  assert.equal(updates[updates.length - 1].status, "COMPLETED");
  // Stream events carry only new lines; the client accumulates them.
  const messages = updates[updates.length - 1].logs.map((l) => l.message);
  assert.equal(new Set(messages).size, messages.length, JSON.stringify(messages));
});

await check("queue submit / status / result", async () => {
  const prompt = "zen garden";
  const { request_id } = await fal.queue.submit(ENDPOINT, { input: { prompt, ...FAST } });
  assert.match(request_id, /^[0-9a-f-]{36}$/);
  const st = await waitCompleted(request_id);
  assert.ok(Array.isArray(st.logs));
  assert.equal(typeof st.metrics.inference_time, "number");
  const result = await fal.queue.result(ENDPOINT, { requestId: request_id });
  assert.equal(result.requestId, request_id);
  assertOutput(result.data, prompt);
});

await check("queue cancel (queued and running)", async () => {
  const running = await fal.queue.submit(ENDPOINT, { input: { prompt: "slow", ...SLOW } });
  const queued = await fal.queue.submit(ENDPOINT, { input: { prompt: "waiting", ...FAST } });
  const st = await fal.queue.status(ENDPOINT, { requestId: queued.request_id });
  assert.equal(st.status, "IN_QUEUE");
  assert.equal(typeof st.queue_position, "number");
  await fal.queue.cancel(ENDPOINT, { requestId: queued.request_id });
  await fal.queue.cancel(ENDPOINT, { requestId: running.request_id });
  for (const id of [queued.request_id, running.request_id]) {
    const done = await waitCompleted(id);
    assert.equal(done.error, "Request cancelled");
    await assert.rejects(fal.queue.result(ENDPOINT, { requestId: id }), (e) => e instanceof ApiError && e.status === 400);
  }
});

await check("stream", async () => {
  const prompt = "日本の庭 🌸";
  const stream = await fal.stream(ENDPOINT, { input: { prompt, ...FAST } });
  const events = [];
  for await (const ev of stream) events.push(ev);
  const done = await stream.done();
  assert.ok(events.length >= 2, `events ${events.length}`);
  assert.ok(events.slice(0, -1).every((e) => e.partial === true));
  assert.deepEqual(done, events[events.length - 1]);
  assertOutput(done, prompt);
  assert.ok(stream.requestId, "stream requestId");
});

await check("run", async () => {
  const prompt = "a bowl of ramen";
  const result = await fal.run(ENDPOINT, { input: { prompt, ...FAST } });
  assertOutput(result.data, prompt);
  assert.ok(result.requestId);
  await fetchImage(result.data.images[0].url);
});

await check("run with sync_mode (data URI)", async () => {
  const result = await fal.run(ENDPOINT, { input: { prompt: "inline", sync_mode: true, ...FAST } });
  assert.ok(result.data.images[0].url.startsWith("data:image/png;base64,"));
});

await check("validation error (422)", async () => {
  await assert.rejects(fal.run(ENDPOINT, { input: { prompt: "x", num_images: 1000 } }), (e) => {
    assert.ok(e instanceof ValidationError, String(e));
    assert.equal(e.status, 422);
    assert.deepEqual(e.fieldErrors[0].loc, ["body", "num_images"]);
    return true;
  });
});

await check("storage.upload", async () => {
  const url = await fal.storage.upload(new Blob(["Hello, World!"], { type: "text/plain" }));
  const res = await fetch(url);
  assert.equal(res.status, 200);
  assert.equal(await res.text(), "Hello, World!");
  assert.equal(res.headers.get("content-type"), "text/plain");
});

await check("storage.upload over 90 MB (multipart)", async () => {
  const size = 91 * 1024 * 1024; // the client switches to multipart above 90 MB
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i += 4096) bytes[i] = (i / 4096) % 251;
  const url = await fal.storage.upload(new Blob([bytes], { type: "application/octet-stream" }));
  const res = await fetch(url);
  assert.equal(res.status, 200);
  const got = new Uint8Array(await res.arrayBuffer());
  assert.equal(got.length, size);
  for (let i = 0; i < size; i += 4096) assert.equal(got[i], (i / 4096) % 251);
});

// An 80x64 RGB PNG: the reference image of the edit checks.
const REFERENCE_PNG = "iVBORw0KGgoAAAANSUhEUgAAAFAAAABACAIAAAACpWdhAAABg0lEQVR42u3PBzMWAAAG4M8mm7I3GVll770SSUZGIpG998geIcmK7JKViKwkyd4cx3Ecx3Ecx3Ecx+nwP9z7/IOHQCAhp6KhZ7rDxsnDLyRyT/K+rIKymqaOvtGjx+aWz+wcnF699vD2CwwJj4qJT0pNz/yQ+/FTSfmXqtr6xubWjt/d//qHRiemZ+cXl1fXN7d39w+PT8//XxGTUVLTMd5m5eDmExQWk5CWkVdS1dDWMzQ2fWJhbfvc0dnV3cs3IDgs8k1cYkrau6yc/MLiss9fa741NLW0d/7p6RscGZ+amVtYWlnb2NrZOzg6Obu4JCKluEXLwMzCzsUrcFdUXOqBnKKKupauwUMTs6dWNvYvXrq4efr4B4VGRMcmJL/NeJ+dV1BUWlFZXff9x8+2X11/eweGxyYJCCOMMMIII4wwwggjjDDCCCOMMMIII4wwwggjjDDCCCOMMMIII4wwwggjjDDCCCOMMMIII4wwwggjjDDCCCOMMMIII4wwwggjfHPD10fmR6W1WnqlAAAAAElFTkSuQmCC";
const EDIT_ENDPOINT = "fal-ai/flux-2/klein/4b/base/edit";

await check("edit with a reference from storage.upload", async () => {
  const bytes = Buffer.from(REFERENCE_PNG, "base64");
  const url = await fal.storage.upload(new Blob([bytes], { type: "image/png" }));
  assert.ok(url.startsWith(`${BASE}/files/`), url);
  const prompt = "make the stripes blue";
  const result = await fal.subscribe(EDIT_ENDPOINT, {
    input: { prompt, image_urls: [url], num_inference_steps: 2 },
    logs: true,
    pollInterval: 50,
  });
  const img = result.data.images[0];
  // No image_size: the output takes the reference's size.
  assert.equal(img.width, 80);
  assert.equal(img.height, 64);
  assert.equal(result.data.prompt, prompt);
  await fetchImage(img.url);
});

await check("edit with a data URI reference", async () => {
  const result = await fal.subscribe(EDIT_ENDPOINT, {
    input: { prompt: "a sunset", image_urls: [`data:image/png;base64,${REFERENCE_PNG}`], ...FAST },
  });
  assertOutput(result.data, "a sunset");
});

await check("edit with an unreadable reference (422 naming image_urls[0])", async () => {
  await assert.rejects(
    fal.run(EDIT_ENDPOINT, { input: { prompt: "x", image_urls: ["data:image/png;base64,bm90IGFuIGltYWdl"], ...FAST } }),
    (e) => {
      assert.ok(e instanceof ValidationError, String(e));
      assert.equal(e.status, 422);
      assert.deepEqual(e.fieldErrors[0].loc, ["body", "image_urls", 0]);
      return true;
    },
  );
});

await check("LoRA with a file from storage.upload", async () => {
  const { readFile } = await import("node:fs/promises");
  const bytes = await readFile(process.env.KLEINSERVE_LORA_FILE);
  const url = await fal.storage.upload(new Blob([bytes], { type: "application/octet-stream" }));
  const input = { prompt: "a fox in a painted style", seed: 11, sync_mode: true, ...FAST };
  const styled = await fal.subscribe("fal-ai/flux-2/klein/4b/base/lora", {
    input: { ...input, loras: [{ path: url, scale: 0.8 }] },
  });
  const plain = await fal.subscribe("fal-ai/flux-2/klein/4b/base/lora", { input });
  assert.equal(styled.data.images[0].width, 64);
  assert.notEqual(styled.data.images[0].url, plain.data.images[0].url, "the LoRA changed nothing");
});

await check("distilled 4B endpoint (4 steps by default, no guidance)", async () => {
  const updates = [];
  const result = await fal.subscribe("fal-ai/flux-2/klein/4b", {
    input: { prompt: "a fox", image_size: { width: 64, height: 64 } },
    logs: true,
    onQueueUpdate: (u) => updates.push(u),
  });
  assertOutput(result.data, "a fox");
  const messages = updates[updates.length - 1].logs.map((l) => l.message);
  assert.ok(messages.includes("Step 4/4"), JSON.stringify(messages));
});

console.log(JSON.stringify({ ok: true, client: "@fal-ai/client@1.10.1", checks }));
