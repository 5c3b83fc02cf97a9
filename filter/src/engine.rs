//! The inspection pipeline, free of any proxy API: parse a body with its provider's codec, run
//! the detectors on every text, apply policy, and say what to do with the body. One `Engine` is
//! built per configuration; one `Exchange` lives per HTTP request.

use crate::config::{Config, JudgeConfig};
use crate::detect::{DetectorId, Detectors, Finding};
use crate::judge;
use crate::model::TextSlot;
use crate::policy::{Action, Policy};
use crate::providers::{self, json, Endpoint, ParseError};
use crate::redact::vault::Vault;

/// Name reported for bodies that could not be inspected.
pub const PARSE_ERROR: &str = "parse_error";

pub struct Engine {
    pub config: Config,
    detectors: Detectors,
}

/// The state of one request/answer exchange.
#[derive(Debug)]
pub struct Exchange {
    pub endpoint: Endpoint,
    route: Option<usize>,
    pub vault: Vault,
    pub verdict: Verdict,
    pub model: Option<String>,
    pub stream: bool,
    /// The encoded judge request, when this exchange must wait for the judge.
    pub judge_request: Option<Vec<u8>>,
}

/// What was decided so far for an exchange: the strongest action and what fired.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Verdict {
    pub action: Action,
    /// Names of the detectors that fired (and `parse_error`), sorted, without repeats.
    pub detections: Vec<&'static str>,
}

impl Verdict {
    pub fn record(&mut self, action: Action, name: &'static str) {
        self.action = self.action.max(action);
        if let Err(at) = self.detections.binary_search(&name) {
            self.detections.insert(at, name);
        }
    }
}

/// What the adapter must do with a body.
#[derive(Debug, PartialEq)]
pub enum BodyDecision {
    /// Forward it unchanged.
    Pass,
    /// Forward this instead.
    Rewrite(Vec<u8>),
    /// Answer locally with this status and provider-format error body.
    Block { status: u16, body: String },
}

impl Engine {
    pub fn new(config: Config) -> Engine {
        Engine {
            config,
            detectors: Detectors::new(),
        }
    }

    /// Starts an exchange if `path` is an LLM API this filter inspects; `None` passes untouched.
    pub fn start(&self, path: &str) -> Option<Exchange> {
        let route = self
            .config
            .routes
            .iter()
            .position(|r| path.starts_with(&r.path_prefix));
        let detected = providers::endpoint_for_path(path);
        let endpoint = match (route.and_then(|i| self.config.routes[i].provider), detected) {
            (Some(provider), Some(e)) => Endpoint { provider, ..e },
            (_, detected) => detected?,
        };
        Some(Exchange {
            endpoint,
            route,
            vault: Vault::default(),
            verdict: Verdict::default(),
            model: None,
            stream: false,
            judge_request: None,
        })
    }

    /// The judge settings that apply to this exchange, if it goes to the judge at all.
    fn judge(&self, ex: &Exchange) -> Option<&JudgeConfig> {
        let route = ex.route.and_then(|i| self.config.routes.get(i));
        match route {
            Some(r) if !r.use_judge => None,
            _ => self.config.judge.as_ref(),
        }
    }

    /// Where and how to send `ex.judge_request`: cluster and timeout.
    pub fn judge_target(&self, ex: &Exchange) -> Option<(&str, u64)> {
        self.judge(ex).map(|j| (j.cluster.as_str(), j.timeout_ms))
    }

    /// Folds the judge's answer (or failure) into the exchange: `Pass` resumes the request.
    pub fn judge_answered(
        &self,
        ex: &mut Exchange,
        grpc_status: u32,
        message: &[u8],
        request_id: &str,
    ) -> BodyDecision {
        let Some(config) = self.judge(ex) else {
            return BodyDecision::Pass;
        };
        let route = ex.route.and_then(|i| self.config.routes.get(i));
        let failure = route
            .and_then(|r| r.judge_failure)
            .unwrap_or(config.failure);
        match judge::outcome(config, failure, grpc_status, message) {
            judge::Outcome::Allow => BodyDecision::Pass,
            judge::Outcome::Alert(name) => {
                ex.verdict.record(Action::Alert, name);
                BodyDecision::Pass
            }
            judge::Outcome::Block(name) => {
                ex.verdict.record(Action::Block, name);
                let status = if name == judge::JUDGE_ERROR {
                    503
                } else {
                    self.config.block_status
                };
                self.block(ex, status, name, request_id)
            }
        }
    }

    fn policy(&self, ex: &Exchange) -> &Policy {
        match ex.route.and_then(|i| self.config.routes.get(i)) {
            Some(route) => &route.policy,
            None => &self.config.policy,
        }
    }

    /// The route name for logs and audit, if a route override matched.
    pub fn route_name(&self, ex: &Exchange) -> Option<&str> {
        ex.route
            .and_then(|i| self.config.routes.get(i))
            .map(|r| r.name.as_str())
    }

