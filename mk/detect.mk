# Detection engine: quality figures over the labelled data and core throughput benchmarks.
# `make eval` prints the tables; `test-detect-floors` (part of `make test`) fails if any figure
# drops below the floors recorded in tests/eval/floors.txt.

# The labelled data lives next to the clone (../shared/data); override with DATA=...
DATA ?= $(CURDIR)/../shared/data
EVAL := $(CARGO_TARGET_DIR)/release/sluice-eval

TEST_TARGETS += test-detect-floors

.PHONY: eval eval-build test-detect-floors bench-core

eval-build:
	cargo build --release -p sluice-eval

eval: eval-build
	$(EVAL) --data $(DATA)

test-detect-floors: eval-build
	$(EVAL) --data $(DATA) --check tests/eval/floors.txt

# Criterion: MB/s of the full detector set on 2, 16 and 128 KB chat texts, one core.
bench-core:
	cargo bench -p sluice-filter --bench detect
