//! The plugin configuration: parsed once at configure time into typed values, with errors that
//! name the offending field. The JSON schema is documented in README.md.

mod detectors;

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::access::{AllowList, Pattern};
use crate::budget::Limits;
use crate::policy::{Action, Policy};
use crate::providers::Provider;
use detectors::{apply_detectors, RawDetector};

/// Envoy's default per-connection buffer limit; larger bodies are not buffered for inspection.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Adds `x-sluice-action` and `x-sluice-detections` to answers.
    pub expose_verdict_headers: bool,
    /// What to do with a request body that cannot be inspected (not strict JSON, not UTF-8,
    /// compressed, too large): `Block` by default (a body the filter cannot read is one an
    /// attacker could shape to pass); `Alert` (pass and report) or `Allow` are opt-in.
    pub on_parse_error: Action,
    /// Status of a blocked request's local answer.
    pub block_status: u16,
    /// Bodies larger than this are not buffered: they follow `on_parse_error` (413). Keep it at or
    /// below Envoy's buffer limit, or Envoy answers 413 first.
    pub max_body_bytes: usize,
    /// Answers whose text grows past this many bytes fire `output_length` (streams included).
    pub max_answer_bytes: Option<usize>,
    pub policy: Policy,
    pub routes: Vec<Route>,
    /// The judge service, if configured; it applies to every route that does not opt out.
    pub judge: Option<JudgeConfig>,
    /// Cap on the answer length a request may ask for (routes may override).
    pub max_tokens: Option<TokenLimit>,
    pub audit: AuditConfig,
    /// Request header naming the calling workload for allow-lists and budgets; without it, the
    /// mTLS source principal (`source.principal`).
    pub identity_header: Option<String>,
    /// Providers and models every route allows unless it has its own list.
    pub allow: AllowList,
    /// Requests and tokens per identity per window, for identities no workload entry gives
    /// a budget of its own.
    pub budget: Option<Limits>,
    /// Per-workload allow-lists and budgets (first identity match wins).
    pub workloads: Vec<Workload>,
}

/// What one calling workload (or a family of them, by prefix) may use and spend.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub identity: Pattern,
    /// Applies on top of the route's list: a request must pass both.
    pub allow: AllowList,
    /// Replaces the top-level budget for these identities.
    pub budget: Option<Limits>,
}

/// Who the caller is in audit events, and the salt their identity is hashed with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditConfig {
    /// Request header naming the caller; without it, the mTLS peer principal (Istio).
    pub user_header: Option<String>,
    pub salt: String,
    /// Put the request's texts in the event (`sluice.prompt`), with every personal value and
    /// secret replaced by a placeholder whatever the policy, capped at
    /// [`crate::audit::PROMPT_MAX_BYTES`]. Off by default: prompts are the user's data.
    pub include_prompt: bool,
}

/// A cap on `max_tokens` (and its per-API equivalents): the first line of defence against
/// denial of wallet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenLimit {
    pub limit: u64,
    /// `true`: refuse requests over the cap (400); `false`: rewrite them to the cap, adding the
    /// field when absent.
    pub refuse: bool,
}

/// How the filter calls the judge service over gRPC.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeConfig {
    /// Envoy cluster of the judge (under Istio: `outbound|PORT||judge.NS.svc.cluster.local`).
    pub cluster: String,
    pub timeout_ms: u64,
    /// Texts are sent only when the in-filter prompt-injection score reaches this; 0 sends all.
    pub min_score: f32,
    /// Longer texts are cut to this many bytes (at a character boundary) before sending.
    pub max_text_bytes: usize,
    /// What a `BLOCK` verdict does: `Block` or `Alert`.
    pub action: Action,
    /// What a judge error or timeout does.
    pub failure: JudgeFailure,
}

