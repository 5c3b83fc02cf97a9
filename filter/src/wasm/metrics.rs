//! Envoy stats defined by the filter (exposed as `wasmcustom.sluice_*` on the admin endpoint).

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use crate::policy::Action;

pub struct Metrics {
    requests: Option<u32>,
    by_action: [Option<u32>; 4],
    parse_errors: Option<u32>,
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
        }
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
