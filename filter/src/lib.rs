//! Sluice filter: a pure core that inspects LLM API exchanges, and a thin proxy-wasm adapter.
