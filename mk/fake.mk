# Fake LLM provider (tests/fake-provider): convenience targets. `make build` and
# `make test-e2e` already build it and run its tests; these are for working on it alone.
.PHONY: test-fake run-fake

FAKE_PROVIDER_BIN := $(CARGO_TARGET_DIR)/debug/sluice-fake-provider

test-fake: build-fake-provider
	cargo test -p sluice-fake-provider
	SLUICE_FAKE_PROVIDER=$(FAKE_PROVIDER_BIN) $(PYTHON) -m pytest -q tests/e2e/test_fake_provider.py

run-fake: build-fake-provider
	$(FAKE_PROVIDER_BIN) --listen $${FAKE_PROVIDER_LISTEN:-127.0.0.1:18080}

# Benchmarks should use an optimised fake provider: the debug build is several times
# slower and would become the bottleneck of a whole-stack wrk run.
.PHONY: build-fake-provider-release
build-fake-provider-release:
	cargo build --release -p sluice-fake-provider
