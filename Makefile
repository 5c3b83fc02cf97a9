# Sluice: `make demo` runs the stack, `make test` runs every check. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Builds may live outside the clone (CI caches them there).
export CARGO_TARGET_DIR ?= $(CURDIR)/target
PYTHON ?= python3
WASM_TARGET := wasm32-wasip1
WASM_BUILT := $(CARGO_TARGET_DIR)/$(WASM_TARGET)/release/sluice_filter.wasm
# Envoy configs name the module by this path, relative to the repository root.
WASM := build/sluice_filter.wasm

# Fragments in mk/ add their own steps to these lists.
SETUP_TARGETS :=
BUILD_TARGETS := build-filter build-fake-provider
# `test-unit` runs every crate's tests, the wasm host's too (they drive build/sluice_filter.wasm).
TEST_TARGETS := lint test-unit test-envoy-validate test-e2e

include $(wildcard mk/*.mk)

.PHONY: help setup build build-filter build-fake-provider demo test lint test-unit \
        test-wasm test-envoy-validate test-e2e bench clean

help:
	@echo "make demo   - build and run Envoy + filter + fake provider in the foreground"
	@echo "make test   - install what is missing, then run every check"
	@echo "make bench  - whole-stack wrk benchmark (loopback)"
	@echo "make eval   - detection quality per source over ../shared/data"
	@echo "make oci    - pack the filter as an OCI Wasm image and write its digest into istio/wasmplugin.yaml"

setup:
	@scripts/setup.sh
	@$(if $(SETUP_TARGETS),$(MAKE) --no-print-directory $(SETUP_TARGETS))

build: $(BUILD_TARGETS)

build-filter:
	cargo build --release --target $(WASM_TARGET) -p sluice-filter
	@mkdir -p build && cp $(WASM_BUILT) $(WASM)

build-fake-provider:
	cargo build -p sluice-fake-provider

demo: setup build
	@scripts/demo.sh

test: setup
	@$(MAKE) --no-print-directory build $(TEST_TARGETS)

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --release --target $(WASM_TARGET) -p sluice-filter -p sluice-floor-filter -- -D warnings

test-unit:
	cargo test

test-wasm: build-filter
	SLUICE_WASM=$(CURDIR)/$(WASM) cargo test -p sluice-wasm-host

test-envoy-validate: build-filter
	scripts/validate-envoy-configs.sh

test-e2e: build-filter build-fake-provider
	$(PYTHON) -m pytest -q tests/e2e

bench: setup build
	scripts/bench.sh

clean:
	cargo clean
	rm -rf build
