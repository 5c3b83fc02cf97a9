//! Sluice filter: a pure core that inspects LLM API exchanges, and a thin proxy-wasm adapter.

pub mod detect;
pub mod model;
pub mod redact;
