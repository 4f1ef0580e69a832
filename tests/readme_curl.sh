#!/usr/bin/env bash
# The curl examples of the README, in the order the README shows them. The
# README copies these commands verbatim; tests/integration runs this file
# against a live server, replacing http://127.0.0.1:8080 with its address, and
# checks what they print. Only the "# ---" marker lines are test glue.
set -euo pipefail
export FAL_KEY="${FAL_KEY:-change-me}"

echo "# --- run"
# Generate and wait for the result (fal.run):
curl -s -X POST http://127.0.0.1:8080/fal-ai/flux-2/klein/4b/base \
  -H "Authorization: Key $FAL_KEY" \
  -H 'Content-Type: application/json' \
  -d '{"prompt": "a red fox in the snow", "image_size": "square", "num_inference_steps": 4, "seed": 42}'
echo

echo "# --- submit"
# Queue a request; the answer carries request_id and absolute status/result URLs:
SUBMIT=$(curl -s -X POST http://127.0.0.1:8080/queue/fal-ai/flux-2/klein/4b/base \
  -H "Authorization: Key $FAL_KEY" \
  -d '{"prompt": "a lighthouse at dusk, oil painting", "num_inference_steps": 4}')
echo "$SUBMIT"
REQUEST_ID=$(echo "$SUBMIT" | sed -n 's/.*"request_id":"\([^"]*\)".*/\1/p')

echo "# --- status"
# Poll its status (202 while queued or running, 200 once COMPLETED), with logs:
until curl -s "http://127.0.0.1:8080/queue/fal-ai/flux-2/requests/$REQUEST_ID/status" \
  -H "Authorization: Key $FAL_KEY" | grep -q '"status":"COMPLETED"'; do
  sleep 0.2
done
curl -s "http://127.0.0.1:8080/queue/fal-ai/flux-2/requests/$REQUEST_ID/status?logs=1" \
  -H "Authorization: Key $FAL_KEY"
echo

echo "# --- result"
# Fetch the result:
curl -s "http://127.0.0.1:8080/queue/fal-ai/flux-2/requests/$REQUEST_ID" \
  -H "Authorization: Key $FAL_KEY"
echo

echo "# --- cancel"
# Cancel a request (202 CANCELLATION_REQUESTED; 400 ALREADY_COMPLETED once it finished):
curl -s -X PUT "http://127.0.0.1:8080/queue/fal-ai/flux-2/requests/$REQUEST_ID/cancel" \
  -H "Authorization: Key $FAL_KEY"
echo

echo "# --- stream"
# Stream progress (Server-Sent Events); the last event is the output:
curl -s -N -X POST http://127.0.0.1:8080/fal-ai/flux-2/klein/4b/base/stream \
  -H "Authorization: Key $FAL_KEY" \
  -d '{"prompt": "a bowl of ramen", "image_size": "square", "num_inference_steps": 4}'

echo "# --- upload"
# Upload a file: initiate, PUT the bytes to upload_url, then use file_url:
UPLOAD=$(curl -s -X POST http://127.0.0.1:8080/storage/upload/initiate \
  -H "Authorization: Key $FAL_KEY" \
  -d '{"content_type": "text/plain", "file_name": "hello.txt"}')
echo "$UPLOAD"
UPLOAD_URL=$(echo "$UPLOAD" | sed -n 's/.*"upload_url":"\([^"]*\)".*/\1/p')
FILE_URL=$(echo "$UPLOAD" | sed -n 's/.*"file_url":"\([^"]*\)".*/\1/p')
curl -s -X PUT "$UPLOAD_URL" -H 'Content-Type: text/plain' --data-binary 'Hello, World!'
echo
curl -s "$FILE_URL"
echo

echo "# --- edit"
# Edit an image (…/edit): up to four references in image_urls (http(s) URLs, data: URIs or files uploaded here);
# without image_size the output keeps the first reference's size:
FOX_URL=$(curl -s -X POST http://127.0.0.1:8080/fal-ai/flux-2/klein/4b/base \
  -H "Authorization: Key $FAL_KEY" \
  -d '{"prompt": "a red fox in the snow", "image_size": "square", "num_inference_steps": 4}' \
  | sed -n 's/.*"images":\[{"url":"\([^"]*\)".*/\1/p')
curl -s -X POST http://127.0.0.1:8080/fal-ai/flux-2/klein/4b/base/edit \
  -H "Authorization: Key $FAL_KEY" \
  -d "{\"prompt\": \"the same fox at night\", \"image_urls\": [\"$FOX_URL\"], \"num_inference_steps\": 4}"
echo

echo "# --- lora"
# Apply a LoRA (…/lora, up to three {path, scale}): upload the .safetensors file and name its file_url
# (an http(s) URL, a data: URI or a file in the server's -lora-dir work too):
LORA=$(curl -s -X POST http://127.0.0.1:8080/storage/upload/initiate \
  -H "Authorization: Key $FAL_KEY" \
  -d '{"content_type": "application/octet-stream", "file_name": "style.safetensors"}')
curl -s -X PUT "$(echo "$LORA" | sed -n 's/.*"upload_url":"\([^"]*\)".*/\1/p')" --data-binary @"${LORA_FILE:-style.safetensors}"
curl -s -X POST http://127.0.0.1:8080/fal-ai/flux-2/klein/4b/base/lora \
  -H "Authorization: Key $FAL_KEY" \
  -d "{\"prompt\": \"a red fox in the snow\", \"loras\": [{\"path\": \"$(echo "$LORA" | sed -n 's/.*"file_url":"\([^"]*\)".*/\1/p')\", \"scale\": 0.8}], \"num_inference_steps\": 4}"
echo

echo "# --- health"
curl -s http://127.0.0.1:8080/readyz
echo
curl -s http://127.0.0.1:8080/metrics | grep '^kleinserve_images_generated_total'
