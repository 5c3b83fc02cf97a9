#!/usr/bin/env bash
# eBPF toolchain for node-probe: aya-build compiles node-probe-ebpf with the nightly's
# `-Z build-std=core` (needs rust-src) and links it with bpf-linker, whose version must
# match the nightly's LLVM (0.10.0 works with nightly 1.97 / LLVM 22). Idempotent.
set -euo pipefail

BPF_LINKER_VERSION=0.10.0
say() { printf 'setup(probe): %s\n' "$*"; }

if ! rustup toolchain list | grep -q '^nightly'; then
    say "installing the nightly Rust toolchain"
    rustup toolchain install nightly --profile minimal
fi
if ! rustup component list --installed --toolchain nightly | grep -q '^rust-src'; then
    say "adding rust-src to the nightly toolchain"
    rustup component add rust-src --toolchain nightly
fi

# An older bpf-linker earlier on PATH would win and fail with "Invalid record": check the one
# cargo installs and that PATH resolves to.
have=$(bpf-linker --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$BPF_LINKER_VERSION" ]; then
    say "installing bpf-linker $BPF_LINKER_VERSION (about a minute)"
    cargo install "bpf-linker@$BPF_LINKER_VERSION" --locked --force --quiet
fi

# The probe's tests build network namespaces and Istio-like capture rules, run stand-in
# processes with the system Python (readable by uid 1337, unlike a per-user install) and make
# a throwaway TLS certificate.
missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v nft >/dev/null || missing+=(nftables)
command -v setpriv >/dev/null || missing+=(util-linux)
command -v openssl >/dev/null || missing+=(openssl)
[ -x /usr/bin/python3 ] || missing+=(python3)
if ((${#missing[@]})); then
    say "installing ${missing[*]} with apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
