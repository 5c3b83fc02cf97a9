# The judge service (judge-service/, crate sluice-judge). See judge-service/README.md.
# Data lives outside the clone (../shared/data in CI); override with DATA_DIR=...
DATA_DIR ?= ../shared/data
JUDGE_BIN := $(CARGO_TARGET_DIR)/release/sluice-judge

BUILD_TARGETS += build-judge

.PHONY: build-judge train-judge eval-judge bench-judge run-judge

build-judge:
	cargo build --release -p sluice-judge

# Retrains the shipped model (deterministic: same data, same bytes), then prints the evaluation.
train-judge: build-judge
	$(JUDGE_BIN) train --data $(DATA_DIR) --out judge-service/model/ngram-lr-v1.bin
	cargo build --release -p sluice-judge

# Recall and false-positive rate per source: held-out fifth of the dev data, and the test file.
eval-judge: build-judge
	$(JUDGE_BIN) eval --data $(DATA_DIR)

# Loopback load, bounded (4000 requests or 10 s closed loop, then 500 requests at 50 req/s).
bench-judge: build-judge
	$(JUDGE_BIN) bench --data $(DATA_DIR)

run-judge: build-judge
	$(JUDGE_BIN) serve
