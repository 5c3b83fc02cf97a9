# Detection rules for Elastic Security (rules/*.toml, ES|QL). `make rules` checks them and writes
# build/sluice-rules.ndjson for Kibana's rule import; `test-rules` (part of `make test`) runs every
# query over audit events from the real Envoy + filter and the probe's own ECS code.
# The parser comes from scripts/setup.d/rules.sh.

RULES_NDJSON := build/sluice-rules.ndjson
PROBE_SAMPLES := $(CARGO_TARGET_DIR)/debug/examples/ecs_samples

TEST_TARGETS += test-rules

.PHONY: rules probe-samples test-rules

rules:
	$(PYTHON) rules/export.py --out $(RULES_NDJSON)

# The probe's ECS events, built by its own decoding and formatting code.
probe-samples:
	cargo build -p sluice-node-probe --example ecs_samples

test-rules: rules build-filter build-fake-provider probe-samples
	SLUICE_PROBE_SAMPLES=$(PROBE_SAMPLES) $(PYTHON) -m pytest -q rules/test
