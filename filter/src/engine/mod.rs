//! The inspection pipeline, free of any proxy API. One `Engine` is built per configuration;
//! one `Exchange` lives per HTTP request. `lifecycle` takes the proxy's callbacks in order and
//! answers each with a [`Decision`]; the stages it runs live beside it, one file each.

mod admission;
mod answer;
mod decision;
mod judge;
mod lifecycle;
mod refusal;
mod request;
mod stream;
#[cfg(test)]
mod tests;

pub use decision::{Decision, HeaderEdits, Host, JudgeCall, JudgeReply, Metric, Refusal};

use crate::config::{Config, Route};
use crate::detect::{DetectorId, Detectors, Finding};
use crate::policy::{Action, Policy};
use crate::providers::{self, Endpoint};
use crate::redact::vault::Vault;
use crate::stream::answer::AnswerStream;
use crate::usage::UsageMeter;

/// Names reported for request bodies that could not be inspected: not strict JSON of the
/// provider's shape (duplicate keys, invalid UTF-8 or escapes, too deep, wrong types), over
/// `max_body_bytes`, or compressed.
pub const MALFORMED_BODY: &str = "malformed_body";
pub const BODY_TOO_LARGE: &str = "body_too_large";
pub const BODY_COMPRESSED: &str = "body_compressed";
pub const UNREADABLE: [&str; 3] = [MALFORMED_BODY, BODY_TOO_LARGE, BODY_COMPRESSED];
/// Name reported when a request's token cap was over the configured limit.
pub const MAX_TOKENS: &str = "max_tokens";
/// The identity of callers that present none: they share one budget.
pub const ANONYMOUS: &str = "anonymous";

pub struct Engine {
    config: Config,
    detectors: Detectors,
}

/// The state of one request/answer exchange; only the engine writes it.
#[derive(Debug)]
pub struct Exchange {
    endpoint: Endpoint,
    /// Index of the route override that matched the path.
    route: Option<usize>,
    vault: Vault,
    verdict: Verdict,
    /// The model the request names (body, else path).
    model: Option<String>,
    /// The request asked for a streamed (SSE) answer.
    streamed_answer: bool,
    /// Tokens reported or estimated for this exchange.
    usage: UsageMeter,
    /// The calling workload (a header or the mTLS principal), when allow-lists or budgets
    /// apply; `None` reads as `ANONYMOUS`.
    identity: Option<String>,
    /// The request's texts for the audit event, values replaced (only with `audit.include_prompt`).
    logged_prompt: Option<String>,
    /// What the request's headers said, for audit events and error bodies.
    head: RequestHead,
    request_body: RequestBody,
    answer: AnswerMode,
    answer_stream: AnswerStream,
    /// Copy of an observed whole answer, for its usage.
    observed: Vec<u8>,
    /// The exchange was answered locally: the upstream answer never comes.
    refused: bool,
    /// When the judge call this request waits for was sent (host clock).
    judge_sent: Option<std::time::Duration>,
    /// The answer's tokens were charged to the caller's budget.
    tokens_charged: bool,
    /// Metric events not yet handed to the adapter: emitted once, when the exchange ends.
    metrics: Vec<Metric>,
}

/// What the request's headers told, kept for audit events.
#[derive(Debug, Default)]
struct RequestHead {
    request_id: String,
    path: String,
    /// The caller's identity for audit events, hashed with the audit salt (`audit::hash_user`)
    /// as soon as it is read: once per exchange, and the raw value is not kept.
    user_id: Option<String>,
    /// The downstream peer (`ip:port`) and the request's `:authority`.
    source: Option<String>,
    authority: Option<String>,
    /// The request's `content-encoding`, if not `identity`.
    encoding: Option<String>,
    /// The coding of a body the filter decodes (and forwards decoded, the header removed).
    decode: Option<crate::decompress::Coding>,
}

/// How the request body is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestBody {
    /// Buffered whole, then inspected.
    Inspect,
    /// Passed on chunk by chunk, uninspected; its size stands in for its text in estimates.
    PassThrough,
    /// Inspected and decided.
    Decided,
}

/// How the answer body is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AnswerMode {
    /// Forwarded as it comes.
    Pass,
    /// Buffered whole, then inspected and possibly rewritten.
    Buffer,
    /// Server-sent events, processed chunk by chunk as they arrive.
    Stream,
    /// Passed on as it comes; a copy is kept to read the token usage at the end.
    ObserveWhole,
    /// Server-sent events passed on as they come; framed on the side to count tokens.
    ObserveStream,
}

