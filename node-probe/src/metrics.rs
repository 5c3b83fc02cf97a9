//! Prometheus counters (connections by verdict and provider, events lost) and a minimal
//! `GET /metrics` endpoint, so the probe needs no HTTP framework.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

/// Counters shared between the event loop and the metrics endpoint.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    /// (verdict, provider, blocked) → connections.
    connections: BTreeMap<(&'static str, String, bool), u64>,
    lost: u64,
    undecodable: u64,
}

impl Metrics {
    pub fn connection(&self, verdict: &'static str, provider: &str, blocked: bool) {
        let mut c = self.lock();
        *c.connections
            .entry((verdict, provider.to_owned(), blocked))
            .or_default() += 1;
    }

    /// Sets the kernel's running total of events it could not queue.
    pub fn set_lost(&self, total: u64) {
        self.lock().lost = total;
    }

    pub fn undecodable(&self) {
        self.lock().undecodable += 1;
    }

    pub fn lost(&self) -> u64 {
        self.lock().lost
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let c = self.lock();
        let mut out = String::new();
        out.push_str(
            "# HELP sluice_probe_connections_total Connections to AI providers by verdict.\n",
        );
        out.push_str("# TYPE sluice_probe_connections_total counter\n");
        for ((verdict, provider, blocked), n) in &c.connections {
            let _ = writeln!(
                out,
                "sluice_probe_connections_total{{verdict=\"{verdict}\",provider=\"{}\",blocked=\"{blocked}\"}} {n}",
                escape(provider)
            );
        }
        out.push_str("# HELP sluice_probe_events_lost_total Events the kernel could not queue (ring buffer full).\n");
        out.push_str("# TYPE sluice_probe_events_lost_total counter\n");
        let _ = writeln!(out, "sluice_probe_events_lost_total {}", c.lost);
        out.push_str("# HELP sluice_probe_events_undecodable_total Ring-buffer records that did not decode.\n");
        out.push_str("# TYPE sluice_probe_events_undecodable_total counter\n");
        let _ = writeln!(
            out,
            "sluice_probe_events_undecodable_total {}",
            c.undecodable
        );
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        // A panic while holding the lock leaves plain counters: still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serves `GET /metrics` until the task is dropped. Anything else gets 404.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    loop {
        let (mut sock, _) = listener.accept().await?;
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = match sock.read(&mut buf).await {
                Ok(n) => n,
                Err(_) => return,
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let (status, body) = if request.starts_with("GET /metrics ") {
                ("200 OK", metrics.render())
            } else {
                ("404 Not Found", String::from("not found\n"))
            };
            let reply = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(reply.as_bytes()).await;
        });
    }
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
        let text = m.render();
        assert!(text.contains(
            "sluice_probe_connections_total{verdict=\"bypass\",provider=\"openai\",blocked=\"false\"} 2"
        ));
        assert!(text.contains("provider=\"anth\\\"ropic\""));
        assert!(text.contains("sluice_probe_events_lost_total 3"));
    }
}
