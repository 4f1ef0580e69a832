"""Drives the real PyPI fal-client (1.0.3) against a kleinserve server.

    KLEINSERVE_URL=http://127.0.0.1:8080 KLEINSERVE_KEY=secret python py_client.py

The client is redirected by patching its URL constants, as in docs/fal-protocol.md §2.
Every check raises on failure; the last stdout line is a JSON summary.
"""

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


print(json.dumps({"ok": True, "client": "fal-client==" + getattr(fal_client, "__version__", "1.0.3"),
                  "checks": checks}))
sys.exit(0)
