#!/usr/bin/env bash
# `make bench`: whole-stack wrk benchmark (see scripts/bench.py).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p sluice-fake-provider -p sluice-judge
exec python3 scripts/bench.py
