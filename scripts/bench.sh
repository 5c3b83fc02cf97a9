#!/usr/bin/env bash
# `make bench`: whole-stack wrk benchmark (see scripts/bench.py).
set -euo pipefail
cd "$(dirname "$0")/.."
# The judge is built by `make build`; built separately, crates keep their own feature sets
# (building both in one command would unify them and rebuild everything).
cargo build --release -p sluice-fake-provider
cargo build --release --target wasm32-wasip1 -p sluice-floor-filter
exec python3 scripts/bench.py
