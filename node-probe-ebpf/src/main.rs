//! Kernel side of the node probe (see `node-probe` for the loader).
//!
//! `connect4`/`connect6` see every TCP `connect()` in the watched cgroup tree before NAT and
//! decide what they can there; `egress` sees the first packet after NAT (Istio's iptables
//! capture) and decides the rest, joined by socket cookie.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod probe;

/// Host builds have nothing to run: the real object is built for `bpfel-unknown-none`.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
