//! Streamed answers: SSE re-framing, and per-provider reading of the text deltas they carry.
pub mod answer;
pub mod sse;