/// A per-route override, matched by path prefix (first match wins).
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub name: String,
    pub path_prefix: String,
    /// Forces the wire format instead of recognising it by path.
    pub provider: Option<Provider>,
    pub policy: Policy,
    /// `false` keeps this route's texts away from the judge.
    pub use_judge: bool,
    /// Overrides `JudgeConfig::failure` on this route.
    pub judge_failure: Option<JudgeFailure>,
    pub max_tokens: Option<TokenLimit>,
    /// Replaces the top-level allow-list on this route.
    pub allow: Option<AllowList>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid configuration at `{field}`: {reason}")]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    expose_verdict_headers: bool,
    #[serde(default)]
    on_parse_error: Option<RawParseErrorAction>,
    #[serde(default)]
    block_status: Option<u16>,
    #[serde(default)]
    max_body_bytes: Option<usize>,
    #[serde(default)]
    max_answer_bytes: Option<usize>,
    #[serde(default)]
    detectors: BTreeMap<String, RawDetector>,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    judge: Option<RawJudge>,
    #[serde(default)]
    max_tokens: Option<RawTokenLimit>,
    #[serde(default)]
    audit: Option<RawAudit>,
    #[serde(default)]
    identity: Option<RawIdentity>,
    #[serde(default)]
    allow: Option<RawAllow>,
    #[serde(default)]
    budget: Option<RawBudget>,
    #[serde(default)]
    workloads: Vec<RawWorkload>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    header: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAllow {
    #[serde(default)]
    providers: Option<Vec<Provider>>,
    #[serde(default)]
    models: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    window_s: u64,
    #[serde(default)]
    requests: Option<u64>,
    #[serde(default)]
    tokens: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    identity: String,
    #[serde(default)]
    allow: Option<RawAllow>,
    #[serde(default)]
    budget: Option<RawBudget>,
}

/// Budget windows are at most a year long.
const MAX_WINDOW_S: u64 = 366 * 24 * 3600;

fn allow_list(raw: RawAllow, at: &str) -> Result<AllowList, ConfigError> {
    if raw.providers.as_ref().is_some_and(Vec::is_empty) {
        return Err(ConfigError::new(
            format!("{at}.providers"),
            "must name at least one provider (leave it out to allow any)",
        ));
    }
    let models = match raw.models {
        None => None,
        Some(models) if models.is_empty() => {
            return Err(ConfigError::new(
                format!("{at}.models"),
                "must name at least one model (leave it out to allow any)",
            ))
        }
        Some(models) => {
            let mut patterns = Vec::with_capacity(models.len());
            for (i, m) in models.iter().enumerate() {
                if m.trim().is_empty() || m.strip_suffix('*').unwrap_or(m).contains('*') {
                    return Err(ConfigError::new(
                        format!("{at}.models[{i}]"),
                        "must be a model name, or a prefix followed by one trailing `*`",
                    ));
                }
                patterns.push(Pattern::parse(m));
            }
            Some(patterns)
        }
    };
    Ok(AllowList {
        providers: raw.providers,
        models,
    })
}

