//! Throughput of the full detector set (injection, PII, secrets on the prompt side; output
//! checks, PII and secrets on the answer side) on realistic chat texts of 2, 16 and 128 KB, and
//! on 16 KB prompts in French, Russian and Chinese.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice_filter::detect::Detectors;
use sluice_filter::model::Role;

include!("support/chat_text.rs");

fn bench(c: &mut Criterion) {
    let d = Detectors::new();
    let mut g = c.benchmark_group("full_detector_set");
    for kb in [2usize, 16, 128] {
        let text = chat_text(kb * 1024);
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("prompt", format!("{kb}KB")),
            &text,
            |b, t| {
                let mut out = Vec::new();
                b.iter(|| {
                    out.clear();
                    d.scan_prompt(t, Role::User, &mut out);
                    out.len()
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("answer", format!("{kb}KB")),
            &text,
            |b, t| {
                let mut out = Vec::new();
                b.iter(|| {
                    out.clear();
                    d.scan_answer(t, &mut out);
                    out.len()
                })
            },
        );
    }
    // Prompts in scripts that take the general (non-ASCII) normalisation path.
    for lang in ["fr", "ru", "zh"] {
        let text = language_text(lang, 16 * 1024);
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("prompt", format!("16KB {lang}")),
            &text,
            |b, t| {
                let mut out = Vec::new();
                b.iter(|| {
                    out.clear();
                    d.scan_prompt(t, Role::User, &mut out);
                    out.len()
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
