//! Throughput of the full detector set (injection, PII, secrets on the prompt side; output
//! checks, PII and secrets on the answer side) on realistic chat texts of 2, 16 and 128 KB, and
//! on 16 KB prompts in French, Russian and Chinese.

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use sluice_filter::detect::{Detectors, Finding};
use sluice_filter::model::Role;

include!("support/chat_text.rs");

/// One benchmark of `scan` over `text`, reported in bytes per second.
fn scan_bench(
    g: &mut BenchmarkGroup<'_, WallTime>,
    id: BenchmarkId,
    text: &str,
    scan: impl Fn(&str, &mut Vec<Finding>),
) {
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_with_input(id, text, |b, t| {
        let mut out = Vec::new();
        b.iter(|| {
            out.clear();
            scan(t, &mut out);
            out.len()
        })
    });
}

fn bench(c: &mut Criterion) {
    let d = Detectors::new();
    let prompt = |t: &str, out: &mut Vec<Finding>| d.scan_prompt(t, Role::User, out);
    let answer = |t: &str, out: &mut Vec<Finding>| d.scan_answer(t, &[], out);
    let mut g = c.benchmark_group("full_detector_set");
    for kb in [2usize, 16, 128] {
        let text = chat_text(kb * 1024);
        scan_bench(
            &mut g,
            BenchmarkId::new("prompt", format!("{kb}KB")),
            &text,
            prompt,
        );
        scan_bench(
            &mut g,
            BenchmarkId::new("answer", format!("{kb}KB")),
            &text,
            answer,
        );
    }
    // Prompts in scripts that take the general (non-ASCII) normalisation path.
    for lang in ["fr", "ru", "zh"] {
        let text = language_text(lang, 16 * 1024);
        let id = BenchmarkId::new("prompt", format!("16KB {lang}"));
        scan_bench(&mut g, id, &text, prompt);
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
