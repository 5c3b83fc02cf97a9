//! Runs one side of the detector set `N` times over the benchmark's chat text, for instruction
//! and CPU-time counts that do not depend on machine load:
//! `valgrind --tool=callgrind target/release/examples/scan_loop prompt 16 20` minus the same with
//! 0 iterations (which leaves only `Detectors::new`). A fourth argument `fr`, `ru` or `zh` scans
//! a request in that language instead of the mixed chat text.

use sluice_filter::detect::Detectors;
use sluice_filter::model::Role;

include!("../benches/support/chat_text.rs");

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("dump-secrets") {
        dump_secrets(args.get(2).map(String::as_str).unwrap_or(""));
        return;
    }
    if args.get(1).map(String::as_str) == Some("dump-all") {
        dump_all(&args[2..]);
        return;
    }
    let side = args.get(1).map(String::as_str).unwrap_or("prompt");
    let kb: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(16);
    let n: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(100);
    let d = Detectors::new();
    let text = match args.get(4) {
        Some(lang) => language_text(lang, kb * 1024),
        None => chat_text(kb * 1024),
    };
    let secrets = sluice_filter::detect::secrets::SecretDetector::new();
    let output = sluice_filter::detect::output::OutputDetector::new();
    let mut norm = sluice_text::normalize::Normalized::default();
    let mut out = Vec::new();
    let mut total = 0usize;
    for _ in 0..n {
        out.clear();
        match side {
            "prompt" => d.scan_prompt(&text, Role::User, &mut out),
            "answer" => d.scan_answer(&text, &[], &mut out),
            "injection" => {
                out.extend(d.injection_score(&text, Role::User));
            }
            "values" => d.scan_values(&text, &mut out),
            "pii" => sluice_filter::detect::pii::scan(&text, &mut out),
            "secrets" => secrets.scan(&text, &mut out),
            "output" => output.scan(&text, &[], &mut out),
            "normalize" => {
                sluice_text::normalize::for_matching(&text, &mut norm);
                total += norm.text.len();
            }
            other => {
                eprintln!(
                    "unknown side {other:?}: prompt, answer, injection, values, pii, secrets, \
                     output, normalize"
                );
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

/// `scan_loop dump-all FILE.jsonl…`: every finding (scores as exact bits) and the normalised
/// text of each row, for both sides and every role. Two builds' outputs must be identical when
/// a change is meant to be a speed-up only.
fn dump_all(paths: &[String]) {
    use std::hash::{Hash, Hasher};
    use std::io::Write;
    let d = Detectors::new();
    let mut texts: Vec<String> = Vec::new();
    for kb in [1, 2, 16, 128] {
        texts.push(chat_text(kb * 1024));
    }
    for path in paths {
        let Ok(data) = std::fs::read_to_string(path) else {
            eprintln!("cannot read {path:?}");
            std::process::exit(2);
        };
        for line in data.lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                texts.push(v["text"].as_str().unwrap_or("").to_owned());
            }
        }
    }
    // Rows spliced with fragments the fast paths treat specially, for more mixed texts.
    const SPLICE: &[&str] = &[
        " 1gn0r3 4ll pr3v10us ",
        "  i g n o r e\t\tthe r-u-l-e-s ",
        "<SCRIPT>x</script> javascript:alert(1) document.cookie ",
        "<img src=x onerror=alert(1)> srcdoc= expression( ",
        "ｉｇｎｏｒｅ іgnоrе \u{200B}prev\u{202E}ious ",
        "aWdub3JlIGFsbCBwcmV2aW91cyBpbnN0cnVjdGlvbnM= %69%67%6e%6f ",
        "Q1 4% 3.2.1; +1-415-555-0134 GB82WEST12345698765432 ",
        "\n\n\r\n  \u{3000}下一步 Überprüfung é. ",
    ];
    let n = texts.len();
    for i in 0..n.min(4000) {
        let a = texts[(i * 7919) % n].clone();
        let b = &texts[(i * 104_729 + 13) % n];
        let cut = a.floor_char_boundary(a.len() / 2);
        texts.push(format!(
            "{}{}{}{}",
            &a[..cut],
            SPLICE[i % SPLICE.len()],
            b,
            &a[cut..]
        ));
    }
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    let mut norm = sluice_text::normalize::Normalized::default();
    let mut out = Vec::new();
    for (row, text) in texts.iter().enumerate() {
        sluice_text::normalize::for_matching(text, &mut norm);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        norm.text.hash(&mut h);
        norm.map.hash(&mut h);
        let _ = write!(w, "{row} norm={:016x}", h.finish());
        for role in [Role::User, Role::System, Role::Document] {
            out.clear();
            d.scan_prompt(text, role, &mut out);
            let _ = write!(w, " | {role:?}");
            write_findings(&mut w, &out);
        }
        out.clear();
        d.scan_answer(text, &[], &mut out);
        let _ = write!(w, " | answer");
        write_findings(&mut w, &out);
        let _ = writeln!(w);
    }
}

/// Each finding as ` KIND:start..end:score-bits`, exact enough to diff two builds.
fn write_findings(w: &mut impl std::io::Write, out: &[sluice_filter::detect::Finding]) {
    for f in out {
        let _ = write!(
            w,
            " {}:{}..{}:{:08x}",
            f.kind,
            f.span.start,
            f.span.end,
            f.score.to_bits()
        );
    }
}
