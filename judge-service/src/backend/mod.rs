//! Classification backends behind the gRPC service. An enum rather than a trait object:
//! the set is closed and the calls are async.

pub mod embedded;

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
}

impl Backend {
    /// Short name for metrics labels.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Embedded(_) => "embedded",
        }
    }

    /// Classifies `normalised` text (the service normalises once, for the cache key too).
    pub async fn classify(
        &self,
        normalised: &str,
        _kind: TextKind,
        _deadline: Instant,
    ) -> Result<Judgement, BackendError> {
        match self {
            Backend::Embedded(b) => Ok(b.classify(normalised)),
        }
    }
}
