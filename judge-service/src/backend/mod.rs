//! Classification backends behind the gRPC service. An enum rather than a trait object:
//! the set is closed and the calls are async.

pub mod embedded;
pub mod ensemble;
pub mod llm;

use std::time::Instant;

use crate::proto::{Category, TextKind, Verdict};

/// A backend's answer, before the service adds latency and cache flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub labels: Vec<(Category, f32)>,
    pub verdict: Verdict,
    pub model: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("backend timed out")]
    Timeout,
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    #[error("backend reply malformed: {0}")]
    BadReply(String),
}

pub enum Backend {
    Embedded(embedded::EmbeddedBackend),
    Llm(llm::LlmBackend),
    Ensemble(ensemble::EnsembleBackend),
}

impl Backend {
    /// Short name for metrics labels.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Embedded(_) => "embedded",
            Backend::Llm(_) => "llm",
            Backend::Ensemble(_) => "ensemble",
        }
    }

    /// Classifies `normalised` text (the service normalises once, for the cache key too).
    /// The second value is a failure that was absorbed (the ensemble's LLM), for metrics.
    pub async fn classify(
        &self,
        normalised: &str,
        kind: TextKind,
        deadline: Instant,
    ) -> (Result<Judgement, BackendError>, Option<BackendError>) {
        match self {
            Backend::Embedded(b) => (b.classify(normalised, kind).await, None),
            Backend::Llm(b) => (b.classify(normalised, kind, deadline).await, None),
            Backend::Ensemble(b) => b.classify(normalised, kind, deadline).await,
        }
    }
}
