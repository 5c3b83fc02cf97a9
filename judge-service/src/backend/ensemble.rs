//! Ensemble: the embedded model answers alone when it is confident either way; only texts in
//! its suspicious band (below the block threshold) go to the LLM judge. If the LLM fails, the
//! embedded answer (SUSPICIOUS) stands, so the grey zone never turns into an error.

use std::time::Instant;

use super::embedded::EmbeddedBackend;
use super::llm::LlmBackend;
use super::{BackendError, Judgement};
use crate::proto::{TextKind, Verdict};

pub struct EnsembleBackend {
    pub embedded: EmbeddedBackend,
    pub llm: LlmBackend,
}

impl EnsembleBackend {
    /// Returns the judgement and whether the LLM failed (counted as a backend error).
    pub async fn classify(
        &self,
        normalised: &str,
        kind: TextKind,
        deadline: Instant,
    ) -> (Result<Judgement, BackendError>, Option<BackendError>) {
        let first = match self.embedded.classify(normalised, kind).await {
            Ok(j) => j,
            Err(e) => return (Err(e), None),
        };
        if first.verdict != Verdict::Suspicious {
            return (Ok(first), None);
        }
        match self.llm.classify(normalised, kind, deadline).await {
            Ok(mut j) => {
                // Keep the embedded score too, so callers can see both opinions.
                j.model = format!("{}+{}", first.model, j.model);
                (Ok(j), None)
            }
            Err(e) => (Ok(first), Some(e)),
        }
    }
}
