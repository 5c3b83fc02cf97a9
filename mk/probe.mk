# Node probe (issue 6): eBPF programs + loader. The toolchain (nightly rust-src, bpf-linker)
# comes from scripts/setup.d/probe.sh; node-probe's build.rs builds the kernel object.
BUILD_TARGETS += build-probe
TEST_TARGETS += lint-probe-ebpf test-probe

# aya-build passes these to the nested nightly build; clippy needs the same cfg.
PROBE_EBPF_RUSTFLAGS := --cfg=bpf_target_arch="x86_64"

.PHONY: build-probe lint-probe-ebpf test-probe bench-probe

build-probe:
	cargo build -p sluice-node-probe

# The kernel side only compiles for the BPF target, so the workspace-wide clippy skips it.
lint-probe-ebpf:
	CARGO_ENCODED_RUSTFLAGS='$(PROBE_EBPF_RUSTFLAGS)' rustup run nightly cargo clippy \
	    -p node-probe-ebpf --release --target bpfel-unknown-none -Z build-std=core -- -D warnings

# Real eBPF in this kernel, network namespaces, cgroups and nft: needs root (CI is root).
test-probe: build-probe
	cargo test -p sluice-node-probe --test mesh_bypass -- --ignored --test-threads=1

# connect() latency and rate with the probe attached vs detached, in the same run.
bench-probe:
	cargo bench -p sluice-node-probe --bench connect
