//! Builds the kernel programs (`node-probe-ebpf`) for `bpfel-unknown-none` with the nightly
//! toolchain and bpf-linker (installed by scripts/setup.d/probe.sh); the loader embeds the object.
fn main() {
    let ebpf_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../node-probe-ebpf");
    let package = aya_build::Package {
        name: "node-probe-ebpf",
        root_dir: ebpf_dir,
        ..Default::default()
    };
    if let Err(e) = aya_build::build_ebpf([package], aya_build::Toolchain::Nightly) {
        panic!(
            "building node-probe-ebpf failed: {e:#}\n\
             (it needs `rustup component add rust-src --toolchain nightly` and \
             `cargo install bpf-linker@0.10.0 --locked`: run scripts/setup.d/probe.sh)"
        );
    }
}