/// What was decided so far for an exchange: the strongest action and what fired.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Verdict {
    pub action: Action,
    /// Names of the detectors that fired (and `parse_error`), sorted, without repeats.
    pub detections: Vec<&'static str>,
    /// The highest score of each in-filter detector that fired, sorted by name: the audit
    /// event carries them so alerts can be ranked and thresholds tuned from real traffic.
    pub scores: Vec<(&'static str, f32)>,
}

impl Verdict {
    /// Keeps the highest score seen for `name`.
    pub fn note_score(&mut self, name: &'static str, score: f32) {
        match self.scores.binary_search_by(|(n, _)| n.cmp(&name)) {
            Ok(at) => self.scores[at].1 = self.scores[at].1.max(score),
            Err(at) => self.scores.insert(at, (name, score)),
        }
    }

    pub fn record(&mut self, action: Action, name: &'static str) {
        self.action = self.action.max(action);
        if let Err(at) = self.detections.binary_search(&name) {
            self.detections.insert(at, name);
        }
    }
}

impl Exchange {
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    pub fn verdict(&self) -> &Verdict {
        &self.verdict
    }

    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// Whether the request asked for a streamed answer.
    pub fn streamed_answer(&self) -> bool {
        self.streamed_answer
    }

    pub fn usage(&self) -> &UsageMeter {
        &self.usage
    }

    pub fn logged_prompt(&self) -> Option<&str> {
        self.logged_prompt.as_deref()
    }

    pub fn request_id(&self) -> &str {
        &self.head.request_id
    }
}

/// Direct access for tests of other modules that set up an exchange by hand.
#[cfg(test)]
impl Exchange {
    pub(crate) fn verdict_mut(&mut self) -> &mut Verdict {
        &mut self.verdict
    }

    pub(crate) fn usage_mut(&mut self) -> &mut UsageMeter {
        &mut self.usage
    }
}

impl Engine {
    pub fn new(config: Config) -> Engine {
        Engine {
            config,
            detectors: Detectors::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Starts an exchange if `path` is an LLM API this filter inspects; `None` passes untouched.
    pub(crate) fn start(&self, path: &str) -> Option<Exchange> {
        let route = self
            .config
            .routes
            .iter()
            .position(|r| path.starts_with(&r.path_prefix));
        let canonical = providers::canonical_path(path);
        let detected = providers::endpoint_for_path(&canonical);
        let endpoint = match (route.and_then(|i| self.config.routes[i].provider), detected) {
            (Some(provider), Some(e)) => Endpoint { provider, ..e },
            (_, detected) => detected?,
        };
        Some(Exchange {
            endpoint,
            route,
            vault: Vault::default(),
            verdict: Verdict::default(),
            // Gemini and Azure name the model in the path; a body's `model` replaces it.
            model: providers::model_in_path(&canonical).map(str::to_owned),
            streamed_answer: false,
            usage: UsageMeter::default(),
            identity: None,
            logged_prompt: None,
            head: RequestHead {
                path: path.to_owned(),
                ..RequestHead::default()
            },
            request_body: RequestBody::Inspect,
            answer: AnswerMode::Pass,
            answer_stream: AnswerStream::default(),
            observed: Vec::new(),
            refused: false,
            judge_sent: None,
            tokens_charged: false,
            metrics: Vec::new(),
        })
    }

    /// The route override this exchange matched, if any: the one place routes are looked up.
    fn route<'a>(&'a self, ex: &Exchange) -> Option<&'a Route> {
        ex.route.and_then(|i| self.config.routes.get(i))
    }

    /// The route name for logs and audit, if a route override matched.
    pub fn route_name(&self, ex: &Exchange) -> Option<&str> {
        self.route(ex).map(|r| r.name.as_str())
    }

    fn policy(&self, ex: &Exchange) -> &Policy {
        self.route(ex).map_or(&self.config.policy, |r| &r.policy)
    }

    fn token_limit(&self, ex: &Exchange) -> Option<crate::config::TokenLimit> {
        match self.route(ex) {
            Some(route) => route.max_tokens,
            None => self.config.max_tokens,
        }
    }
}

/// Folds findings into the verdict; returns those to redact and notes the first blocker.
fn apply(
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
        verdict.note_score(f.detector.name(), f.score);
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
