//! The request stage: parse the body with its provider's codec, refuse what the allow-lists or
//! the token cap forbid, run the prompt detectors on every text, redact, and prepare the judge
//! call on the texts as the provider will see them.

use super::{
    apply, Decision, Engine, Exchange, BODY_COMPRESSED, BODY_TOO_LARGE, MALFORMED_BODY, MAX_TOKENS,
};
use crate::detect::{DetectorId, Finding};
use crate::model::{Role, TextSlot};
use crate::policy::Action;
use crate::providers::{self, json, ParseError};
use crate::redact::vault::Vault;

/// The detectors `Detectors::scan_prompt` runs.
pub(super) const PROMPT_DETECTORS: [DetectorId; 3] = [
    DetectorId::PromptInjection,
    DetectorId::Pii,
    DetectorId::Secrets,
];

/// Texts shorter than this are fragments when joined for the injection check: glued to their
/// neighbours rather than set on a line of their own.
const FRAGMENT_BYTES: usize = 32;

impl Engine {
    /// Whether a request body needs to be read at all: a detector on prompts, the judge, a
    /// token cap or an allow-list. When not, the body streams through without buffering.
    pub(crate) fn inspects_request(&self, ex: &Exchange) -> bool {
        self.policy(ex).any_enabled(&PROMPT_DETECTORS)
            || self.judge(ex).is_some()
            || self.token_limit(ex).is_some()
            || self.allow_lists(ex).iter().any(Option::is_some)
    }

    /// Inspects a complete request body: `Forward`, `Rewrite`, `Refuse` or `AskJudge`.
    pub(crate) fn inspect_request(&self, ex: &mut Exchange, body: &[u8]) -> Decision {
        if !self.inspects_request(ex) {
            return Decision::Forward;
        }
        let policy = self.policy(ex);
        let token_limit = self.token_limit(ex);
        let Ok(text) = std::str::from_utf8(body) else {
            return self.cannot_inspect(ex, ParseError::NotUtf8);
        };
        let parsed = match providers::parse_request(ex.endpoint, text) {
            Ok(parsed) => parsed,
            Err(e) => return self.cannot_inspect(ex, e),
        };
        if parsed.model.is_some() {
            ex.model = parsed.model;
        }
        ex.streamed_answer = parsed.stream;
        ex.usage
            .prompt_text(parsed.texts.iter().map(|t| t.text.len()).sum());
        if let Some(refused) = self.check_access(ex) {
            return refused;
        }
        if let Some(limit) = token_limit.filter(|l| l.refuse) {
            if let Some((asked, _)) = parsed
                .max_tokens
                .stated
                .clone()
                .filter(|(v, _)| *v > limit.limit)
            {
                ex.verdict.record(Action::Block, MAX_TOKENS);
                let message = format!(
                    "Sluice refused this request: max_tokens {asked} is over the limit of {}",
                    limit.limit
                );
                return Decision::Refuse(self.refusal(ex, 400, MAX_TOKENS, &message, None));
            }
        }

        let mut blocked_by = None;
        let mut slots: Vec<(TextSlot, bool)> = Vec::with_capacity(parsed.texts.len());
        let mut findings = Vec::new();
        let mut injection_score: f32 = 0.0;
        // Each role's texts joined as the model reads them, for the injection check: a prompt
        // split into many small content parts must score like the whole. Fragments are glued
        // as they are ("ig" + "nore"); longer texts (whole turns) keep a line between them, so
        // words of two turns do not run together.
        let mut joined: Vec<(Role, String, usize)> = Vec::new();
        if policy.is_enabled(DetectorId::PromptInjection) {
            let mut last_len = usize::MAX;
            for slot in &parsed.texts {
                match joined.iter_mut().find(|(r, _, _)| *r == slot.role) {
                    Some((_, text, parts)) => {
                        if last_len >= FRAGMENT_BYTES && slot.text.len() >= FRAGMENT_BYTES {
                            text.push('\n');
                        }
                        text.push_str(&slot.text);
                        *parts += 1;
                    }
                    None => joined.push((slot.role, slot.text.clone(), 1)),
                }
                last_len = slot.text.len();
            }
        }
        for (role, text, parts) in &joined {
            if *parts < 2 {
                continue;
            }
            if let Some(f) = self.detectors.injection_score(text, *role) {
                injection_score = injection_score.max(f.score);
                // The span is in the joined text: nothing of it can be redacted in place.
                let _ = apply(policy, &[f], &mut ex.verdict, &mut blocked_by);
            }
        }
        for slot in &parsed.texts {
            ex.vault.reserve_literals(&slot.text);
        }
        for mut slot in parsed.texts {
            findings.clear();
            self.detectors
                .scan_prompt(&slot.text, slot.role, &mut findings);
            injection_score = findings
                .iter()
                .filter(|f| f.detector == DetectorId::PromptInjection)
                .fold(injection_score, |max, f| max.max(f.score));
            if self.config.audit.include_prompt {
                log_prompt(ex, &slot.text, &findings);
            }
            let to_redact = apply(policy, &findings, &mut ex.verdict, &mut blocked_by);
            let mut changed = false;
            if !to_redact.is_empty() {
                let redacted = ex.vault.redact(&slot.text, &to_redact);
                if redacted != slot.text {
                    slot.text = redacted;
                    changed = true;
                }
            }
            slots.push((slot, changed));
        }
        if let Some(detector) = blocked_by {
            return Decision::Refuse(self.blocked(ex, self.config.block_status, detector.name()));
        }
        // The judge sees the texts as the provider will: redacted.
        let all: Vec<&TextSlot> = slots.iter().map(|(s, _)| s).collect();
        let judge_call = self.judge_call(ex, &all, injection_score);
        let changed: Vec<&TextSlot> = slots.iter().filter(|(_, c)| *c).map(|(s, _)| s).collect();
        let mut rewritten = (!changed.is_empty()).then(|| json::rewrite(text, &changed));
        if let Some(limit) = token_limit.filter(|l| !l.refuse) {
            let capped = match &rewritten {
                // Redaction moved the bytes: find the cap again in the new body.
                Some(body) => providers::parse_request(ex.endpoint, body)
                    .ok()
                    .and_then(|p| p.max_tokens.apply(body, limit.limit)),
                None => parsed.max_tokens.apply(text, limit.limit),
            };
            if let Some(capped) = capped {
                ex.verdict.record(Action::Alert, MAX_TOKENS);
                rewritten = Some(capped);
            }
        }
        let rewrite = rewritten.map(String::into_bytes);
        match (judge_call, rewrite) {
            (Some(call), rewrite) => Decision::AskJudge { rewrite, call },
            (None, Some(body)) => Decision::Rewrite(body),
            (None, None) => Decision::Forward,
        }
    }

