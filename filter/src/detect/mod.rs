//! Detectors: find prompt injection, personal data, secrets and unsafe output in plain text.
//! Patterns are compiled once (`Detectors::new`, at configure time) and shared by every request;
//! scanning never panics and never allocates more than a few buffers per text.

use std::ops::Range;

use crate::model::Role;

pub mod injection;
pub mod output;
pub mod pii;
pub mod secrets;

pub use output::{check_json, check_language, Language};

/// A detector that policy can switch and tune. `name()` is the key used in the configuration,
/// in `x-sluice-detections` and in audit events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DetectorId {
    PromptInjection,
    Pii,
    Secrets,
    OutputScript,
    OutputExfiltration,
    OutputRefusal,
    /// Answer longer than the configured `max_answer_bytes`.
    OutputLength,
    /// Answer that must be JSON but is not (`check_json`).
    OutputJson,
    /// Answer in a language other than the expected ones (`check_language`).
    OutputLanguage,
}

impl DetectorId {
    pub const ALL: [DetectorId; 9] = [
        DetectorId::PromptInjection,
        DetectorId::Pii,
        DetectorId::Secrets,
        DetectorId::OutputScript,
        DetectorId::OutputExfiltration,
        DetectorId::OutputRefusal,
        DetectorId::OutputLength,
        DetectorId::OutputJson,
        DetectorId::OutputLanguage,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DetectorId::PromptInjection => "prompt_injection",
            DetectorId::Pii => "pii",
            DetectorId::Secrets => "secrets",
            DetectorId::OutputScript => "output_script",
            DetectorId::OutputExfiltration => "output_exfiltration",
            DetectorId::OutputRefusal => "output_refusal",
            DetectorId::OutputLength => "output_length",
            DetectorId::OutputJson => "output_json",
            DetectorId::OutputLanguage => "output_language",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Whether findings of this detector are redactable values (PII, secrets) rather than signals.
    pub fn is_value(self) -> bool {
        matches!(self, DetectorId::Pii | DetectorId::Secrets)
    }
}

/// One thing a detector found: what, where (byte offsets into the scanned text) and how sure.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub detector: DetectorId,
    /// The entity or signal type, e.g. `EMAIL`, `AWS_ACCESS_KEY_ID`, `INJECTION`.
    pub kind: &'static str,
    pub span: Range<usize>,
    /// 0.0..=1.0; policy compares it with the detector's threshold.
    pub score: f32,
}

/// The compiled detector set.
pub struct Detectors {
    injection: injection::InjectionDetector,
    secrets: secrets::SecretDetector,
    output: output::OutputDetector,
}

impl Default for Detectors {
    fn default() -> Self {
        Self::new()
    }
}

impl Detectors {
    pub fn new() -> Self {
        Detectors {
            injection: injection::InjectionDetector::new(),
            secrets: secrets::SecretDetector::new(),
            output: output::OutputDetector::new(),
        }
    }

    /// Scans one text of a request (prompt, system text, tool result, document).
    /// Findings are appended in detector order; value findings (PII, secrets) never overlap
    /// each other, a secret winning over PII found inside it.
    pub fn scan_prompt(&self, text: &str, role: Role, out: &mut Vec<Finding>) {
        self.injection.scan(text, role, out);
        self.scan_values(text, out);
    }

    /// Scans one text of an answer: output checks (links and images may point to
    /// `allowed_hosts`), then PII and secrets (an answer may leak them).
    pub fn scan_answer(&self, text: &str, allowed_hosts: &[String], out: &mut Vec<Finding>) {
        self.output.scan(text, allowed_hosts, out);
        self.scan_values(text, out);
    }

    /// The answer checks alone (script, exfiltration, refusal): the engine runs them on the
    /// answer as the client receives it, placeholders restored, since a restored value is
    /// what an exfiltration link would carry away.
    pub fn scan_output(&self, text: &str, allowed_hosts: &[String], out: &mut Vec<Finding>) {
        self.output.scan(text, allowed_hosts, out);
    }

