//! Kernel side of the node probe (see `node-probe` for the loader).
//!
//! `connect4`/`connect6` see every TCP `connect()` in the watched cgroup tree before NAT and
//! decide what they can there; `egress` sees the first packet after NAT (Istio's iptables
//! capture) and decides the rest, joined by socket cookie. `resolver` learns provider
//! addresses from libc's `getaddrinfo` before the application connects; `tls` (optional) takes
//! the masked request line applications write into OpenSSL.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// Map keys and values are passed by reference on purpose: passed by value, the BPF backend
// copied them through registers the verifier then refused (`R2 !read_ok` in connect4).
#![allow(clippy::needless_borrows_for_generic_args)]

#[cfg(target_arch = "bpf")]
mod probe;
#[cfg(target_arch = "bpf")]
mod resolver;
#[cfg(target_arch = "bpf")]
mod tls;

/// Host builds have nothing to run: the real object is built for `bpfel-unknown-none`.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
