//! Sluice filter: a pure core that inspects LLM API exchanges, and a thin proxy-wasm adapter.
//!
//! Everything but `wasm` is plain Rust that builds and tests natively: `providers` read and
//! write each LLM API's bodies, `detect` finds what matters in their texts, `redact` swaps
//! values for placeholders and back, `policy` and `config` say what to do, and `engine` runs
//! the pipeline for one exchange and tells the adapter what to do at each callback.
//! Modules are crate-private unless a tool outside the crate (eval, benches, the wasm host's
//! tests) needs them, so the dead-code lint sees every unused path.

#![deny(unsafe_code)]

pub(crate) mod access;
pub mod audit;
pub mod budget;
pub mod config;
pub(crate) mod decompress;
pub mod detect;
pub mod engine;
pub mod header_map;
pub mod judge;
pub mod model;
pub(crate) mod policy;
pub(crate) mod providers;
pub(crate) mod redact;
pub(crate) mod stream;
pub(crate) mod usage;

#[cfg(target_arch = "wasm32")]
mod wasm;
