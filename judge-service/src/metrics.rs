//! Prometheus metrics in the text exposition format, kept in atomics (no registry crate):
//! requests by outcome, a latency histogram, cache hits/misses, backend errors, in-flight.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Histogram bucket bounds in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// gRPC outcomes counted separately.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Ok,
    InvalidArgument,
    DeadlineExceeded,
    ResourceExhausted,
    Unavailable,
}

const OUTCOMES: [&str; 5] = [
    "ok",
    "invalid_argument",
    "deadline_exceeded",
    "resource_exhausted",
    "unavailable",
];

#[derive(Default)]
pub struct Metrics {
    requests: [AtomicU64; 5],
    buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    backend_errors: AtomicU64,
    in_flight: AtomicU64,
}

impl Metrics {
    pub fn request(&self, outcome: Outcome, elapsed: Duration) {
        self.requests[outcome as usize].fetch_add(1, Relaxed);
        let s = elapsed.as_secs_f64();
        for (b, bound) in self.buckets.iter().zip(BUCKETS) {
            if s <= bound {
                b.fetch_add(1, Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_us
            .fetch_add(elapsed.as_micros() as u64, Relaxed);
    }
    pub fn cache_hit(&self) {
        self.cache_hits.fetch_add(1, Relaxed);
    }
    pub fn cache_miss(&self) {
        self.cache_misses.fetch_add(1, Relaxed);
    }
    pub fn backend_error(&self) {
        self.backend_errors.fetch_add(1, Relaxed);
    }
    pub fn in_flight_add(&self) {
        self.in_flight.fetch_add(1, Relaxed);
    }
    pub fn in_flight_sub(&self) {
        self.in_flight.fetch_sub(1, Relaxed);
    }

    /// Renders every metric; `backend` labels the series so dashboards can compare backends.
    pub fn render(&self, backend: &str) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "# HELP sluice_judge_requests_total Classify calls by outcome."
        );
        let _ = writeln!(o, "# TYPE sluice_judge_requests_total counter");
        for (name, c) in OUTCOMES.iter().zip(&self.requests) {
            let _ = writeln!(
                o,
                "sluice_judge_requests_total{{backend=\"{backend}\",outcome=\"{name}\"}} {}",
                c.load(Relaxed)
            );
        }
        let _ = writeln!(
            o,
            "# HELP sluice_judge_request_duration_seconds Classify latency in the service."
        );
        let _ = writeln!(o, "# TYPE sluice_judge_request_duration_seconds histogram");
        for (b, bound) in self.buckets.iter().zip(BUCKETS) {
            let _ = writeln!(
                o,
                "sluice_judge_request_duration_seconds_bucket{{backend=\"{backend}\",le=\"{bound}\"}} {}",
                b.load(Relaxed)
            );
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(o, "sluice_judge_request_duration_seconds_bucket{{backend=\"{backend}\",le=\"+Inf\"}} {count}");
        let _ = writeln!(
            o,
            "sluice_judge_request_duration_seconds_sum{{backend=\"{backend}\"}} {}",
            self.latency_sum_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            o,
            "sluice_judge_request_duration_seconds_count{{backend=\"{backend}\"}} {count}"
        );
        for (name, help, v) in [
            (
                "cache_hits_total",
                "Answers served from the cache.",
                &self.cache_hits,
            ),
            (
                "cache_misses_total",
                "Lookups that went to the backend.",
                &self.cache_misses,
            ),
            (
                "backend_errors_total",
                "Backend failures (timeouts, transport, malformed replies).",
                &self.backend_errors,
            ),
        ] {
            let _ = writeln!(o, "# HELP sluice_judge_{name} {help}");
            let _ = writeln!(o, "# TYPE sluice_judge_{name} counter");
            let _ = writeln!(
                o,
                "sluice_judge_{name}{{backend=\"{backend}\"}} {}",
                v.load(Relaxed)
            );
        }
        let _ = writeln!(
            o,
            "# HELP sluice_judge_in_flight Classify calls being processed."
        );
        let _ = writeln!(o, "# TYPE sluice_judge_in_flight gauge");
        let _ = writeln!(
            o,
            "sluice_judge_in_flight{{backend=\"{backend}\"}} {}",
            self.in_flight.load(Relaxed)
        );
        o
    }
}