    /// Applies `on_parse_error` to a body that cannot be inspected.
    pub(crate) fn cannot_inspect(&self, ex: &mut Exchange, err: ParseError) -> Decision {
        log::warn!("request {}: {err}", ex.head.request_id);
        // A body that cannot be read cannot show its model is allowed.
        if let Some(refused) = self.check_access(ex) {
            return refused;
        }
        let (status, name) = match err {
            ParseError::TooLarge { .. } => (413, BODY_TOO_LARGE),
            ParseError::Compressed(_) => (415, BODY_COMPRESSED),
            _ => (400, MALFORMED_BODY),
        };
        match self.config.on_parse_error {
            Action::Block => self.refuse_unreadable(ex, status, name, &err),
            Action::Allow => Decision::Forward,
            _ => {
                ex.verdict.record(Action::Alert, name);
                Decision::Forward
            }
        }
    }

    /// Refuses a request body that cannot be inspected, saying why in the provider's format.
    pub(crate) fn refuse_unreadable(
        &self,
        ex: &mut Exchange,
        status: u16,
        name: &'static str,
        why: &dyn std::fmt::Display,
    ) -> Decision {
        ex.verdict.record(Action::Block, name);
        let message = format!("Sluice could not inspect this request: {why}");
        Decision::Refuse(self.refusal(ex, status, name, &message, None))
    }
}

/// Appends `text` to the exchange's logged prompt with every personal value and secret found
/// in it replaced by a placeholder (a scratch vault: nothing of it is ever restored), up to
/// [`crate::audit::PROMPT_MAX_BYTES`].
fn log_prompt(ex: &mut Exchange, text: &str, findings: &[Finding]) {
    let logged = ex.logged_prompt.get_or_insert_with(String::new);
    if logged.len() >= crate::audit::PROMPT_MAX_BYTES {
        return;
    }
    let values: Vec<Finding> = findings
        .iter()
        .filter(|f| matches!(f.detector, DetectorId::Pii | DetectorId::Secrets))
        .cloned()
        .collect();
    let clean = Vault::default().redact(text, &values);
    if !logged.is_empty() {
        logged.push('\n');
    }
    let room = crate::audit::PROMPT_MAX_BYTES.saturating_sub(logged.len());
    logged.push_str(&clean[..clean.floor_char_boundary(room)]);
}
