//! What one exchange of `make bench` costs the filter's core, natively (no host calls): the
//! engine's request and answer work plus two audit events, with detectors off and on.
//! `cargo run --release -p sluice-filter --example exchange_cost`

use std::hint::black_box;
use std::time::Instant;

use sluice_filter::audit;
use sluice_filter::config::Config;
use sluice_filter::engine::Engine;

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

fn run(name: &str, config: &str, inspect: bool) {
    let engine = Engine::new(Config::parse(config.as_bytes()).expect("config"));
    let body = chat_body();
    let answer = answer_body(&body);
    let ctx = audit::Context {
        request_id: "0b8f1c9e-2f0e-4a57-9d7b-3c1f4b7a9e11",
        path: "/v1/chat/completions",
        user: None,
        source: Some("127.0.0.1:40000"),
        destination: Some("127.0.0.1:10000"),
        route: None,
        now_ms: 1_795_392_000_000,
    };
    let rounds = 20_000;
    let start = Instant::now();
    for _ in 0..rounds {
        let mut ex = engine.start("/v1/chat/completions").expect("route");
        if inspect {
            black_box(engine.inspect_request(&mut ex, body.as_bytes(), "r"));
        }
        ex.usage.answer_status(200);
        black_box(audit::event(&ex, &ctx, ""));
        if inspect {
            black_box(engine.inspect_answer(&mut ex, answer.as_bytes(), "r"));
        } else {
            engine.observe_answer(&mut ex, answer.as_bytes());
        }
        black_box(audit::event(&ex, &ctx, ""));
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
    run("detectors off", off, false);
    run("detectors on", on, true);
}
