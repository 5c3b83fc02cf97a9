//! Envoy stats defined by the filter (exposed as `wasmcustom.sluice_*` on the admin endpoint).
//! Provider, model, action, detection and direction are parts of the stat names, in fixed
//! places, so that the `stats_tags` in the shipped Envoy configs turn them into Prometheus
//! labels (`sluice_model_requests_total{provider="openai",model="gpt_4o_mini"}`).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use crate::engine::Metric;
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
    /// `sluice_tokens_{input,output}_total` and `sluice_tokens_estimated_total`.
    tokens: [Option<u32>; 2],
    tokens_estimated: Option<u32>,
    /// Counters named after a provider, defined the first time it is seen.
    providers: RefCell<HashMap<&'static str, Named>>,
    /// Counters per provider and model label (sanitised, capped), defined when first seen.
    models: RefCell<HashMap<(&'static str, String), Named>>,
    /// Model labels (sanitised) that have counters, for the cap.
    labels: RefCell<HashSet<String>>,
    /// Detection counters, by detection name.
    detections: RefCell<HashMap<&'static str, Option<u32>>>,
}

/// The request and token counters of one provider, or of one provider and model. Names come
/// from fixed sets (providers, detectors) or from sanitised, capped model names; every id is
/// defined once and then only incremented, so a request costs no name formatting.
#[derive(Clone, Copy)]
struct Named {
    requests: Option<u32>,
    /// Input and output tokens.
    tokens: [Option<u32>; 2],
}

fn counter(name: &str) -> Option<u32> {
    hostcalls::define_metric(MetricType::Counter, name).ok()
}

fn bump(id: Option<u32>) {
    add(id, 1);
}

fn add(id: Option<u32>, n: u64) {
    if let (Some(id), true) = (id, n > 0) {
        let _ = hostcalls::increment_metric(id, n as i64);
    }
}

const DIRECTIONS: [&str; 2] = ["input", "output"];

impl Metrics {
    pub fn define() -> Metrics {
        Metrics {
            requests: counter("sluice_requests_total"),
            by_action: Action::ALL.map(|a| counter(&format!("sluice_action_{}_total", a.name()))),
            parse_errors: counter("sluice_parse_errors_total"),
            budget_errors: counter("sluice_budget_errors_total"),
            judge_calls: counter("sluice_judge_calls_total"),
            judge_failures: counter("sluice_judge_failures_total"),
            judge_latency: hostcalls::define_metric(
                MetricType::Histogram,
                "sluice_judge_latency_ms",
            )
            .ok(),
            tokens: DIRECTIONS.map(|d| counter(&format!("sluice_tokens_{d}_total"))),
            tokens_estimated: counter("sluice_tokens_estimated_total"),
            providers: RefCell::new(HashMap::new()),
            models: RefCell::new(HashMap::new()),
            labels: RefCell::new(HashSet::new()),
            detections: RefCell::new(HashMap::new()),
        }
    }

    /// A provider's counters: `sluice_provider_openai_requests_total`,
    /// `sluice_provider_openai_tokens_{input,output}_total`.
    fn provider_counters(&self, provider: &'static str) -> Named {
        *self
            .providers
            .borrow_mut()
            .entry(provider)
            .or_insert_with(|| Named {
                requests: counter(&format!("sluice_provider_{provider}_requests_total")),
                tokens: DIRECTIONS
                    .map(|d| counter(&format!("sluice_provider_{provider}_tokens_{d}_total"))),
            })
    }

    /// A provider and model's counters: `sluice_model_requests_openai_gpt_4o_mini_total`,
    /// `sluice_model_tokens_openai_gpt_4o_mini_{input,output}_total`.
    fn model_counters(&self, provider: &'static str, model: Option<&str>) -> Named {
        let label = self.model_label(model);
        *self
            .models
            .borrow_mut()
            .entry((provider, label))
            .or_insert_with_key(|(_, model)| Named {
                requests: counter(&format!("sluice_model_requests_{provider}_{model}_total")),
                tokens: DIRECTIONS
                    .map(|d| counter(&format!("sluice_model_tokens_{provider}_{model}_{d}_total"))),
            })
    }

    /// Counts a finished exchange: requests by provider and by provider and model, and its
    /// tokens by direction in total, by provider and by provider and model; estimated counts
    /// are included and also summed in `sluice_tokens_estimated_total`.
    fn exchange(&self, provider: &'static str, model: Option<&str>, usage: Option<&Usage>) {
        let by_provider = self.provider_counters(provider);
        let by_model = self.model_counters(provider, model);
        bump(by_provider.requests);
        bump(by_model.requests);
        let Some(usage) = usage else {
            return;
        };
        for (i, n) in [usage.input, usage.output].into_iter().enumerate() {
            add(self.tokens[i], n);
            add(by_provider.tokens[i], n);
            add(by_model.tokens[i], n);
        }
        if usage.estimated {
            add(self.tokens_estimated, usage.total());
        }
    }

    /// Detections by name (`sluice_detection_pii_total`, `sluice_detection_judge_error_total`, ...).
    fn detection(&self, name: &'static str) {
        let id = *self
            .detections
            .borrow_mut()
            .entry(name)
            .or_insert_with(|| counter(&format!("sluice_detection_{name}_total")));
        bump(id);
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
        let mut labels = self.labels.borrow_mut();
        if labels.contains(&label) {
            return label;
        }
        if labels.len() >= MAX_MODEL_COUNTERS {
            return "other".to_owned();
        }
        labels.insert(label.clone());
        label
    }

    /// Counts one of an exchange's metric events.
    pub fn emit(&self, metric: &Metric) {
        match metric {
            Metric::Request => bump(self.requests),
            Metric::Action(action) => bump(self.by_action[*action as usize]),
            Metric::Exchange {
                provider,
                model,
                usage,
            } => self.exchange(provider, model.as_deref(), usage.as_ref()),
            Metric::Detection(name) => self.detection(name),
            Metric::ParseError => bump(self.parse_errors),
            Metric::BudgetError => bump(self.budget_errors),
            Metric::Judge { latency_ms, failed } => {
                bump(self.judge_calls);
                if *failed {
                    bump(self.judge_failures);
                }
                if let (Some(id), Some(ms)) = (self.judge_latency, latency_ms) {
                    let _ = hostcalls::record_metric(id, *ms);
                }
            }
        }
    }
}
