//! The gRPC service: admission control (bounded concurrency plus a bounded queue, beyond which
//! callers get RESOURCE_EXHAUSTED at once), the per-call deadline from `grpc-timeout`, the
//! cache, metrics, `grpc.health.v1`, and the Prometheus endpoint on its own HTTP port.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status};

use crate::backend::Backend;
use crate::cache::{self, Cache};
use crate::metrics::{Metrics, Outcome};
use crate::proto::judge_server::{Judge, JudgeServer};
use crate::proto::{ClassifyRequest, ClassifyResponse, Label, TextKind, Verdict};
use sluice_text::normalize::for_model;
use sluice_text::truncate;

/// Service limits; the CLI fills these from flags or environment.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Calls processed at once.
    pub max_concurrency: usize,
    /// Calls allowed to wait for a slot; more are refused with RESOURCE_EXHAUSTED.
    pub max_queue: usize,
    /// Deadline when the caller sends no `grpc-timeout`.
    pub default_timeout: Duration,
    /// Longer texts are truncated (the head is judged).
    pub max_text_bytes: usize,
    /// LRU entries; 0 disables the cache.
    pub cache_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_concurrency: 64,
            max_queue: 256,
            default_timeout: Duration::from_secs(5),
            max_text_bytes: 64 * 1024,
            cache_entries: 10_000,
        }
    }
}

/// Parts judged per request at most: each costs a classification.
pub const MAX_PARTS: usize = 16;

pub struct JudgeService {
    backend: Arc<Backend>,
    cache: Cache,
    metrics: Arc<Metrics>,
    admission: Semaphore,
    workers: Semaphore,
    limits: Limits,
}

impl JudgeService {
    pub fn new(backend: Arc<Backend>, limits: Limits, metrics: Arc<Metrics>) -> Self {
        Self {
            cache: Cache::new(limits.cache_entries),
            admission: Semaphore::new(limits.max_concurrency + limits.max_queue),
            workers: Semaphore::new(limits.max_concurrency.max(1)),
            backend,
            metrics,
            limits,
        }
    }

    async fn handle(
        &self,
        req: &ClassifyRequest,
        deadline: Instant,
    ) -> Result<ClassifyResponse, (Outcome, Status)> {
        let pieces = self.pieces(req)?;
        if Instant::now() >= deadline {
            return Err((
                Outcome::DeadlineExceeded,
                Status::deadline_exceeded("deadline expired before the judge started"),
            ));
        }
        // Each piece is cached on its own: the user's turn recurs across a conversation while
        // the tool results around it change.
        let mut judged = Vec::with_capacity(pieces.len());
        let mut missed = Vec::new();
        for (kind, normalised) in &pieces {
            let key = cache::key(*kind as i32, normalised);
            match self.cache.get(key) {
                Some(j) => {
                    self.metrics.cache_hit();
                    judged.push(j);
                }
                None => {
                    self.metrics.cache_miss();
                    missed.push((key, *kind, normalised.as_str()));
                }
            }
        }
        if missed.is_empty() {
            return Ok(response(combine(judged), true));
        }

        let _admitted = self.admission.try_acquire().map_err(|_| {
            (
                Outcome::ResourceExhausted,
                Status::resource_exhausted("judge saturated: queue full"),
            )
        })?;
        let deadline_exceeded = || {
            (
                Outcome::DeadlineExceeded,
                Status::deadline_exceeded("deadline exceeded in the judge"),
            )
        };
        let _slot = tokio::time::timeout_at(deadline.into(), self.workers.acquire())
            .await
            .map_err(|_| deadline_exceeded())?
            .map_err(|_| (Outcome::Unavailable, Status::unavailable("shutting down")))?;
        for (key, kind, normalised) in missed {
            let (result, absorbed) = tokio::time::timeout_at(
                deadline.into(),
                self.backend.classify(normalised, kind, deadline),
            )
            .await
            .map_err(|_| deadline_exceeded())?;
            if absorbed.is_some() {
                self.metrics.backend_error();
            }
            let j = result.map_err(|e| {
                self.metrics.backend_error();
                (Outcome::Unavailable, Status::unavailable(e.to_string()))
            })?;
            // A degraded ensemble answer is not cached: the LLM may be back next time.
            if absorbed.is_none() {
                self.cache.put(key, j.clone());
            }
            judged.push(j);
        }
        Ok(response(combine(judged), false))
    }

    /// The texts to judge, each with its kind, normalised and truncated to `max_text_bytes`:
    /// the request's `parts` when it has them (a prompt judged as a prompt, the tool results
    /// beside it as documents), else its one `text`. Empty parts are skipped; an unknown kind
    /// or more than [`MAX_PARTS`] parts is refused.
    fn pieces(&self, req: &ClassifyRequest) -> Result<Vec<(TextKind, String)>, (Outcome, Status)> {
        if req.parts.len() > MAX_PARTS {
            return Err((
                Outcome::InvalidArgument,
                Status::invalid_argument(format!(
                    "{} parts; at most {MAX_PARTS} are judged",
                    req.parts.len()
                )),
            ));
        }
        let whole = [(req.text.as_str(), req.kind)];
        let raw: Vec<(&str, i32)> = if req.parts.is_empty() {
            whole.to_vec()
        } else {
            req.parts
                .iter()
                .map(|p| (p.text.as_str(), p.kind))
                .collect()
        };
        let mut pieces = Vec::with_capacity(raw.len());
        for (text, kind) in raw {
            let kind = TextKind::try_from(kind).map_err(|_| {
                (
                    Outcome::InvalidArgument,
                    Status::invalid_argument(format!("unknown text kind {kind}")),
                )
            })?;
            let text = truncate(text, self.limits.max_text_bytes);
            if text.is_empty() && !pieces.is_empty() {
                continue;
            }
            pieces.push((kind, for_model(text)));
        }
        if pieces.is_empty() {
            pieces.push((TextKind::Prompt, String::new()));
        }
        Ok(pieces)
    }
}

