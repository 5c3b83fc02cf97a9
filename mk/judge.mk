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
	$(JUDGE_BIN) train --data $(DATA_DIR) --out judge-service/model/segment-lr-v2.bin
	cargo build --release -p sluice-judge

# Recall and false-positive rate per source: held-out fifth of the dev data, and the test file.
eval-judge: build-judge
	$(JUDGE_BIN) eval --data $(DATA_DIR)

# Loopback load per backend, bounded (closed loop: 4000 requests or 10 s; then 500 requests at
# 50 req/s). The llm and ensemble runs use the fake provider as the LLM, so they measure the
# judge's own overhead plus loopback HTTP, not a real model's latency.
JUDGE_BENCH_REPLY := {"categories": {"prompt_injection": 0.9, "jailbreak": 0.0, "data_exfiltration": 0.0, "harmful_request": 0.0, "pii_disclosure": 0.0}, "reason": "bench"}
bench-judge: build-judge build-fake-provider
	$(JUDGE_BIN) bench --data $(DATA_DIR) --backend embedded
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
