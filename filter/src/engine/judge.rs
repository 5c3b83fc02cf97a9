//! The judge stage: whether this exchange goes to the judge, the call that carries its
//! (redacted) texts, and what the judge's answer, or its failure, does to the request.

use std::time::Duration;

use super::{Decision, Engine, Exchange, JudgeCall};
use crate::config::JudgeConfig;
use crate::judge::{self as wire, Outcome};
use crate::model::TextSlot;
use crate::policy::Action;

impl Engine {
    /// The judge settings that apply to this exchange, if it goes to the judge at all.
    pub(super) fn judge(&self, ex: &Exchange) -> Option<&JudgeConfig> {
        match self.route(ex) {
            Some(r) if !r.use_judge => None,
            _ => self.config.judge.as_ref(),
        }
    }

    /// The judge call for a request's texts, when a judge applies and the in-filter injection
    /// score reached its `min_score`.
    pub(super) fn judge_call(
        &self,
        ex: &Exchange,
        texts: &[&TextSlot],
        injection_score: f32,
    ) -> Option<JudgeCall> {
        let judge = self.judge(ex).filter(|j| injection_score >= j.min_score)?;
        let (text, kind) = wire::text_for(texts, judge.max_text_bytes)?;
        let parts = wire::parts_for(texts, judge.max_text_bytes);
        let context = [("provider", ex.endpoint.provider.name())];
        Some(JudgeCall {
            cluster: judge.cluster.clone(),
            timeout: Duration::from_millis(judge.timeout_ms),
            message: wire::encode_request(text, kind, parts, &ex.head.request_id, &context),
        })
    }

    /// Folds the judge's answer (or failure) into the exchange: `Forward` resumes the request,
    /// `Refuse` answers it (503 when the judge failed closed).
    pub(super) fn judge_outcome(
        &self,
        ex: &mut Exchange,
        grpc_status: u32,
        message: &[u8],
    ) -> Decision {
        let Some(config) = self.judge(ex) else {
            return Decision::Forward;
        };
        let failure = self
            .route(ex)
            .and_then(|r| r.judge_failure)
            .unwrap_or(config.failure);
        match wire::outcome(config, failure, grpc_status, message) {
            Outcome::Allow => Decision::Forward,
            Outcome::Alert(name) => {
                ex.verdict.record(Action::Alert, name);
                Decision::Forward
            }
            Outcome::Block(name) => {
                ex.verdict.record(Action::Block, name);
                let status = if name == wire::JUDGE_ERROR {
                    503
                } else {
                    self.config.block_status
                };
                Decision::Refuse(self.blocked(ex, status, name))
            }
        }
    }
}
