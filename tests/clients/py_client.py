"""Drives the real PyPI fal-client (1.0.3) against a kleinserve server.

    KLEINSERVE_URL=http://127.0.0.1:8080 KLEINSERVE_KEY=secret python py_client.py

The client is redirected by patching its URL constants, as in docs/fal-protocol.md §2.
Every check raises on failure; the last stdout line is a JSON summary.
"""

import base64
import json
import os
import sys
import time
import urllib.request

BASE = os.environ.get("KLEINSERVE_URL", "http://127.0.0.1:8080").rstrip("/")
os.environ["FAL_KEY"] = os.environ.get("KLEINSERVE_KEY") or "anything"  # Python requires credentials

import fal_client  # noqa: E402
import fal_client.client as fcc  # noqa: E402

fcc.RUN_URL_FORMAT = BASE + "/"
fcc.QUEUE_URL_FORMAT = BASE + "/queue/"
# Uploads: the storage API (REST_URL) and the CDN the client uploads to.
fcc.REST_URL = BASE
fcc.CDN_URL = BASE

ENDPOINT = "fal-ai/flux-2/klein/4b/base"
FAST = {"num_inference_steps": int(os.environ.get("KLEINSERVE_FAST_STEPS", "4")),
        "image_size": {"width": 64, "height": 64}}

checks = []


def check(fn):
    started = time.monotonic()
    fn()
    ms = int((time.monotonic() - started) * 1000)
    checks.append({"name": fn.__name__, "ms": ms})
    print(f"ok   {fn.__name__} ({ms} ms)", flush=True)


def assert_output(data, prompt):
    assert isinstance(data["images"], list) and len(data["images"]) == 1, data
    assert data["prompt"] == prompt, data["prompt"]
    assert isinstance(data["seed"], int)
    # The tiny model's safety checker has random weights: check the shape only.
    assert len(data["has_nsfw_concepts"]) == 1 and isinstance(data["has_nsfw_concepts"][0], bool)
    img = data["images"][0]
    assert (img["width"], img["height"], img["content_type"]) == (64, 64, "image/png"), img
    assert img["url"].startswith(BASE + "/files/"), img["url"]
    with urllib.request.urlopen(img["url"]) as res:
        assert res.status == 200
        assert res.headers["Content-Type"] == "image/png"
        assert res.read(8) == b"\x89PNG\r\n\x1a\n"


@check
def submit_status_result():
    prompt = "a red fox in the snow"
    handle = fal_client.submit(ENDPOINT, arguments={"prompt": prompt, "seed": 7, **FAST})
    assert len(handle.request_id) == 36
    seen = set()
    while True:
        status = handle.status(with_logs=True)
        seen.add(type(status).__name__)
        if isinstance(status, fal_client.Completed):
            break
        time.sleep(0.05)
    assert status.logs is not None and any(l["message"].startswith("Step ") for l in status.logs), status.logs
    assert status.metrics.get("inference_time") is not None
    data = handle.get()
    assert_output(data, prompt)
    assert data["seed"] == 7
    # The module-level helpers rebuild the URLs from QUEUE_URL_FORMAT.
    again = fal_client.result(ENDPOINT, handle.request_id)
    assert again == data


@check
def subscribe_with_logs():
    updates = []
    prompt = "zen garden"
    data = fal_client.subscribe(ENDPOINT, arguments={"prompt": prompt, **FAST}, with_logs=True,
                                on_queue_update=updates.append)
    assert_output(data, prompt)
    assert updates and all(type(u).__name__ in ("Queued", "InProgress", "Completed") for u in updates)


@check
def cancel_queued():
    slow = fal_client.submit(ENDPOINT, arguments={"prompt": "slow", "num_inference_steps": 50,
                                                  "image_size": {"width": 512, "height": 512}})
    queued = fal_client.submit(ENDPOINT, arguments={"prompt": "waiting", **FAST})
    status = queued.status()
    assert isinstance(status, fal_client.Queued), status
    queued.cancel()
    slow.cancel()
    for handle in (queued, slow):
        while not isinstance(handle.status(), fal_client.Completed):
            time.sleep(0.05)
        try:
            handle.get()
        except fal_client.client.FalClientHTTPError as e:
            assert e.status_code == 400, e
        else:
            raise AssertionError("result of a cancelled request succeeded")


@check
def run():
    prompt = "a bowl of ramen"
    assert_output(fal_client.run(ENDPOINT, arguments={"prompt": prompt, **FAST}), prompt)


