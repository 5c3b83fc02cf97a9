//! What one exchange of `make bench` costs the filter's core, natively (no host calls): every
//! callback of the engine's lifecycle as Envoy makes them, audit events included, with
//! detectors off and on. `cargo run --release -p sluice-filter --example exchange_cost`

use std::hint::black_box;
use std::time::{Duration, Instant};

use sluice_filter::budget::{Store, StoreError};
use sluice_filter::config::Config;
use sluice_filter::engine::{Engine, Host};
use sluice_filter::header_map::Headers;

/// A host with the bodies already at hand and no shared data (the configs set no budget).
struct Bench<'a> {
    request: &'a [u8],
    answer: &'a [u8],
    store: NoStore,
}

struct NoStore;

impl Store for NoStore {
    fn get(&mut self, _: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        Err(StoreError::Host("no shared data".into()))
    }
    fn set(&mut self, _: &str, _: &[u8], _: u32) -> Result<bool, StoreError> {
        Err(StoreError::Host("no shared data".into()))
    }
}

impl Host for Bench<'_> {
    type Store = NoStore;
    fn now(&mut self) -> Duration {
        Duration::from_millis(1_795_392_000_000)
    }
    fn stream_id(&self) -> u32 {
        1
    }
    fn property(&mut self, _: &[&str]) -> Option<String> {
        Some("127.0.0.1:40000".into())
    }
    fn store(&mut self) -> &mut NoStore {
        &mut self.store
    }
    fn request_body(&mut self, _: usize) -> Option<Vec<u8>> {
        Some(self.request.to_vec())
    }
    fn answer_body(&mut self, _: usize) -> Option<Vec<u8>> {
        Some(self.answer.to_vec())
    }
    fn record_audit(&mut self, event: &str) {
        black_box(event);
    }
}

fn headers(pairs: &[(&str, &str)]) -> Headers {
    let pairs: Vec<(String, Vec<u8>)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    Headers::from(pairs)
}

fn chat_body() -> String {
    let filler =
        "Please summarise the quarterly report for the team, focusing on revenue, costs and \
                  the hiring plan for next year. ";
    let text: String = filler.repeat(2048 / filler.len() + 1)[..2048 - 120].to_owned();
    serde_json::json!({"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": text}]})
    .to_string()
}

fn answer_body(prompt: &str) -> String {
    serde_json::json!({"choices": [{"finish_reason": "stop", "index": 0, "logprobs": null,
        "message": {"content": format!("You said: {prompt}"), "refusal": null, "role": "assistant"}}],
        "created": 1, "id": "chatcmpl-fake-1", "model": "gpt-4o-mini", "object": "chat.completion",
        "usage": {"completion_tokens": 4, "prompt_tokens": 2, "total_tokens": 6}})
    .to_string()
}

fn run(name: &str, config: &str) {
    let engine = Engine::new(Config::parse(config.as_bytes()).expect("config"));
    let body = chat_body();
    let answer = answer_body(&body);
    let request = headers(&[
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        (":authority", "127.0.0.1:10000"),
        ("content-type", "application/json"),
        ("x-request-id", "0b8f1c9e-2f0e-4a57-9d7b-3c1f4b7a9e11"),
    ]);
    let response = headers(&[(":status", "200"), ("content-type", "application/json")]);
    let mut host = Bench {
        request: body.as_bytes(),
        answer: answer.as_bytes(),
        store: NoStore,
    };
    let rounds = 20_000;
    let start = Instant::now();
    for _ in 0..rounds {
        let (mut ex, _, _) = engine
            .request_headers(&request, false, &mut host)
            .expect("route");
        black_box(engine.request_body(&mut ex, body.len(), true, &mut host));
        black_box(engine.response_headers(&mut ex, || response.clone(), false, &mut host));
        black_box(engine.response_body(&mut ex, answer.len(), true, &mut host));
        black_box(engine.finish(&mut ex, &mut host));
    }
    let per = start.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
    println!("{name:<16} {per:>8.2} us per exchange");
}

fn main() {
    let off = r#"{"detectors":{"prompt_injection":{"action":"off"},"pii":{"action":"off"},"secrets":{"action":"off"},
        "output_script":{"action":"off"},"output_exfiltration":{"action":"off"},"output_refusal":{"action":"off"}}}"#;
    let on = r#"{"detectors":{"prompt_injection":{"action":"block","threshold":0.5},"pii":{"action":"redact"},
        "secrets":{"action":"redact"},"output_script":{"action":"alert"},"output_exfiltration":{"action":"alert"},
        "output_refusal":{"action":"alert"}}}"#;
    run("detectors off", off);
    run("detectors on", on);
}
