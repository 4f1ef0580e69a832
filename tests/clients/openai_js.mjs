// Drives the real npm openai client against kleinserve's OpenAI Images API.
//
//   KLEINSERVE_URL=http://127.0.0.1:8080 KLEINSERVE_KEY=secret node openai_js.mjs
//
// Every check throws on failure; a check the server cannot serve yet is
// reported under "skipped" with the reason. The last stdout line is a JSON
// summary.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import zlib from "node:zlib";
import OpenAI, { toFile } from "openai";

const BASE = (process.env.KLEINSERVE_URL || "http://127.0.0.1:8080").replace(/\/$/, "");
const KEY = process.env.KLEINSERVE_KEY || "unused";
const MODEL = "fal-ai/flux-2/klein/4b/base";
const EDIT_ENDPOINT = `${MODEL}/edit`;
const FAST = { num_inference_steps: 4 };

const client = new OpenAI({ baseURL: `${BASE}/v1`, apiKey: KEY, maxRetries: 0, timeout: 300_000 });
const checks = [];
const skipped = [];

async function check(name, fn) {
  const started = Date.now();
  const reason = await fn();
  if (reason) {
    skipped.push({ name, reason });
    console.log(`skip ${name}: ${reason}`);
  } else {
    checks.push({ name, ms: Date.now() - started });
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  }
}

function pngSize(bytes) {
  const b = Buffer.from(bytes);
  assert.equal(b.subarray(0, 8).toString("latin1"), "\x89PNG\r\n\x1a\n");
  return [b.readUInt32BE(16), b.readUInt32BE(20)];
}

function pngBytes(width, height) {
  const chunk = (kind, body) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(body.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(Buffer.concat([Buffer.from(kind), body])));
    return Buffer.concat([len, Buffer.from(kind), body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const rows = [];
  for (let y = 0; y < height; y++) {
    const row = Buffer.alloc(1 + 3 * width);
    for (let x = 0; x < width; x++) row.set([(x * 7) % 256, (y * 5) % 256, 128], 1 + 3 * x);
    rows.push(row);
  }
  return Buffer.concat([Buffer.from("\x89PNG\r\n\x1a\n", "latin1"), chunk("IHDR", ihdr),
    chunk("IDAT", zlib.deflateSync(Buffer.concat(rows))), chunk("IEND", Buffer.alloc(0))]);
}

await check("generate url", async () => {
  // Extra body fields go in the params object: the client sends it as JSON.
  const res = await client.images.generate({ model: MODEL, prompt: "a red fox in the snow", size: "96x64",
    response_format: "url", seed: 11, ...FAST });
  assert.equal(res.data.length, 1);
  const url = res.data[0].url;
  assert.ok(url.startsWith(`${BASE}/files/`), url);
  const img = await fetch(url);
  assert.equal(img.status, 200);
  assert.deepEqual(pngSize(await img.arrayBuffer()), [96, 64]);
  assert.equal(res.size, "96x64");
  assert.equal(res.output_format, "png");
  assert.equal(res.usage.total_tokens, 0);
  assert.equal(res.seed, 11);
  assert.ok(res._request_id, "x-request-id missing");
});

await check("generate b64_json, n=2, extra fields", async () => {
  const params = { prompt: "a lighthouse at dusk", n: 2, size: "64x80", response_format: "b64_json", seed: 5,
    guidance_scale: 3.5, negative_prompt: "blur", acceleration: "none", enable_cns: true, cns_s_churn: 0.3, ...FAST };
  const res = await client.images.generate(params);
  assert.equal(res.data.length, 2);
  for (const d of res.data) {
    assert.equal(d.url, undefined);
    assert.deepEqual(pngSize(Buffer.from(d.b64_json, "base64")), [64, 80]);
  }
  const again = await client.images.generate(params);
  assert.deepEqual(again.data.map((d) => d.b64_json), res.data.map((d) => d.b64_json));
});

await check("stream with partial images", async () => {
  // 12 steps: the server previews steps 4 and 8, the two partials asked for.
  const stream = await client.images.generate({ prompt: "a bowl of ramen", size: "64x64", stream: true,
    partial_images: 2, num_inference_steps: 12 });
  const events = [];
  for await (const ev of stream) events.push(ev);
  assert.deepEqual(events.map((e) => e.type),
    ["image_generation.partial_image", "image_generation.partial_image", "image_generation.completed"]);
  assert.deepEqual(events.slice(0, 2).map((e) => e.partial_image_index), [0, 1]);
  const done = events[2];
  assert.deepEqual(pngSize(Buffer.from(done.b64_json, "base64")), [64, 64]);
  assert.equal(done.size, "64x64");
  assert.equal(done.usage.total_tokens, 0);
});

await check("edit with two images", async () => {
  const image = [await toFile(pngBytes(64, 64), "a.png", { type: "image/png" }),
    await toFile(pngBytes(64, 64), "b.png", { type: "image/png" })];
  try {
    const res = await client.images.edit({ image, prompt: "make it blue", size: "64x64", response_format: "b64_json",
      seed: 3, ...FAST });
    assert.deepEqual(pngSize(Buffer.from(res.data[0].b64_json, "base64")), [64, 64]);
  } catch (e) {
    if (!(e instanceof OpenAI.NotFoundError)) throw e;
    assert.ok(e.message.includes(EDIT_ENDPOINT), e.message);
    return `${EDIT_ENDPOINT} is not served by this server yet (404)`;
  }
});

await check("errors", async () => {
  await assert.rejects(client.images.generate({ prompt: "x", n: 9 }), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError, String(e));
    assert.equal(e.status, 400);
    assert.equal(e.param, "n");
    assert.equal(e.code, "invalid_value");
    return true;
  });
  await assert.rejects(client.images.generate({ prompt: "x", model: "dall-e-3" }), (e) => {
    assert.ok(e instanceof OpenAI.NotFoundError, String(e));
    assert.equal(e.code, "model_not_found");
    return true;
  });
  if (process.env.KLEINSERVE_KEY) {
    const bad = new OpenAI({ baseURL: `${BASE}/v1`, apiKey: "wrong-key", maxRetries: 0 });
    await assert.rejects(bad.images.generate({ prompt: "x" }), (e) => {
      assert.ok(e instanceof OpenAI.AuthenticationError, String(e));
      assert.equal(e.code, "invalid_api_key");
      return true;
    });
  }
});

await check("models", async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.deepEqual(ids, [MODEL]);
});

const { version } = JSON.parse(readFileSync(new URL("./node_modules/openai/package.json", import.meta.url)));
console.log(JSON.stringify({ ok: true, client: "openai@" + version, checks, skipped }));
