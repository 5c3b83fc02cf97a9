//! Envoy stats defined by the filter (exposed as `wasmcustom.sluice_*` on the admin endpoint).

use std::cell::RefCell;
use std::collections::HashMap;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use crate::policy::Action;

pub struct Metrics {
    requests: Option<u32>,
    by_action: [Option<u32>; 4],
    parse_errors: Option<u32>,
    /// Counters named after a provider or a detection, defined the first time they are seen.
    /// Their names come from fixed sets (providers, detectors), never from request data.
    named: RefCell<HashMap<String, Option<u32>>>,
}

fn counter(name: &str) -> Option<u32> {
    hostcalls::define_metric(MetricType::Counter, name).ok()
}

fn bump(id: Option<u32>) {
    if let Some(id) = id {
        let _ = hostcalls::increment_metric(id, 1);
    }
}

impl Metrics {
    pub fn define() -> Metrics {
        Metrics {
            requests: counter("sluice_requests_total"),
            by_action: [
                counter("sluice_action_allow_total"),
                counter("sluice_action_alert_total"),
                counter("sluice_action_redact_total"),
                counter("sluice_action_block_total"),
            ],
            parse_errors: counter("sluice_parse_errors_total"),
            named: RefCell::new(HashMap::new()),
        }
    }

    fn bump_named(&self, name: String) {
        let id = *self
            .named
            .borrow_mut()
            .entry(name)
            .or_insert_with_key(|name| counter(name));
        bump(id);
    }

    /// Requests by provider (`sluice_provider_openai_requests_total`, ...).
    pub fn provider(&self, provider: &str) {
        self.bump_named(format!("sluice_provider_{provider}_requests_total"));
    }

    /// Detections by name (`sluice_detection_pii_total`, `sluice_detection_judge_error_total`, ...).
    pub fn detection(&self, name: &str) {
        self.bump_named(format!("sluice_detection_{name}_total"));
    }

    pub fn request(&self) {
        bump(self.requests);
    }

    pub fn action(&self, action: Action) {
        let i = match action {
            Action::Allow => 0,
            Action::Alert => 1,
            Action::Redact => 2,
            Action::Block => 3,
        };
        bump(self.by_action[i]);
    }

    pub fn parse_error(&self) {
        bump(self.parse_errors);
    }
}