    /// Inspects a complete request body.
    pub fn inspect_request(
        &self,
        ex: &mut Exchange,
        body: &[u8],
        request_id: &str,
    ) -> BodyDecision {
        let policy = self.policy(ex);
        let judge = self.judge(ex);
        if !policy.any_enabled() && judge.is_none() {
            return BodyDecision::Pass;
        }
        let Ok(text) = std::str::from_utf8(body) else {
            return self.cannot_inspect(ex, ParseError::NotUtf8, request_id);
        };
        let parsed = match providers::parse_request(ex.endpoint, text) {
            Ok(parsed) => parsed,
            Err(e) => return self.cannot_inspect(ex, e, request_id),
        };
        ex.model = parsed.model;
        ex.stream = parsed.stream;

        let mut blocked_by = None;
        let mut changed: Vec<TextSlot> = Vec::new();
        let mut findings = Vec::new();
        for slot in parsed.texts {
            findings.clear();
            self.detectors
                .scan_prompt(&slot.text, slot.role, &mut findings);
            let to_redact = self.apply(policy, &findings, &mut ex.verdict, &mut blocked_by);
            if !to_redact.is_empty() {
                let redacted = ex.vault.redact(&slot.text, &to_redact);
                if redacted != slot.text {
                    changed.push(TextSlot {
                        text: redacted,
                        ..slot
                    });
                }
            }
        }
        if let Some(detector) = blocked_by {
            return self.block(ex, self.config.block_status, detector.name(), request_id);
        }
        if changed.is_empty() {
            return BodyDecision::Pass;
        }
        let slots: Vec<&TextSlot> = changed.iter().collect();
        BodyDecision::Rewrite(json::rewrite(text, &slots).into_bytes())
    }

    /// Inspects a complete, non-streamed answer body: output checks on the provider's text,
    /// then placeholders from the request's redaction are put back.
    pub fn inspect_answer(&self, ex: &mut Exchange, body: &[u8], request_id: &str) -> BodyDecision {
        let policy = self.policy(ex);
        let Ok(text) = std::str::from_utf8(body) else {
            return BodyDecision::Pass;
        };
        let slots = match providers::parse_answer(ex.endpoint, text) {
            Ok(slots) => slots,
            // Error answers and unknown shapes from the provider go back as they are.
            Err(_) => return BodyDecision::Pass,
        };
        let mut blocked_by = None;
        let mut changed = Vec::new();
        let mut findings = Vec::new();
        for slot in slots {
            findings.clear();
            self.detectors.scan_answer(&slot.text, &mut findings);
            let to_redact = self.apply(policy, &findings, &mut ex.verdict, &mut blocked_by);
            let masked = mask(&slot.text, &to_redact);
            let restored = ex.vault.restore(&masked);
            if restored != slot.text {
                changed.push(TextSlot {
                    text: restored,
                    ..slot
                });
            }
        }
        if let Some(detector) = blocked_by {
            return self.block(ex, 502, detector.name(), request_id);
        }
        if changed.is_empty() {
            return BodyDecision::Pass;
        }
        let slots: Vec<&TextSlot> = changed.iter().collect();
        BodyDecision::Rewrite(json::rewrite(text, &slots).into_bytes())
    }

    /// Applies `on_parse_error` to a body that cannot be inspected.
    pub fn cannot_inspect(
        &self,
        ex: &mut Exchange,
        err: ParseError,
        request_id: &str,
    ) -> BodyDecision {
        log::warn!("request {request_id}: {err}");
        match self.config.on_parse_error {
            Action::Block => {
                let status = match err {
                    ParseError::TooLarge { .. } => 413,
                    ParseError::Compressed(_) => 415,
                    _ => 400,
                };
                ex.verdict.record(Action::Block, PARSE_ERROR);
                let message = format!(
                    "Sluice could not inspect this request: {err} (request id {request_id})"
                );
                BodyDecision::Block {
                    status,
                    body: providers::error_body(
                        ex.endpoint.provider,
                        status,
                        PARSE_ERROR,
                        &message,
                    ),
                }
            }
            Action::Allow => BodyDecision::Pass,
            _ => {
                ex.verdict.record(Action::Alert, PARSE_ERROR);
                BodyDecision::Pass
            }
        }
    }

    /// Folds findings into the verdict; returns those to redact and notes the first blocker.
    fn apply(
        &self,
        policy: &Policy,
        findings: &[Finding],
        verdict: &mut Verdict,
        blocked_by: &mut Option<DetectorId>,
    ) -> Vec<Finding> {
        let mut to_redact = Vec::new();
        for f in findings {
            let Some(action) = policy.action_for(f.detector, f.score) else {
                continue;
            };
            verdict.record(action, f.detector.name());
            match action {
                Action::Block => {
                    blocked_by.get_or_insert(f.detector);
                }
                Action::Redact => to_redact.push(f.clone()),
                Action::Allow | Action::Alert => {}
            }
        }
        to_redact
    }

    fn block(&self, ex: &Exchange, status: u16, policy: &str, request_id: &str) -> BodyDecision {
        let message = format!(
            "Sluice blocked this exchange: policy `{policy}` fired (request id {request_id})"
        );
        BodyDecision::Block {
            status,
            body: providers::error_body(ex.endpoint.provider, status, policy, &message),
        }
    }
}

/// Replaces redacted spans of an answer (data the model should not return) by `[REDACTED:KIND]`.
fn mask(text: &str, findings: &[Finding]) -> String {
    if findings.is_empty() {
        return text.to_owned();
    }
    let mut spans: Vec<&Finding> = findings.iter().collect();
    spans.sort_by_key(|f| f.span.start);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for f in spans {
        let (Some(before), true) = (
            text.get(at..f.span.start),
            text.is_char_boundary(f.span.end),
        ) else {
            continue;
        };
        out.push_str(before);
        out.push_str("[REDACTED:");
        out.push_str(f.kind);
        out.push(']');
        at = f.span.end;
    }
    out.push_str(text.get(at..).unwrap_or_default());
    out
}