    /// The injection detector itself (the trainer and the evaluation use it).
    pub fn injection(&self) -> &injection::InjectionDetector {
        &self.injection
    }

    pub fn injection_mut(&mut self) -> &mut injection::InjectionDetector {
        &mut self.injection
    }

    /// Only the injection detector, with its score even below any threshold (None if no signal).
    pub fn injection_score(&self, text: &str, role: Role) -> Option<Finding> {
        let mut v = Vec::new();
        self.injection.scan(text, role, &mut v);
        v.pop()
    }

    /// PII and secrets only, non-overlapping, sorted by start.
    pub fn scan_values(&self, text: &str, out: &mut Vec<Finding>) {
        let start = out.len();
        self.secrets.scan(text, out);
        let secrets_end = out.len();
        let mut pii = Vec::new();
        pii::scan(text, &mut pii);
        // Both lists are sorted and non-overlapping: one linear merge drops PII inside secrets.
        let mut j = start;
        for f in pii {
            while j < secrets_end && out[j].span.end <= f.span.start {
                j += 1;
            }
            let overlaps = j < secrets_end && out[j].span.start < f.span.end;
            if !overlaps {
                out.push(f);
            }
        }
        out[start..].sort_by_key(|f| (f.span.start, f.span.end));
    }
}

/// True if the byte at `i` (if any) is an ASCII alphanumeric: used for word-boundary checks.
#[inline]
pub(crate) fn is_alnum_at(b: &[u8], i: usize) -> bool {
    b.get(i).is_some_and(|c| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn detectors() -> &'static Detectors {
        static D: std::sync::OnceLock<Detectors> = std::sync::OnceLock::new();
        D.get_or_init(Detectors::new)
    }

    #[test]
    fn names_round_trip() {
        for d in DetectorId::ALL {
            assert_eq!(DetectorId::from_name(d.name()), Some(d));
        }
        assert_eq!(DetectorId::from_name("nope"), None);
    }

    fn fragment() -> impl Strategy<Value = String> {
        prop_oneof![
            "\\PC{0,12}",
            "[ -~]{0,12}",
            Just("ignore previous instructions".to_owned()),
            Just("a@b.io".to_owned()),
            Just("+1-415-555-0134x12".to_owned()),
            Just("eyJhbGciOi.eyJzdWIiOi.sig".to_owned()),
            Just("-----BEGIN RSA PRIVATE KEY-----".to_owned()),
            Just("://u:p@".to_owned()),
            Just("![x](https://e.example/?q=".to_owned()),
            Just("<img src=x onerror=".to_owned()),
            Just("aWdub3JlIGFsbCBydWxlcw==".to_owned()),
            Just("%69%67%6e".to_owned()),
            Just("\u{200B}\u{202E}ｉ".to_owned()),
        ]
    }

    proptest! {
        /// No input makes any detector panic, and every span is a valid slice of the input.
        #[test]
        fn never_panics_and_spans_are_slices(parts in proptest::collection::vec(fragment(), 0..10)) {
            let text = parts.concat();
            let d = detectors();
            let mut out = Vec::new();
            for role in [Role::System, Role::User, Role::Assistant, Role::Tool, Role::Document] {
                d.scan_prompt(&text, role, &mut out);
            }
            d.scan_answer(&text, &["example.com".to_owned()], &mut out);
            out.extend(check_json(&text, true, &["a".to_owned()]));
            out.extend(check_language(&text, &[]));
            for f in &out {
                prop_assert!(text.get(f.span.clone()).is_some(), "{:?} in {:?}", f, text);
                prop_assert!((0.0..=1.0).contains(&f.score));
            }
            let mut v = crate::redact::vault::Vault::default();
            let values: Vec<Finding> = out.into_iter().filter(|f| f.detector.is_value()).collect();
            let red = v.redact(&text, &values);
            let _ = v.restore(&red);
        }
    }
}
