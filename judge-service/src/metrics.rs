//! The service's Prometheus metrics, kept in a prometheus-client registry and rendered in the
//! OpenMetrics text format: Classify calls by outcome, their latency, cache hits and misses,
//! backend errors and calls in flight. Every series carries the backend's name, so dashboards
//! can compare backends.

use std::borrow::Cow;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The media type of [`Metrics::render`]'s output, for the `content-type` header.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Histogram bucket bounds in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// gRPC outcomes counted separately.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    InvalidArgument,
    DeadlineExceeded,
    ResourceExhausted,
    Unavailable,
}

impl Outcome {
    /// The label value: the gRPC status name in snake case.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::InvalidArgument => "invalid_argument",
            Outcome::DeadlineExceeded => "deadline_exceeded",
            Outcome::ResourceExhausted => "resource_exhausted",
            Outcome::Unavailable => "unavailable",
        }
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: Outcome,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<OutcomeLabel, Counter>,
    latency: Histogram,
    cache_hits: Counter,
    cache_misses: Counter,
    backend_errors: Counter,
    in_flight: Gauge,
}

impl Metrics {
    /// Registers every metric, labelled `backend="{backend}"`.
    pub fn new(backend: &'static str) -> Metrics {
        let label = (Cow::Borrowed("backend"), Cow::Borrowed(backend));
        let mut registry = Registry::with_prefix_and_labels("sluice_judge", [label].into_iter());
        let m = Metrics {
            requests: Family::default(),
            latency: Histogram::new(BUCKETS),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            backend_errors: Counter::default(),
            in_flight: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("requests", "Classify calls by outcome", m.requests.clone());
        registry.register(
            "request_duration_seconds",
            "Classify latency in the service",
            m.latency.clone(),
        );
        registry.register(
            "cache_hits",
            "Answers served from the cache",
            m.cache_hits.clone(),
        );
        registry.register(
            "cache_misses",
            "Lookups that went to the backend",
            m.cache_misses.clone(),
        );
        registry.register(
            "backend_errors",
            "Backend failures (timeouts, transport, malformed replies)",
            m.backend_errors.clone(),
        );
        registry.register(
            "in_flight",
            "Classify calls being processed",
            m.in_flight.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn request(&self, outcome: Outcome, elapsed: Duration) {
        self.requests.get_or_create(&OutcomeLabel { outcome }).inc();
        self.latency.observe(elapsed.as_secs_f64());
    }
    pub fn cache_hit(&self) {
        self.cache_hits.inc();
    }
    pub fn cache_miss(&self) {
        self.cache_misses.inc();
    }
    pub fn backend_error(&self) {
        self.backend_errors.inc();
    }
    pub fn in_flight_add(&self) {
        self.in_flight.inc();
    }
    pub fn in_flight_sub(&self) {
        self.in_flight.dec();
    }

    /// Every metric in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series_with_the_backend_label() {
        let m = Metrics::new("embedded");
        m.request(Outcome::Ok, Duration::from_millis(3));
        m.request(Outcome::InvalidArgument, Duration::from_millis(30));
        m.cache_hit();
        m.in_flight_add();
        let text = m.render();
        for want in [
            "sluice_judge_requests_total{backend=\"embedded\",outcome=\"ok\"} 1",
            "sluice_judge_requests_total{backend=\"embedded\",outcome=\"invalid_argument\"} 1",
            "sluice_judge_request_duration_seconds_count{backend=\"embedded\"} 2",
            "sluice_judge_request_duration_seconds_bucket{backend=\"embedded\",le=\"0.005\"} 1",
            "sluice_judge_cache_hits_total{backend=\"embedded\"} 1",
            "sluice_judge_cache_misses_total{backend=\"embedded\"} 0",
            "sluice_judge_in_flight{backend=\"embedded\"} 1",
            "# EOF",
        ] {
            assert!(text.contains(want), "{want:?} missing from\n{text}");
        }
    }
}
