//! Runs one side of the detector set `N` times over the benchmark's chat text, for instruction
//! and CPU-time counts that do not depend on machine load:
//! `valgrind --tool=callgrind target/release/examples/scan_loop prompt 16 20` minus the same with
//! 0 iterations (which leaves only `Detectors::new`).

use sluice_filter::detect::Detectors;
use sluice_filter::model::Role;

include!("../benches/support/chat_text.rs");

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("dump-secrets") {
        dump_secrets(args.get(2).map(String::as_str).unwrap_or(""));
        return;
    }
    let side = args.get(1).map(String::as_str).unwrap_or("prompt");
    let kb: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(16);
    let n: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(100);
    let d = Detectors::new();
    let text = chat_text(kb * 1024);
    let secrets = sluice_filter::detect::secrets::SecretDetector::new();
    let mut norm = sluice_filter::detect::normalize::Normalized::default();
    let mut out = Vec::new();
    let mut total = 0usize;
    for _ in 0..n {
        out.clear();
        match side {
            "prompt" => d.scan_prompt(&text, Role::User, &mut out),
            "answer" => d.scan_answer(&text, &mut out),
            "injection" => {
                out.extend(d.injection_score(&text, Role::User));
            }
            "values" => d.scan_values(&text, &mut out),
            "pii" => sluice_filter::detect::pii::scan(&text, &mut out),
            "secrets" => secrets.scan(&text, &mut out),
            "normalize" => {
                sluice_filter::detect::normalize::normalize(&text, &mut norm);
                total += norm.text.len();
            }
            other => {
                eprintln!("unknown side {other:?}: prompt, answer, injection, values, pii, secrets, normalize");
                std::process::exit(2);
            }
        }
        total += out.len();
    }
    println!("{side} {kb}KB x{n}: {total} findings");
}

/// `scan_loop dump-secrets FILE.jsonl`: each row's text and the secrets found in it, one line
/// per row (for looking at what the secrets detector flags or misses).
fn dump_secrets(path: &str) {
    let d = sluice_filter::detect::secrets::SecretDetector::new();
    let Ok(data) = std::fs::read_to_string(path) else {
        eprintln!("cannot read {path:?}");
        std::process::exit(2);
    };
    for line in data.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let text = v["text"].as_str().unwrap_or("");
        let mut out = Vec::new();
        d.scan(text, &mut out);
        let found: Vec<String> = out
            .iter()
            .map(|f| format!("{}={:?}", f.kind, text.get(f.span.clone()).unwrap_or("")))
            .collect();
        println!("{}\t{:?}\t{:?}", found.len(), found, text);
    }
}
