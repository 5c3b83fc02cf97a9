//! Sluice filter: a pure core that inspects LLM API exchanges, and a thin proxy-wasm adapter.
//!
//! Everything but `wasm` is plain Rust that builds and tests natively: `providers` read and
//! write each LLM API's bodies, `detect` finds what matters in their texts, `redact` swaps
//! values for placeholders and back, `policy` and `config` say what to do, and `engine` runs
//! the pipeline for one exchange.

pub mod access;
pub mod audit;
pub mod budget;
pub mod config;
pub mod detect;
pub mod engine;
pub mod header_map;
pub mod judge;
pub mod model;
pub mod policy;
pub mod providers;
pub mod redact;
pub mod stream;
pub mod usage;

#[cfg(target_arch = "wasm32")]
mod wasm;