/// One answer for several pieces: the most severe verdict, the highest score per category,
/// and the model named by the piece that decided.
fn combine(judged: Vec<crate::backend::Judgement>) -> crate::backend::Judgement {
    let severity = |v: Verdict| match v {
        Verdict::Block => 2,
        Verdict::Suspicious => 1,
        _ => 0,
    };
    let mut labels: Vec<(crate::proto::Category, f32)> = Vec::new();
    for j in &judged {
        for &(c, s) in &j.labels {
            match labels.iter_mut().find(|(have, _)| *have == c) {
                Some(entry) => entry.1 = entry.1.max(s),
                None => labels.push((c, s)),
            }
        }
    }
    match judged.into_iter().reduce(|a, b| {
        if severity(b.verdict) > severity(a.verdict) {
            b
        } else {
            a
        }
    }) {
        Some(decided) => crate::backend::Judgement { labels, ..decided },
        // `pieces` never returns an empty list; nothing judged allows nothing in particular.
        None => crate::backend::Judgement {
            labels,
            verdict: Verdict::Allow,
            model: String::new(),
        },
    }
}

fn response(j: crate::backend::Judgement, cached: bool) -> ClassifyResponse {
    ClassifyResponse {
        labels: j
            .labels
            .into_iter()
            .map(|(c, s)| Label {
                category: c as i32,
                score: s,
            })
            .collect(),
        verdict: j.verdict as i32,
        model: j.model,
        latency_us: 0,
        cached,
    }
}

#[tonic::async_trait]
impl Judge for JudgeService {
    async fn classify(
        &self,
        request: Request<ClassifyRequest>,
    ) -> Result<Response<ClassifyResponse>, Status> {
        let start = Instant::now();
        let timeout = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .unwrap_or(self.limits.default_timeout);
        let deadline = start + timeout;
        self.metrics.in_flight_add();
        let result = self.handle(request.get_ref(), deadline).await;
        self.metrics.in_flight_sub();
        let elapsed = start.elapsed();
        match result {
            Ok(mut resp) => {
                self.metrics.request(Outcome::Ok, elapsed);
                resp.latency_us = u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX);
                Ok(Response::new(resp))
            }
            Err((outcome, status)) => {
                self.metrics.request(outcome, elapsed);
                Err(status)
            }
        }
    }
}

/// Parses a gRPC `grpc-timeout` header value: up to 8 digits and a unit (H M S m u n).
pub fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("metrics server: {0}")]
    Metrics(#[from] std::io::Error),
}

/// Serves gRPC on `grpc` and metrics on `metrics` until `shutdown` resolves, then drains
/// in-flight calls (tonic's graceful shutdown) and returns.
pub async fn serve(
    backend: Backend,
    limits: Limits,
    grpc: TcpListener,
    metrics_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let backend = Arc::new(backend);
    let metrics = Arc::new(Metrics::new(backend.name()));
    let service = JudgeService::new(backend.clone(), limits, metrics.clone());

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<JudgeServer<JudgeService>>()
        .await;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [("content-type", crate::metrics::CONTENT_TYPE)],
                    metrics.render(),
                )
            }
        }),
    );
    let mut metrics_stop = stop_rx.clone();
    let metrics_task = tokio::spawn(async move {
        axum::serve(metrics_listener, app)
            .with_graceful_shutdown(async move {
                let _ = metrics_stop.wait_for(|s| *s).await;
            })
            .await
    });

    let incoming = tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true));
    let reporter = health_reporter.clone();
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(JudgeServer::new(service))
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.await;
            // Tell health checkers first so load balancers stop sending new calls.
            reporter
                .set_not_serving::<JudgeServer<JudgeService>>()
                .await;
            let _ = stop_tx.send(true);
        })
        .await?;
    match metrics_task.await {
        Ok(r) => r?,
        Err(e) => return Err(ServeError::Metrics(std::io::Error::other(e))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_grpc_timeouts() {
        let cases = [
            ("100m", Some(Duration::from_millis(100))),
            ("5S", Some(Duration::from_secs(5))),
            ("2M", Some(Duration::from_secs(120))),
            ("1H", Some(Duration::from_secs(3600))),
            ("250u", Some(Duration::from_micros(250))),
            ("7n", Some(Duration::from_nanos(7))),
            ("m", None),
            ("12x", None),
            ("123456789S", None),
            ("-1S", None),
        ];
        for (v, want) in cases {
            assert_eq!(parse_grpc_timeout(v), want, "{v}");
        }
    }
}
