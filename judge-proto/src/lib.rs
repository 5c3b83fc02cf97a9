//! The contract between the filter and the judge, `proto/sluice/judge/v1/judge.proto`, as Rust:
//! one crate both sides build from, so they cannot drift. The code in `generated/` is produced by
//! prost and tonic and checked in (no protoc at build time, none on the wasm side); the crate's
//! test regenerates it and fails when it no longer matches the .proto.

/// The messages (`ClassifyRequest`, `ClassifyResponse`, …) of package `sluice.judge.v1`.
pub mod v1 {
    include!("generated/sluice.judge.v1.rs");
}

/// The tonic client and server of service `sluice.judge.v1.Judge`, over [`v1`]'s messages.
#[cfg(feature = "grpc")]
pub mod grpc {
    include!("generated/sluice.judge.v1.grpc.rs");
}
