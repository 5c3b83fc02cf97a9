//! Runs one side of the detector set `N` times over the benchmark's chat text, for instruction
//! and CPU-time counts that do not depend on machine load:
//! `valgrind --tool=callgrind target/release/examples/scan_loop prompt 16 20` minus the same with
//! 0 iterations (which leaves only `Detectors::new`).

use sluice_filter::detect::Detectors;
use sluice_filter::model::Role;

include!("../benches/support/chat_text.rs");

fn main() {
    let args: Vec<String> = std::env::args().collect();
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
