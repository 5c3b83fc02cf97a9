//! Envoy stats defined by the filter (exposed as `wasmcustom.sluice_*` on the admin endpoint).

use std::cell::RefCell;
use std::collections::HashMap;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use crate::policy::Action;
use crate::usage::Usage;

/// Distinct model names given their own token counters per VM; later ones count as `other`,
/// so a caller inventing model names cannot grow Envoy's stats without bound.
const MAX_MODEL_COUNTERS: usize = 64;

pub struct Metrics {
    requests: Option<u32>,
    by_action: [Option<u32>; 4],
    parse_errors: Option<u32>,
    budget_errors: Option<u32>,
    judge_calls: Option<u32>,
    judge_failures: Option<u32>,
    /// Histogram of judge round trips in milliseconds, as Envoy sees them.
    judge_latency: Option<u32>,
    /// Counters named after a provider or a detection, defined the first time they are seen.
    /// Their names come from fixed sets (providers, detectors), never from request data.
    named: RefCell<HashMap<String, Option<u32>>>,
    /// Model names (sanitised) that have token counters.
    models: RefCell<std::collections::HashSet<String>>,
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
            budget_errors: counter("sluice_budget_errors_total"),
            judge_calls: counter("sluice_judge_calls_total"),
            judge_failures: counter("sluice_judge_failures_total"),
            judge_latency: hostcalls::define_metric(
                MetricType::Histogram,
                "sluice_judge_latency_ms",
            )
            .ok(),
            named: RefCell::new(HashMap::new()),
            models: RefCell::new(std::collections::HashSet::new()),
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

    /// Requests by provider and model (`sluice_requests_openai_gpt_4o_mini_total`); model
    /// names share the token counters' cap.
    pub fn model(&self, provider: &str, model: Option<&str>) {
        let model = self.model_label(model);
        self.bump_named(format!("sluice_requests_{provider}_{model}_total"));
    }

    /// Detections by name (`sluice_detection_pii_total`, `sluice_detection_judge_error_total`, ...).
    pub fn detection(&self, name: &str) {
        self.bump_named(format!("sluice_detection_{name}_total"));
    }

    /// Tokens by direction: in total (`sluice_tokens_input_total`), by provider
    /// (`sluice_provider_openai_tokens_output_total`) and by provider and model
    /// (`sluice_tokens_openai_gpt_4o_mini_input_total`); estimated counts are included and
    /// also summed in `sluice_tokens_estimated_total`.
    pub fn tokens(&self, provider: &str, model: Option<&str>, usage: &Usage) {
        let model = self.model_label(model);
        for (direction, n) in [("input", usage.input), ("output", usage.output)] {
            for name in [
                format!("sluice_tokens_{direction}_total"),
                format!("sluice_provider_{provider}_tokens_{direction}_total"),
                format!("sluice_tokens_{provider}_{model}_{direction}_total"),
            ] {
                self.add_named(name, n);
            }
        }
        if usage.estimated {
            self.add_named("sluice_tokens_estimated_total".to_owned(), usage.total());
        }
    }

    /// A model name fit for a stat name (`[a-z0-9_]`), or `other` once the cap is reached.
    fn model_label(&self, model: Option<&str>) -> String {
        let Some(model) = model else {
            return "unknown".to_owned();
        };
        let label: String = model
            .chars()
            .take(64)
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let mut models = self.models.borrow_mut();
        if models.contains(&label) {
            return label;
        }
        if models.len() >= MAX_MODEL_COUNTERS {
            return "other".to_owned();
        }
        models.insert(label.clone());
        label
    }

    fn add_named(&self, name: String, n: u64) {
        let id = *self
            .named
            .borrow_mut()
            .entry(name)
            .or_insert_with_key(|name| counter(name));
        if let (Some(id), true) = (id, n > 0) {
            let _ = hostcalls::increment_metric(id, n as i64);
        }
    }

    /// A judge call that ended: its round trip (none when it could not be sent) and whether
    /// it failed (not sent, timed out, or a gRPC error).
    pub fn judge(&self, latency_ms: Option<u64>, failed: bool) {
        bump(self.judge_calls);
        if failed {
            bump(self.judge_failures);
        }
        if let (Some(id), Some(ms)) = (self.judge_latency, latency_ms) {
            let _ = hostcalls::record_metric(id, ms);
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

    /// Shared data failed while checking or charging a budget (the request went through).
    pub fn budget_error(&self) {
        bump(self.budget_errors);
    }
}
