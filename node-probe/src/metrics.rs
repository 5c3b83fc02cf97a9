//! The probe's Prometheus metrics (connections to AI providers by verdict and provider, events
//! lost or undecodable) in a prometheus-client registry, served as OpenMetrics text on
//! `GET /metrics` by axum.

use std::{net::SocketAddr, sync::Arc};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

/// The media type of [`Metrics::render`]'s output.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    verdict: &'static str,
    provider: String,
    blocked: bool,
}

/// Counters shared between the event loop and the metrics endpoint.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    connections: Family<ConnectionLabels, Counter>,
    lost: Counter,
    undecodable: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sluice_probe");
        let (connections, lost, undecodable) = Default::default();
        registry.register(
            "connections",
            "Connections to AI providers by verdict",
            Family::clone(&connections),
        );
        registry.register(
            "events_lost",
            "Events the kernel could not queue (ring buffer full)",
            Counter::clone(&lost),
        );
        registry.register(
            "events_undecodable",
            "Ring-buffer records that did not decode",
            Counter::clone(&undecodable),
        );
        Metrics {
            registry,
            connections,
            lost,
            undecodable,
        }
    }
}

impl Metrics {
    pub fn connection(&self, verdict: &'static str, provider: &str, blocked: bool) {
        let labels = ConnectionLabels {
            verdict,
            provider: provider.to_owned(),
            blocked,
        };
        self.connections.get_or_create(&labels).inc();
    }

    /// Raises the lost-events counter to the kernel's running total (never lowers it).
    pub fn set_lost(&self, total: u64) {
        self.lost.inc_by(total.saturating_sub(self.lost.get()));
    }

    pub fn undecodable(&self) {
        self.undecodable.inc();
    }

    pub fn lost(&self) -> u64 {
        self.lost.get()
    }

    /// Every metric in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Serves `GET /metrics` until the task is dropped; any other path is 404.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = Arc::clone(&metrics);
            async move { ([("content-type", CONTENT_TYPE)], metrics.render()) }
        }),
    );
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_by_label() {
        let m = Metrics::default();
        m.connection("bypass", "openai", false);
        m.connection("bypass", "openai", false);
        m.connection("meshed", "anth\"ropic", false);
        m.set_lost(3);
        m.set_lost(2);
        let text = m.render();
        assert!(text.contains(
            "sluice_probe_connections_total{verdict=\"bypass\",provider=\"openai\",blocked=\"false\"} 2"
        ));
        assert!(text.contains("provider=\"anth\\\"ropic\""), "{text}");
        assert!(text.contains("sluice_probe_events_lost_total 3"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