fn budget(raw: RawBudget, at: &str) -> Result<Limits, ConfigError> {
    if !(1..=MAX_WINDOW_S).contains(&raw.window_s) {
        return Err(ConfigError::new(
            format!("{at}.window_s"),
            format!("must be between 1 and {MAX_WINDOW_S} seconds"),
        ));
    }
    if raw.requests.is_none() && raw.tokens.is_none() {
        return Err(ConfigError::new(
            at,
            "must limit `requests`, `tokens` or both",
        ));
    }
    for (name, value) in [("requests", raw.requests), ("tokens", raw.tokens)] {
        if value == Some(0) {
            return Err(ConfigError::new(format!("{at}.{name}"), "must be positive"));
        }
    }
    Ok(Limits {
        window_s: raw.window_s,
        requests: raw.requests,
        tokens: raw.tokens,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    #[serde(default)]
    user_header: Option<String>,
    #[serde(default)]
    salt: Option<String>,
    #[serde(default)]
    include_prompt: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokenLimit {
    limit: u64,
    #[serde(default)]
    over: Option<RawOver>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawOver {
    Rewrite,
    Refuse,
}

fn token_limit(raw: &RawTokenLimit, at: &str) -> Result<TokenLimit, ConfigError> {
    if raw.limit == 0 {
        return Err(ConfigError::new(format!("{at}.limit"), "must be positive"));
    }
    Ok(TokenLimit {
        limit: raw.limit,
        refuse: matches!(raw.over, Some(RawOver::Refuse)),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJudge {
    cluster: String,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    min_score: Option<f32>,
    #[serde(default)]
    max_text_bytes: Option<usize>,
    #[serde(default)]
    action: Option<RawJudgeAction>,
    #[serde(default)]
    failure: Option<JudgeFailure>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawJudgeAction {
    Alert,
    Block,
}

/// What a judge error or timeout does. `open`: let the request through with a
/// `judge_error` alert; `closed`: block it with 503.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum JudgeFailure {
    Open,
    Closed,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawParseErrorAction {
    Allow,
    Alert,
    Block,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: String,
    path_prefix: String,
    #[serde(default)]
    provider: Option<Provider>,
    #[serde(default)]
    detectors: BTreeMap<String, RawDetector>,
    #[serde(default)]
    judge: Option<bool>,
    #[serde(default)]
    judge_failure: Option<JudgeFailure>,
    #[serde(default)]
    max_tokens: Option<RawTokenLimit>,
    #[serde(default)]
    allow: Option<RawAllow>,
}

impl Config {
    /// Parses the plugin configuration. Empty input means all defaults.
    pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
        let trimmed = bytes.trim_ascii();
        let raw: RawConfig = if trimmed.is_empty() {
            serde_json::from_str("{}").map_err(|e| ConfigError::new("", e.to_string()))?
        } else {
            let de = &mut serde_json::Deserializer::from_slice(trimmed);
            serde_path_to_error::deserialize(de).map_err(|e| {
                let field = e.path().to_string();
                ConfigError::new(field, e.into_inner().to_string())
            })?
        };
        let block_status = raw.block_status.unwrap_or(403);
        if !(200..=599).contains(&block_status) {
            return Err(ConfigError::new(
                "block_status",
                format!("{block_status} is not an HTTP status between 200 and 599"),
            ));
        }
        let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes == 0 {
            return Err(ConfigError::new("max_body_bytes", "must be positive"));
        }
        if raw.max_answer_bytes == Some(0) {
            return Err(ConfigError::new("max_answer_bytes", "must be positive"));
        }
        let policy = apply_detectors(Policy::default(), &raw.detectors, "detectors")?;
        let max_tokens = raw
            .max_tokens
            .as_ref()
            .map(|t| token_limit(t, "max_tokens"))
            .transpose()?;
        let mut routes = Vec::with_capacity(raw.routes.len());
        for (i, r) in raw.routes.into_iter().enumerate() {
            let at = format!("routes[{i}]");
            if !r.path_prefix.starts_with('/') {
                return Err(ConfigError::new(
                    format!("{at}.path_prefix"),
                    "must start with '/'",
                ));
            }
            let policy = apply_detectors(policy.clone(), &r.detectors, &format!("{at}.detectors"))?;
            routes.push(Route {
                name: r.name,
                path_prefix: r.path_prefix,
                provider: r.provider,
                policy,
                use_judge: r.judge.unwrap_or(true),
                judge_failure: r.judge_failure,
                max_tokens: match &r.max_tokens {
                    Some(t) => Some(token_limit(t, &format!("{at}.max_tokens"))?),
                    None => max_tokens,
                },
                allow: r
                    .allow
                    .map(|a| allow_list(a, &format!("{at}.allow")))
                    .transpose()?,
            });
        }
        let mut workloads = Vec::with_capacity(raw.workloads.len());
        for (i, w) in raw.workloads.into_iter().enumerate() {
            let at = format!("workloads[{i}]");
            if w.identity.is_empty()
                || w.identity
                    .strip_suffix('*')
                    .unwrap_or(&w.identity)
                    .contains('*')
            {
                return Err(ConfigError::new(
                    format!("{at}.identity"),
                    "must be an identity, or a prefix followed by one trailing `*`",
                ));
            }
            workloads.push(Workload {
                identity: Pattern::parse(&w.identity),
                allow: w
                    .allow
                    .map(|a| allow_list(a, &format!("{at}.allow")))
                    .transpose()?
                    .unwrap_or_default(),
                budget: w
                    .budget
                    .map(|b| budget(b, &format!("{at}.budget")))
                    .transpose()?,
            });
        }
        let identity_header = match raw.identity {
            Some(RawIdentity { header }) if header.trim().is_empty() => {
                return Err(ConfigError::new(
                    "identity.header",
                    "must name a request header",
                ))
            }
            Some(RawIdentity { header }) => Some(header.to_ascii_lowercase()),
            None => None,
        };
        let judge = raw.judge.map(parse_judge).transpose()?;
        Ok(Config {
            expose_verdict_headers: raw.expose_verdict_headers,
            on_parse_error: match raw.on_parse_error.unwrap_or(RawParseErrorAction::Block) {
                RawParseErrorAction::Allow => Action::Allow,
                RawParseErrorAction::Alert => Action::Alert,
                RawParseErrorAction::Block => Action::Block,
            },
            block_status,
            max_body_bytes,
            max_answer_bytes: raw.max_answer_bytes,
            policy,
            routes,
            judge,
            max_tokens,
            audit: raw
                .audit
                .map(|a| AuditConfig {
                    user_header: a.user_header.map(|h| h.to_ascii_lowercase()),
                    salt: a.salt.unwrap_or_default(),
                    include_prompt: a.include_prompt,
                })
                .unwrap_or_default(),
            identity_header,
            allow: raw
                .allow
                .map(|a| allow_list(a, "allow"))
                .transpose()?
                .unwrap_or_default(),
            budget: raw.budget.map(|b| budget(b, "budget")).transpose()?,
            workloads,
        })
    }

    /// The workload entry for a caller's identity, if any (first match wins).
    pub fn workload_for(&self, identity: &str) -> Option<&Workload> {
        self.workloads.iter().find(|w| w.identity.matches(identity))
    }

    /// Whether allow-lists or budgets apply at all: only then is the caller identified.
    pub fn controls_access(&self) -> bool {
        self.allow != AllowList::default()
            || self.budget.is_some()
            || !self.workloads.is_empty()
            || self.routes.iter().any(|r| r.allow.is_some())
    }

    /// The route override for a request path, if any.
    pub fn route_for(&self, path: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| path.starts_with(&r.path_prefix))
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::parse(b"").unwrap_or_else(|_| unreachable!("empty configuration is valid"))
    }
}

fn parse_judge(raw: RawJudge) -> Result<JudgeConfig, ConfigError> {
    if raw.cluster.trim().is_empty() {
        return Err(ConfigError::new(
            "judge.cluster",
            "must name an Envoy cluster",
        ));
    }
    let timeout_ms = raw.timeout_ms.unwrap_or(300);
    if !(1..=60_000).contains(&timeout_ms) {
        return Err(ConfigError::new(
            "judge.timeout_ms",
            "must be between 1 and 60000",
        ));
    }
    let min_score = raw.min_score.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&min_score) {
        return Err(ConfigError::new(
            "judge.min_score",
            "must be within 0.0..=1.0",
        ));
    }
    Ok(JudgeConfig {
        cluster: raw.cluster,
        timeout_ms,
        min_score,
        max_text_bytes: raw.max_text_bytes.unwrap_or(8 * 1024).max(1),
        action: match raw.action.unwrap_or(RawJudgeAction::Block) {
            RawJudgeAction::Alert => Action::Alert,
            RawJudgeAction::Block => Action::Block,
        },
        failure: raw.failure.unwrap_or(JudgeFailure::Open),
    })
}

#[cfg(test)]
mod tests;
