//! Sluice judge: a gRPC service that classifies LLM prompts, answers and documents for
//! prompt injection and jailbreaks, with an embedded learned model, an LLM-as-judge backend
//! and an ensemble of the two. `main.rs` is the thin CLI over this library.

pub mod backend;
pub mod bench;
pub mod cache;
pub mod data;
pub mod dataset;
pub mod encoder;
pub mod eval;
pub mod features;
pub mod metrics;
pub mod model;
pub mod server;
pub mod train;

/// The contract, `judge-proto/proto/sluice/judge/v1/judge.proto`: messages and services.
pub mod proto {
    pub use sluice_judge_proto::grpc::*;
    pub use sluice_judge_proto::v1::*;
}
