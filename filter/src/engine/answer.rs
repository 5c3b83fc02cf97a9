//! The whole-answer stage: output checks on a complete (non-streamed) answer, masking what
//! policy redacts, restoring the request's placeholders; and, for answers nothing inspects,
//! reading only their token usage.

use super::{apply, Decision, Engine, Exchange};
use crate::detect::{check_json, check_language, DetectorId, Finding};
use crate::model::TextSlot;
use crate::policy::Policy;
use crate::providers::{self, json};
use crate::redact::mask::mask;

/// The detectors run on answers: `scan_values` on the text as written, `scan_output` restored.
const ANSWER_DETECTORS: [DetectorId; 5] = [
    DetectorId::OutputScript,
    DetectorId::OutputExfiltration,
    DetectorId::OutputRefusal,
    DetectorId::Pii,
    DetectorId::Secrets,
];

/// The checks of an answer's whole text against what it must look like (`format_findings`).
pub(super) const FORMAT_DETECTORS: [DetectorId; 2] =
    [DetectorId::OutputJson, DetectorId::OutputLanguage];

impl Engine {
    /// Whether an answer needs to be looked at at all: placeholders to restore, or a check on
    /// answers switched on. When not, answers pass with no buffering or processing.
    pub(crate) fn inspects_answer(&self, ex: &Exchange) -> bool {
        let policy = self.policy(ex);
        let length_limited =
            self.config.max_answer_bytes.is_some() && policy.is_enabled(DetectorId::OutputLength);
        !ex.vault.is_empty()
            || length_limited
            || policy.any_enabled(&ANSWER_DETECTORS)
            || policy.any_enabled(&FORMAT_DETECTORS)
    }

    /// Inspects a complete, non-streamed answer body: output checks on the provider's text,
    /// then placeholders from the request's redaction are put back. The status line is already
    /// on its way, so a blocked answer is rewritten to the provider-format error.
    pub(crate) fn inspect_answer(&self, ex: &mut Exchange, body: &[u8]) -> Decision {
        let policy = self.policy(ex);
        let Ok(text) = std::str::from_utf8(body) else {
            return Decision::Forward;
        };
        ex.usage.report(providers::answer_usage(ex.endpoint, text));
        let slots = match providers::parse_answer(ex.endpoint, text) {
            Ok(slots) => slots,
            // Error answers and unknown shapes from the provider go back as they are.
            Err(_) => return Decision::Forward,
        };
        ex.usage.answer_text_bytes += slots.iter().map(|s| s.text.len()).sum::<usize>();
        let mut blocked_by = None;
        let mut changed = Vec::new();
        let mut findings = Vec::new();
        if let Some(max_bytes) = self.config.max_answer_bytes {
            let total: usize = slots.iter().map(|s| s.text.len()).sum();
            if total > max_bytes {
                apply(
                    policy,
                    &[length_finding()],
                    &mut ex.verdict,
                    &mut blocked_by,
                );
            }
        }
        let allowed_hosts = &policy.expectations().allowed_hosts;
        for slot in slots {
            // Values the model produced are looked for before restoring (the user's own are
            // placeholders then); each choice on its own must be JSON, in an allowed language.
            findings.clear();
            self.detectors.scan_values(&slot.text, &mut findings);
            format_findings(policy, &slot.text, true, &mut findings);
            let to_redact = apply(policy, &findings, &mut ex.verdict, &mut blocked_by);
            let restored = ex.vault.restore(&mask(&slot.text, &to_redact));
            // Scripts and links are judged on what the client receives: restored.
            findings.clear();
            self.detectors
                .scan_output(&restored, allowed_hosts, &mut findings);
            let to_redact = apply(policy, &findings, &mut ex.verdict, &mut blocked_by);
            let shown = mask(&restored, &to_redact);
            if shown != slot.text {
                changed.push(TextSlot {
                    text: shown,
                    ..slot
                });
            }
        }
        if let Some(detector) = blocked_by {
            let refusal = self.blocked(ex, 502, detector.name());
            return Decision::Rewrite(refusal.body.into_bytes());
        }
        if changed.is_empty() {
            return Decision::Forward;
        }
        let slots: Vec<&TextSlot> = changed.iter().collect();
        Decision::Rewrite(json::rewrite(text, &slots).into_bytes())
    }

    /// Reads only the token usage of a whole answer the filter does not otherwise inspect
    /// (its bytes were passed on as they came; this is a copy).
    pub(crate) fn observe_answer(&self, ex: &mut Exchange, body: &[u8]) {
        let Ok(text) = std::str::from_utf8(body) else {
            return;
        };
        ex.usage.report(providers::answer_usage(ex.endpoint, text));
        if !ex.usage.complete() {
            if let Ok(slots) = providers::parse_answer(ex.endpoint, text) {
                ex.usage.answer_text_bytes += slots.iter().map(|s| s.text.len()).sum::<usize>();
            }
        }
    }
}

/// The `output_length` finding. Its span is empty: length is a property of the whole answer,
/// with nothing in it to mask.
pub(super) fn length_finding() -> Finding {
    Finding {
        detector: DetectorId::OutputLength,
        kind: "TOO_LONG",
        span: 0..0,
        score: 1.0,
    }
}

/// The `output_json` and `output_language` findings on an answer's whole text, for the checks
/// policy switched on. `complete`: the text is the whole answer (a stream's kept text may
/// stop at a bound, and a cut JSON value proves nothing).
pub(super) fn format_findings(policy: &Policy, text: &str, complete: bool, out: &mut Vec<Finding>) {
    let expect = policy.expectations();
    if complete && policy.is_enabled(DetectorId::OutputJson) {
        out.extend(check_json(
            text,
            expect.json_fence,
            &expect.json_required_keys,
        ));
    }
    if policy.is_enabled(DetectorId::OutputLanguage) {
        out.extend(check_language(text, &expect.languages));
    }
}