@check
def stream():
    prompt = "日本の庭 🌸"
    events = list(fal_client.stream(ENDPOINT, arguments={"prompt": prompt, **FAST}))
    assert len(events) >= 2, events
    assert all(e.get("partial") is True for e in events[:-1])
    assert_output(events[-1], prompt)


@check
def validation_error():
    try:
        fal_client.run(ENDPOINT, arguments={"prompt": "x", "num_images": 1000})
    except fal_client.client.FalClientHTTPError as e:
        assert e.status_code == 422, e
    else:
        raise AssertionError("num_images=1000 was accepted")


# An 80x64 RGB PNG: the reference image of the edit checks.
REFERENCE_PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAFAAAABACAIAAAACpWdhAAABg0lEQVR42u3PBzMWAAAG4M8mm7I3GVll770SSUZGIpG998geIcmK7JKViKwkyd4cx3Ecx3Ecx3Ecx+nwP9z7/IOHQCAhp6KhZ7rDxsnDLyRyT/K+rIKymqaOvtGjx+aWz+wcnF699vD2CwwJj4qJT0pNz/yQ+/FTSfmXqtr6xubWjt/d//qHRiemZ+cXl1fXN7d39w+PT8//XxGTUVLTMd5m5eDmExQWk5CWkVdS1dDWMzQ2fWJhbfvc0dnV3cs3IDgs8k1cYkrau6yc/MLiss9fa741NLW0d/7p6RscGZ+amVtYWlnb2NrZOzg6Obu4JCKluEXLwMzCzsUrcFdUXOqBnKKKupauwUMTs6dWNvYvXrq4efr4B4VGRMcmJL/NeJ+dV1BUWlFZXff9x8+2X11/eweGxyYJCCOMMMIII4wwwggjjDDCCCOMMMIII4wwwggjjDDCCCOMMMIII4wwwggjjDDCCCOMMMIII4wwwggjjDDCCCOMMMIII4wwwggjfHPD10fmR6W1WnqlAAAAAElFTkSuQmCC")
EDIT_ENDPOINT = "fal-ai/flux-2/klein/4b/base/edit"


@check
def edit_uploaded_reference():
    url = fal_client.upload(REFERENCE_PNG, "image/png")
    assert url.startswith(BASE + "/files/"), url
    prompt = "make the stripes blue"
    data = fal_client.subscribe(EDIT_ENDPOINT, arguments={"prompt": prompt, "image_urls": [url],
                                                          "num_inference_steps": 2})
    img = data["images"][0]
    # No image_size: the output takes the reference's size.
    assert (img["width"], img["height"]) == (80, 64), img
    assert data["prompt"] == prompt


@check
def edit_data_uri_reference():
    uri = "data:image/png;base64," + base64.b64encode(REFERENCE_PNG).decode()
    assert_output(fal_client.subscribe(EDIT_ENDPOINT, arguments={"prompt": "a sunset", "image_urls": [uri], **FAST}),
                  "a sunset")


@check
def edit_unreadable_reference():
    try:
        fal_client.run(EDIT_ENDPOINT, arguments={"prompt": "x", "image_urls": ["data:image/png;base64,bm90IGFuIGltYWdl"],
                                                 **FAST})
    except fal_client.client.FalClientHTTPError as e:
        assert e.status_code == 422, e
        assert '"image_urls", 0' in e.response.text or '"image_urls",0' in e.response.text, e.response.text
    else:
        raise AssertionError("an unreadable reference was accepted")


@check
def lora_uploaded_file():
    with open(os.environ["KLEINSERVE_LORA_FILE"], "rb") as f:
        url = fal_client.upload(f.read(), "application/octet-stream")
    args = {"prompt": "a fox in a painted style", "seed": 11, "sync_mode": True, **FAST}
    styled = fal_client.subscribe("fal-ai/flux-2/klein/4b/base/lora", arguments={**args, "loras": [{"path": url, "scale": 0.8}]})
    plain = fal_client.subscribe("fal-ai/flux-2/klein/4b/base/lora", arguments=args)
    assert styled["images"][0]["width"] == 64
    assert styled["images"][0]["url"] != plain["images"][0]["url"], "the LoRA changed nothing"


@check
def distilled_endpoint():
    handle = fal_client.submit("fal-ai/flux-2/klein/4b", arguments={"prompt": "a fox",
                                                                   "image_size": {"width": 64, "height": 64}})
    data = handle.get()
    assert_output(data, "a fox")
    logs = [l["message"] for l in handle.status(with_logs=True).logs]
    assert "Step 4/4" in logs, logs


print(json.dumps({"ok": True, "client": "fal-client==" + getattr(fal_client, "__version__", "1.0.3"),
                  "checks": checks}))
sys.exit(0)
