//! `sluice-judge bench`: load on loopback with concurrent tonic clients, bounded in count and
//! time. Two runs per backend: closed loop (N clients back to back: throughput) and open loop
//! at a fixed rate (latency at a given load). Texts are made unique so the cache stays cold.

use std::time::{Duration, Instant};

use tonic::transport::Channel;

use crate::proto::judge_client::JudgeClient;
use crate::proto::{ClassifyRequest, TextKind};

#[derive(Debug, Clone)]
pub struct Stats {
    pub ok: usize,
    pub errors: usize,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
}

impl Stats {
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
}

/// Builds `n` distinct texts of about `bytes` bytes from `seeds`, each with a unique tag.
pub fn texts(seeds: &[String], n: usize, bytes: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let mut t = format!("[{i}] ");
            let mut j = i;
            while t.len() < bytes && !seeds.is_empty() {
                t.push_str(&seeds[j % seeds.len()]);
                t.push(' ');
                j = j.wrapping_mul(31).wrapping_add(7);
            }
            sluice_text::truncate(&t, bytes).to_string()
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn one(c: &mut JudgeClient<Channel>, text: &str) -> Result<Duration, tonic::Status> {
    let start = Instant::now();
    c.classify(ClassifyRequest {
        text: text.to_string(),
        kind: TextKind::Prompt as i32,
        ..Default::default()
    })
    .await?;
    Ok(start.elapsed())
}

/// Closed loop: `clients` tasks, each sending back to back, until `max_requests` or `limit`.
pub async fn closed_loop(
    channel: Channel,
    texts: &[String],
    clients: usize,
    max_requests: usize,
    limit: Duration,
) -> Stats {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let mut c = JudgeClient::new(channel.clone());
        let next = next.clone();
        let texts = texts.to_vec();
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0);
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= max_requests || start.elapsed() >= limit {
                    break;
                }
                match one(&mut c, &texts[i % texts.len()]).await {
                    Ok(d) => lat.push(d),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    collect(tasks, start).await
}

/// Open loop: one request every `1/rate` seconds, each on its own task, for `count` requests.
pub async fn fixed_rate(channel: Channel, texts: &[String], rate: f64, count: usize) -> Stats {
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut tasks = Vec::new();
    for i in 0..count {
        tick.tick().await;
        let mut c = JudgeClient::new(channel.clone());
        let text = texts[i % texts.len()].clone();
        tasks.push(tokio::spawn(async move {
            match one(&mut c, &text).await {
                Ok(d) => (vec![d], 0),
                Err(_) => (vec![], 1),
            }
        }));
    }
    collect(tasks, start).await
}

async fn collect(
    tasks: Vec<tokio::task::JoinHandle<(Vec<Duration>, usize)>>,
    start: Instant,
) -> Stats {
    let (mut lat, mut errors) = (Vec::new(), 0);
    for t in tasks {
        match t.await {
            Ok((l, e)) => {
                lat.extend(l);
                errors += e;
            }
            Err(_) => errors += 1,
        }
    }
    let elapsed = start.elapsed();
    lat.sort();
    Stats {
        ok: lat.len(),
        errors,
        elapsed,
        p50: percentile(&lat, 0.50),
        p99: percentile(&lat, 0.99),
    }
}
