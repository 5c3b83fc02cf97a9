//! Policy: what to do about a detection. Each detector has an action and a score threshold,
//! set globally and overridable per route; the strongest action among the findings wins.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::detect::{DetectorId, Language};

/// What the filter does with an exchange. Ordered by strength, so `max` combines verdicts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Allow,
    Alert,
    Redact,
    Block,
}

impl Action {
    /// Every action, weakest first (`action as usize` indexes this).
    pub const ALL: [Action; 4] = [Action::Allow, Action::Alert, Action::Redact, Action::Block];

    pub fn name(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Alert => "alert",
            Action::Redact => "redact",
            Action::Block => "block",
        }
    }
}

/// A detector's setting in the configuration. `off` disables it (it is not even run).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Off,
    Alert,
    Redact,
    Block,
}

impl Mode {
    /// The action a finding at or above threshold calls for; `None` when the detector is off.
    pub fn action(self) -> Option<Action> {
        match self {
            Mode::Off => None,
            Mode::Alert => Some(Action::Alert),
            Mode::Redact => Some(Action::Redact),
            Mode::Block => Some(Action::Block),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DetectorPolicy {
    pub mode: Mode,
    /// Findings scoring below this are ignored.
    pub threshold: f32,
}

/// The settings of every detector, complete: what the configuration leaves out keeps its default.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    detectors: BTreeMap<DetectorId, DetectorPolicy>,
    expect: AnswerExpectations,
}

/// What answers must look like, for the output checks that need to be told: the format and
/// language checks run only with an expectation, the exfiltration check knows trusted hosts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AnswerExpectations {
    /// `output_json`: one fenced code block (```` ```json … ``` ````) around the value is accepted.
    pub json_fence: bool,
    /// `output_json`: keys the top-level object must have.
    pub json_required_keys: Vec<String>,
    /// `output_language`: the languages an answer may be in.
    pub languages: Vec<Language>,
    /// `output_exfiltration`: hosts (and their subdomains) that links and images may point to,
    /// lower case.
    pub allowed_hosts: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        let detectors = DetectorId::ALL
            .into_iter()
            .map(|id| (id, default_for(id)))
            .collect();
        Policy {
            detectors,
            expect: AnswerExpectations {
                json_fence: true,
                ..AnswerExpectations::default()
            },
        }
    }
}

/// Defaults a security team would pick on day one: stop injections, keep personal data and
/// secrets away from the provider, and report unsafe output without breaking answers.
fn default_for(id: DetectorId) -> DetectorPolicy {
    let mode = match id {
        DetectorId::PromptInjection => Mode::Block,
        DetectorId::Pii | DetectorId::Secrets => Mode::Redact,
        // They need to be told what answers must look like (`AnswerExpectations`).
        DetectorId::OutputJson | DetectorId::OutputLanguage => Mode::Off,
        _ => Mode::Alert,
    };
    DetectorPolicy {
        mode,
        threshold: 0.5,
    }
}

impl Policy {
    pub fn get(&self, id: DetectorId) -> DetectorPolicy {
        self.detectors
            .get(&id)
            .copied()
            .unwrap_or_else(|| default_for(id))
    }

    pub fn set(&mut self, id: DetectorId, policy: DetectorPolicy) {
        self.detectors.insert(id, policy);
    }

    /// The action one finding calls for, if its detector is on and the score reaches threshold.
    pub fn action_for(&self, id: DetectorId, score: f32) -> Option<Action> {
        let p = self.get(id);
        if score >= p.threshold {
            p.mode.action()
        } else {
            None
        }
    }

    pub fn is_enabled(&self, id: DetectorId) -> bool {
        self.get(id).mode != Mode::Off
    }

    /// Whether the detector's findings are redacted (streams hold back a value in progress).
    pub fn redacts(&self, id: DetectorId) -> bool {
        self.get(id).mode == Mode::Redact
    }

    pub fn expectations(&self) -> &AnswerExpectations {
        &self.expect
    }

    pub fn expectations_mut(&mut self) -> &mut AnswerExpectations {
        &mut self.expect
    }

    /// Whether any of `ids` is switched on: when none is, the texts they scan need no parsing.
    pub fn any_enabled(&self, ids: &[DetectorId]) -> bool {
        ids.iter().any(|id| self.is_enabled(*id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strongest_action_wins() {
        let strongest = [Action::Alert, Action::Block, Action::Redact]
            .into_iter()
            .max();
        assert_eq!(strongest, Some(Action::Block));
        assert!(Action::Redact > Action::Alert && Action::Alert > Action::Allow);
    }

    #[test]
    fn threshold_and_off() {
        let mut p = Policy::default();
        p.set(
            DetectorId::Pii,
            DetectorPolicy {
                mode: Mode::Alert,
                threshold: 0.8,
            },
        );
        assert_eq!(p.action_for(DetectorId::Pii, 0.79), None);
        assert_eq!(p.action_for(DetectorId::Pii, 0.8), Some(Action::Alert));
        p.set(
            DetectorId::Pii,
            DetectorPolicy {
                mode: Mode::Off,
                threshold: 0.0,
            },
        );
        assert_eq!(p.action_for(DetectorId::Pii, 1.0), None);
        assert!(!p.is_enabled(DetectorId::Pii));
    }
}
