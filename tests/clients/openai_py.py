"""Drives the real PyPI openai client against kleinserve's OpenAI Images API.

    KLEINSERVE_URL=http://127.0.0.1:8080 KLEINSERVE_KEY=secret python openai_py.py

Every check raises on failure; a check the server cannot serve yet is
reported under "skipped" with the reason. The last stdout line is a JSON
summary.
"""

import base64
import io
import json
import os
import struct
import sys
import time
import urllib.request

import openai
from openai import OpenAI

BASE = os.environ.get("KLEINSERVE_URL", "http://127.0.0.1:8080").rstrip("/")
KEY = os.environ.get("KLEINSERVE_KEY") or "unused"
MODEL = "fal-ai/flux-2/klein/4b/base"
EDIT_ENDPOINT = MODEL + "/edit"
FAST = {"num_inference_steps": 4}

client = OpenAI(base_url=BASE + "/v1", api_key=KEY, max_retries=0, timeout=300)
checks, skipped = [], []


def check(fn):
    started = time.monotonic()
    reason = fn()
    ms = int((time.monotonic() - started) * 1000)
    if reason:
        skipped.append({"name": fn.__name__, "reason": reason})
        print(f"skip {fn.__name__}: {reason}", flush=True)
    else:
        checks.append({"name": fn.__name__, "ms": ms})
        print(f"ok   {fn.__name__} ({ms} ms)", flush=True)


def png_size(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:8]
    return struct.unpack(">II", data[16:24])


def png_bytes(width, height):
    """Makes a valid RGB PNG (the client uploads it as an edit reference)."""
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    raw = b"".join(b"\x00" + bytes(v for x in range(width) for v in ((x * 7) % 256, (y * 5) % 256, 128))
                   for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@check
def generate_url():
    res = client.images.generate(model=MODEL, prompt="a red fox in the snow", size="96x64",
                                 response_format="url", extra_body={"seed": 11, **FAST})
    assert len(res.data) == 1 and res.data[0].b64_json is None, res
    url = res.data[0].url
    assert url.startswith(BASE + "/files/"), url
    with urllib.request.urlopen(url) as r:
        assert png_size(r.read()) == (96, 64)
    assert res.size == "96x64" and res.output_format == "png" and res.background == "opaque", res
    assert res.created > 0 and res.usage is not None and res.usage.total_tokens == 0, res
    # The server's extra field: the seed, to reproduce the image.
    assert res.model_extra["seed"] == 11, res.model_extra
    assert res._request_id, "x-request-id missing"


@check
def generate_b64_json_n2_extra_body():
    res = client.images.generate(
        prompt="a lighthouse at dusk", n=2, size="64x80", response_format="b64_json",
        extra_body={"seed": 5, "guidance_scale": 3.5, "negative_prompt": "blur", "acceleration": "none",
                    "enable_cns": True, "cns_s_churn": 0.3, **FAST})
    assert len(res.data) == 2, res
    for img in res.data:
        assert img.url is None
        assert png_size(base64.b64decode(img.b64_json)) == (64, 80)
    assert res.model_extra["seed"] == 5
    # The same seed gives the same images.
    again = client.images.generate(
        prompt="a lighthouse at dusk", n=2, size="64x80", response_format="b64_json",
        extra_body={"seed": 5, "guidance_scale": 3.5, "negative_prompt": "blur", "acceleration": "none",
                    "enable_cns": True, "cns_s_churn": 0.3, **FAST})
    assert [d.b64_json for d in again.data] == [d.b64_json for d in res.data]


@check
def stream_partial_images():
    # 12 steps: the server previews steps 4 and 8, the two partials asked for.
    stream = client.images.generate(prompt="a bowl of ramen", size="64x64", stream=True, partial_images=2,
                                    extra_body={"num_inference_steps": 12})
    events = list(stream)
    kinds = [e.type for e in events]
    assert kinds == ["image_generation.partial_image"] * 2 + ["image_generation.completed"], kinds
    assert [e.partial_image_index for e in events[:2]] == [0, 1]
    for e in events[:2]:
        assert base64.b64decode(e.b64_json)[:3] == b"\xff\xd8\xff"  # JPEG previews
    done = events[-1]
    assert png_size(base64.b64decode(done.b64_json)) == (64, 64)
    assert done.size == "64x64" and done.output_format == "png" and done.usage.total_tokens == 0, done


@check
def edit_two_images():
    images = [("a.png", io.BytesIO(png_bytes(64, 64)), "image/png"), ("b.png", io.BytesIO(png_bytes(64, 64)), "image/png")]
    try:
        res = client.images.edit(image=images, prompt="make it blue", size="64x64", response_format="b64_json",
                                 extra_body={"seed": 3, **FAST})
    except openai.NotFoundError as e:
        assert EDIT_ENDPOINT in e.message, e.message
        return f"{EDIT_ENDPOINT} is not served by this server yet (404)"
    assert len(res.data) == 1 and png_size(base64.b64decode(res.data[0].b64_json)) == (64, 64), res


@check
def errors():
    try:
        client.images.generate(prompt="x", n=9)
    except openai.BadRequestError as e:
        assert e.status_code == 400 and e.param == "n" and e.code == "invalid_value", (e.status_code, e.body)
        assert "Invalid 'n'" in e.message, e.message
    else:
        raise AssertionError("n=9 was accepted")
    try:
        client.images.generate(prompt="x", size="100x64")
    except openai.BadRequestError as e:
        assert e.param == "size", e.body
    else:
        raise AssertionError("size 100x64 was accepted")
    try:
        client.images.generate(prompt="x", model="dall-e-3")
    except openai.NotFoundError as e:
        assert e.code == "model_not_found", e.body
    else:
        raise AssertionError("model dall-e-3 was accepted")
    if os.environ.get("KLEINSERVE_KEY"):
        bad = OpenAI(base_url=BASE + "/v1", api_key="wrong-key", max_retries=0)
        try:
            bad.images.generate(prompt="x")
        except openai.AuthenticationError as e:
            assert e.status_code == 401 and e.code == "invalid_api_key", e.body
        else:
            raise AssertionError("a wrong key was accepted")


@check
def models():
    ids = [m.id for m in client.models.list()]
    assert ids == [MODEL], ids
    assert client.models.retrieve(MODEL).owned_by == "black-forest-labs"


print(json.dumps({"ok": True, "client": "openai==" + openai.__version__, "checks": checks, "skipped": skipped}))
sys.exit(0)
