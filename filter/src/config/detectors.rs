//! The `detectors` entries of the configuration (globally and per route): each detector's
//! action and threshold, and the settings only some detectors take (answer format, languages,
//! trusted hosts), checked where they are given.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::ConfigError;
use crate::detect::{DetectorId, Language};
use crate::policy::{DetectorPolicy, Mode, Policy};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDetector {
    action: Mode,
    #[serde(default)]
    threshold: Option<f32>,
    /// `output_json`: accept one fenced code block around the value (default true).
    #[serde(default)]
    fence: Option<bool>,
    /// `output_json`: keys the top-level object must have.
    #[serde(default)]
    required_keys: Option<Vec<String>>,
    /// `output_language`: allowed language codes.
    #[serde(default)]
    languages: Option<Vec<String>>,
    /// `output_exfiltration`: hosts links and images may point to (subdomains included).
    #[serde(default)]
    allowed_hosts: Option<Vec<String>>,
}

impl RawDetector {
    /// The settings only some detectors take, named as in the configuration, if given.
    fn settings(&self) -> [(&'static str, DetectorId, bool); 4] {
        [
            ("fence", DetectorId::OutputJson, self.fence.is_some()),
            (
                "required_keys",
                DetectorId::OutputJson,
                self.required_keys.is_some(),
            ),
            (
                "languages",
                DetectorId::OutputLanguage,
                self.languages.is_some(),
            ),
            (
                "allowed_hosts",
                DetectorId::OutputExfiltration,
                self.allowed_hosts.is_some(),
            ),
        ]
    }
}

pub(super) fn apply_detectors(
    mut policy: Policy,
    raw: &BTreeMap<String, RawDetector>,
    at: &str,
) -> Result<Policy, ConfigError> {
    for (name, d) in raw {
        let field = format!("{at}.{name}");
        let id = DetectorId::from_name(name).ok_or_else(|| {
            let known: Vec<&str> = DetectorId::ALL.iter().map(|d| d.name()).collect();
            ConfigError::new(
                &field,
                format!("unknown detector; known: {}", known.join(", ")),
            )
        })?;
        let threshold = d.threshold.unwrap_or(policy.get(id).threshold);
        if !(0.0..=1.0).contains(&threshold) {
            return Err(ConfigError::new(
                format!("{field}.threshold"),
                format!("{threshold} is outside 0.0..=1.0"),
            ));
        }
        for (key, owner, given) in d.settings() {
            if given && owner != id {
                return Err(ConfigError::new(
                    format!("{field}.{key}"),
                    format!("only {} takes `{key}`", owner.name()),
                ));
            }
        }
        let whole_text = matches!(id, DetectorId::OutputJson | DetectorId::OutputLanguage);
        if whole_text && d.action == Mode::Redact {
            return Err(ConfigError::new(
                format!("{field}.action"),
                "a check of the whole answer cannot redact; use alert or block",
            ));
        }
        let expect = policy.expectations_mut();
        if let Some(fence) = d.fence {
            expect.json_fence = fence;
        }
        if let Some(keys) = &d.required_keys {
            expect.json_required_keys = keys.clone();
        }
        if let Some(codes) = &d.languages {
            expect.languages = languages(codes, &format!("{field}.languages"))?;
        }
        if let Some(hosts) = &d.allowed_hosts {
            expect.allowed_hosts = allowed_hosts(hosts, &format!("{field}.allowed_hosts"))?;
        }
        if id == DetectorId::OutputLanguage
            && d.action != Mode::Off
            && policy.expectations().languages.is_empty()
        {
            return Err(ConfigError::new(
                format!("{field}.languages"),
                "output_language needs the languages answers may be in (e.g. [\"en\", \"de\"])",
            ));
        }
        policy.set(
            id,
            DetectorPolicy {
                mode: d.action,
                threshold,
            },
        );
    }
    Ok(policy)
}

fn languages(codes: &[String], at: &str) -> Result<Vec<Language>, ConfigError> {
    codes
        .iter()
        .map(|c| {
            Language::from_code(&c.to_ascii_lowercase()).ok_or_else(|| {
                let known: Vec<&str> = Language::KNOWN.iter().map(|l| l.code()).collect();
                ConfigError::new(
                    at,
                    format!("unknown language {c:?}; known: {}", known.join(", ")),
                )
            })
        })
        .collect()
}

/// Host names as the exfiltration check compares them: lower case, no scheme, port or path.
fn allowed_hosts(hosts: &[String], at: &str) -> Result<Vec<String>, ConfigError> {
    hosts
        .iter()
        .map(|h| {
            let host = h.trim().trim_end_matches('.').to_ascii_lowercase();
            let plain = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if plain {
                Ok(host)
            } else {
                Err(ConfigError::new(
                    at,
                    format!("{h:?} is not a host name (no scheme, port, path or wildcard)"),
                ))
            }
        })
        .collect()
}
