//! `sluice-eval`: runs the filter's detectors over the labelled JSONL data (`../shared/data` by
//! default) and prints, per source, injection recall and false-positive rate, PII precision and
//! recall per entity type by span overlap, and secrets recall and negative flag rate. With
//! `--check FLOORS` it exits non-zero if any figure is worse than its recorded floor.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Deserialize;

mod train;
use sluice_filter::detect::{DetectorId, Detectors, Finding};
use sluice_filter::model::Role;

#[derive(Debug, thiserror::Error)]
enum EvalError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {source}")]
    Parse {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
    #[error("{0}")]
    Usage(String),
}

#[derive(Deserialize)]
struct InjectionRow {
    text: String,
    label: u8,
    source: String,
}

#[derive(Deserialize)]
struct SpanRow {
    text: String,
    spans: Vec<Span>,
}

#[derive(Deserialize)]
struct Span {
    start: usize,
    end: usize,
    #[serde(rename = "type")]
    kind: String,
}

struct Args {
    data: PathBuf,
    threshold: f32,
    include_test: bool,
    check: Option<PathBuf>,
    misses: usize,
    train: Option<PathBuf>,
    epochs: usize,
    cv: bool,
    dump_scores: Option<PathBuf>,
}

fn parse_args() -> Result<Args, EvalError> {
    let mut a = Args {
        data: PathBuf::from("../shared/data"),
        threshold: 0.5,
        include_test: false,
        check: None,
        misses: 0,
        train: None,
        epochs: 5,
        cv: false,
        dump_scores: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| EvalError::Usage(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--data" => a.data = PathBuf::from(value()?),
            "--threshold" => {
                a.threshold = value()?
                    .parse()
                    .map_err(|_| EvalError::Usage("--threshold takes a number".into()))?
            }
            "--include-test" => a.include_test = true,
            "--cv" => a.cv = true,
            "--check" => a.check = Some(PathBuf::from(value()?)),
            "--dump-scores" => a.dump_scores = Some(PathBuf::from(value()?)),
            "--train" => a.train = Some(PathBuf::from(value()?)),
            "--epochs" => {
                a.epochs = value()?
                    .parse()
                    .map_err(|_| EvalError::Usage("--epochs takes a count".into()))?
            }
            "--misses" => {
                a.misses = value()?
                    .parse()
                    .map_err(|_| EvalError::Usage("--misses takes a count".into()))?
            }
            "-h" | "--help" => {
                return Err(EvalError::Usage(
                    "usage: sluice-eval [--data DIR] [--threshold T] [--include-test] \
                     [--check FLOORS] [--misses N] [--train MODEL_OUT [--epochs N]] [--cv] \
                     [--dump-scores FILE]"
                        .into(),
                ))
            }
            other => return Err(EvalError::Usage(format!("unknown argument {other}"))),
        }
    }
    Ok(a)
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, EvalError> {
    let text = fs::read_to_string(path).map_err(|source| EvalError::Read {
        path: path.to_owned(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| EvalError::Parse {
                path: path.to_owned(),
                line: i + 1,
                source,
            })
        })
        .collect()
}

/// Named figures for the regression check, e.g. `injection/BIPIA/email/train/recall`.
type Figures = BTreeMap<String, f64>;

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        f64::NAN
    } else {
        a as f64 / b as f64
    }
}

/// Short, stable source names for tables and floor keys.
fn short_source(s: &str) -> String {
    let s = s.split(" (via").next().unwrap_or(s);
    let s = s.split(" @").next().unwrap_or(s);
    let s = s.replace(
        "TrustAIRLab in-the-wild 2023_12_25 via PyRIT 1.1.0 ",
        "PyRIT ",
    );
    s.replace(' ', "_")
}

/// BIPIA rows are external content (e-mails, tables, code answers) handed to the model.
fn role_for(source: &str) -> Role {
    if source.starts_with("BIPIA") {
        Role::Document
    } else {
        Role::User
    }
}

fn injection(
    d: &Detectors,
    path: &Path,
    args: &Args,
    prefix: &str,
    figs: &mut Figures,
) -> Result<(), EvalError> {
    let rows: Vec<InjectionRow> = read_jsonl(path)?;
    // source -> (tp, pos, fp, neg)
    let mut by: BTreeMap<String, [usize; 4]> = BTreeMap::new();
    let mut misses: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &rows {
        let flagged = d
            .injection_score(&r.text, role_for(&r.source))
            .is_some_and(|f| f.score >= args.threshold);
        let src = short_source(&r.source);
        let e = by.entry(src.clone()).or_default();
        if r.label == 1 {
            e[1] += 1;
            e[0] += usize::from(flagged);
        } else {
            e[3] += 1;
            e[2] += usize::from(flagged);
        }
        if args.misses > 0 && flagged != (r.label == 1) {
            let m = misses.entry(src).or_default();
            if m.len() < args.misses {
                let t: String = r.text.chars().take(160).collect();
                m.push(format!("[{}] {t:?}", if flagged { "FP" } else { "FN" }));
            }
        }
    }
    println!(
        "\n## Prompt injection: {} (threshold {})",
        path.display(),
        args.threshold
    );
    println!(
        "{:<72} {:>6} {:>7} {:>6} {:>7}",
        "source", "attack", "recall", "benign", "FPR"
    );
    let mut tot = [0usize; 4];
    for (src, e) in &by {
        for k in 0..4 {
            tot[k] += e[k];
        }
        let recall = ratio(e[0], e[1]);
        let fpr = ratio(e[2], e[3]);
        println!(
            "{:<72} {:>6} {:>7} {:>6} {:>7}",
            src,
            e[1],
            fmt(recall),
            e[3],
            fmt(fpr)
        );
        if e[1] > 0 {
            figs.insert(format!("{prefix}/{src}/recall"), recall);
        }
        if e[3] > 0 {
            figs.insert(format!("{prefix}/{src}/fpr"), fpr);
        }
    }
    println!(
        "{:<72} {:>6} {:>7} {:>6} {:>7}",
        "(all rows, pooled: not a goal, for orientation)",
        tot[1],
        fmt(ratio(tot[0], tot[1])),
        tot[3],
        fmt(ratio(tot[2], tot[3]))
    );
    for (src, m) in misses {
        println!("  misses in {src}:");
        for x in m {
            println!("    {x}");
        }
    }
    Ok(())
}

fn fmt(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{x:.3}")
    }
}

/// Byte offset of code-point index `cp` in `s` (the data's spans count code points).
fn byte_offset(s: &str, cp: usize) -> usize {
    s.char_indices().nth(cp).map(|(b, _)| b).unwrap_or(s.len())
}

fn overlaps(a: &std::ops::Range<usize>, b: &std::ops::Range<usize>) -> bool {
    a.start < b.end && b.start < a.end
}

/// The data's entity type for one of our finding kinds.
fn gold_type(kind: &str) -> &str {
    match kind {
        "EMAIL" => "EMAIL_ADDRESS",
        "PHONE" => "PHONE_NUMBER",
        "CREDIT_CARD" => "CREDIT_CARD",
        "IBAN" => "IBAN_CODE",
        "US_SSN" => "US_SSN",
        "IP_ADDRESS" => "IP_ADDRESS",
        other => other,
    }
}

const PII_TYPES: [&str; 6] = [
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
];

fn pii(d: &Detectors, path: &Path, args: &Args, figs: &mut Figures) -> Result<(), EvalError> {
    let rows: Vec<SpanRow> = read_jsonl(path)?;
    // type -> (gold, gold matched, predicted, predicted correct)
    let mut stats: BTreeMap<&str, [usize; 4]> = BTreeMap::new();
    let mut shown = 0;
    for r in &rows {
        let mut f: Vec<Finding> = Vec::new();
        d.scan_values(&r.text, &mut f);
        let preds: Vec<(&str, std::ops::Range<usize>)> = f
            .iter()
            .filter(|f| f.detector == DetectorId::Pii)
            .map(|f| (gold_type(f.kind), f.span.clone()))
            .collect();
        let gold: Vec<(&str, std::ops::Range<usize>)> = r
            .spans
            .iter()
            .map(|s| {
                (
                    s.kind.as_str(),
                    byte_offset(&r.text, s.start)..byte_offset(&r.text, s.end),
                )
            })
            .collect();
        for t in PII_TYPES {
            let e = stats.entry(t).or_default();
            for (_, g) in gold.iter().filter(|g| g.0 == t) {
                e[0] += 1;
                let hit = preds.iter().any(|p| p.0 == t && overlaps(&p.1, g));
                e[1] += usize::from(hit);
                if !hit && shown < args.misses {
                    shown += 1;
                    println!("  PII FN {t}: {:?}", r.text.get(g.clone()).unwrap_or(""));
                }
            }
            for (_, p) in preds.iter().filter(|p| p.0 == t) {
                e[2] += 1;
                let ok = gold.iter().any(|g| g.0 == t && overlaps(&g.1, p));
                e[3] += usize::from(ok);
                if !ok && shown < args.misses {
                    shown += 1;
                    println!(
                        "  PII FP {t}: {:?} in {:?}",
                        r.text.get(p.clone()).unwrap_or(""),
                        r.text.chars().take(120).collect::<String>()
                    );
                }
            }
        }
    }
    println!("\n## PII: {} (span overlap)", path.display());
    println!(
        "{:<16} {:>6} {:>9} {:>7}",
        "type", "gold", "precision", "recall"
    );
    for (t, e) in &stats {
        let p = ratio(e[3], e[2]);
        let r = ratio(e[1], e[0]);
        println!("{:<16} {:>6} {:>9} {:>7}", t, e[0], fmt(p), fmt(r));
        figs.insert(
            format!("pii/{t}/precision"),
            if e[2] == 0 { 1.0 } else { p },
        );
        figs.insert(format!("pii/{t}/recall"), r);
    }
    Ok(())
}

fn secrets(d: &Detectors, dir: &Path, args: &Args, figs: &mut Figures) -> Result<(), EvalError> {
    let pos: Vec<SpanRow> = read_jsonl(&dir.join("secrets_dev_positive.jsonl"))?;
    let neg: Vec<SpanRow> = read_jsonl(&dir.join("secrets_dev_negative.jsonl"))?;
    let secret_spans = |t: &str| -> Vec<std::ops::Range<usize>> {
        let mut f = Vec::new();
        d.scan_values(t, &mut f);
        f.into_iter()
            .filter(|f| f.detector == DetectorId::Secrets)
            .map(|f| f.span)
            .collect()
    };
    let mut hit = 0;
    let mut total = 0;
    let mut missed: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &pos {
        let found = secret_spans(&r.text);
        for s in &r.spans {
            total += 1;
            let g = byte_offset(&r.text, s.start)..byte_offset(&r.text, s.end);
            if found.iter().any(|f| overlaps(f, &g)) {
                hit += 1;
            } else {
                *missed.entry(s.kind.as_str()).or_default() += 1;
                if args.misses > 0 && missed.values().sum::<usize>() <= args.misses {
                    println!(
                        "  secret FN {}: {:?}",
                        s.kind,
                        r.text.chars().take(140).collect::<String>()
                    );
                }
            }
        }
    }
    let mut flagged = 0;
    for r in &neg {
        if !secret_spans(&r.text).is_empty() {
            flagged += 1;
            if args.misses > 0 && flagged <= args.misses {
                println!(
                    "  secret FP: {:?}",
                    r.text.chars().take(140).collect::<String>()
                );
            }
        }
    }
    let recall = ratio(hit, total);
    let flag_rate = ratio(flagged, neg.len());
    println!("\n## Secrets: {}", dir.display());
    println!("{:<40} {:>6} {:>7}", "file", "rows", "figure");
    println!(
        "{:<40} {:>6} {:>7}  recall (span overlap)",
        "secrets_dev_positive.jsonl",
        total,
        fmt(recall)
    );
    println!(
        "{:<40} {:>6} {:>7}  rows flagged",
        "secrets_dev_negative.jsonl",
        neg.len(),
        fmt(flag_rate)
    );
    let mut worst: Vec<_> = missed.into_iter().collect();
    worst.sort_by_key(|w| std::cmp::Reverse(w.1));
    if !worst.is_empty() {
        let list: Vec<String> = worst
            .iter()
            .take(12)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        println!("missed kinds: {}", list.join(", "));
    }
    figs.insert("secrets/positive/recall".into(), recall);
    figs.insert("secrets/negative/flagged".into(), flag_rate);
    Ok(())
}

/// Floors file: `min KEY VALUE` or `max KEY VALUE` per line, `#` comments.
fn check(figs: &Figures, path: &Path) -> Result<bool, EvalError> {
    let text = fs::read_to_string(path).map_err(|source| EvalError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut ok = true;
    let mut checked = 0;
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [dir, key, value] = parts[..] else {
            return Err(EvalError::Usage(format!(
                "{}:{}: want `min|max KEY VALUE`",
                path.display(),
                n + 1
            )));
        };
        let want: f64 = value.parse().map_err(|_| {
            EvalError::Usage(format!("{}:{}: bad number {value}", path.display(), n + 1))
        })?;
        let Some(&got) = figs.get(key) else {
            println!("REGRESSION: {key} was not measured");
            ok = false;
            continue;
        };
        checked += 1;
        let pass = match dir {
            "min" => got >= want,
            "max" => got <= want,
            _ => {
                return Err(EvalError::Usage(format!(
                    "{}:{}: min or max, not {dir}",
                    path.display(),
                    n + 1
                )))
            }
        };
        if !pass {
            ok = false;
            println!("REGRESSION: {key} = {got:.4}, floor {dir} {want}");
        }
    }
    println!(
        "\nchecked {checked} figures against {}: {}",
        path.display(),
        if ok { "ok" } else { "FAILED" }
    );
    Ok(ok)
}

fn run() -> Result<bool, EvalError> {
    let args = parse_args()?;
    if args.cv {
        return cross_validate(&args).map(|_| true);
    }
    let mut d = Detectors::new();
    if let Some(out) = &args.train {
        let model = train_model(&d, &args)?;
        fs::write(out, model.to_bytes()).map_err(|source| EvalError::Read {
            path: out.clone(),
            source,
        })?;
        println!("wrote {}", out.display());
        d.injection_mut().set_model(Some(model));
    }
    if let Some(out) = &args.dump_scores {
        return dump_scores(&d, &args.data, out).map(|_| true);
    }
    let mut figs = Figures::new();
    injection(
        &d,
        &args.data.join("prompt_injection_dev.jsonl"),
        &args,
        "injection",
        &mut figs,
    )?;
    if args.include_test {
        let a = Args { misses: 0, ..args };
        injection(
            &d,
            &a.data.join("prompt_injection_dev_test.jsonl"),
            &a,
            "injection_test",
            &mut figs,
        )?;
        return finish(&d, &a, figs);
    }
    finish(&d, &args, figs)
}

/// Writes the in-filter injection score of every row of the injection files as JSON lines
/// (`source`, `label`, `score`), for choosing the filter's block threshold and the judge's
/// `min_score` over every source, the extra file's included.
fn dump_scores(d: &Detectors, data: &Path, out: &Path) -> Result<(), EvalError> {
    use std::io::Write as _;
    let mut lines = Vec::new();
    for file in [
        "prompt_injection_dev.jsonl",
        "prompt_injection_extra.jsonl",
        "prompt_injection_dev_test.jsonl",
    ] {
        for r in read_jsonl::<InjectionRow>(&data.join(file))? {
            let score = d
                .injection_score(&r.text, role_for(&r.source))
                .map_or(0.0, |f| f.score);
            let line = serde_json::json!({"file": file, "source": r.source, "label": r.label, "score": score});
            let _ = writeln!(lines, "{line}");
        }
    }
    fs::write(out, lines).map_err(|source| EvalError::Read {
        path: out.to_owned(),
        source,
    })
}

/// Dataset family of a source: "BIPIA/table/train" -> "BIPIA", "spikee 0.9.2 …" -> "spikee".
fn family(source: &str) -> &str {
    let first = source.split(' ').next().unwrap_or(source);
    first.split('/').next().unwrap_or(first)
}

/// Leave-one-family-out: for each dataset family, train without it, then score its rows.
/// These are the figures to expect on data from sources the model never saw.
fn cross_validate(args: &Args) -> Result<(), EvalError> {
    let all: Vec<InjectionRow> = read_jsonl(&args.data.join("prompt_injection_dev.jsonl"))?;
    let mut families: Vec<&str> = all.iter().map(|r| family(&r.source)).collect();
    families.sort_unstable();
    families.dedup();
    println!(
        "\n## Prompt injection, leave-one-family-out (threshold {})",
        args.threshold
    );
    println!(
        "{:<72} {:>6} {:>7} {:>6} {:>7}",
        "held-out source", "attack", "recall", "benign", "FPR"
    );
    for fam in families {
        let mut d = Detectors::new();
        let rows: Vec<(String, u8, String, bool)> = all
            .iter()
            .filter(|r| family(&r.source) != fam && !r.source.contains("validation"))
            .map(|r| {
                (
                    r.text.clone(),
                    r.label,
                    r.source.clone(),
                    role_for(&r.source) == Role::Document,
                )
            })
            .collect();
        let samples = train::samples(d.injection(), &rows);
        d.injection_mut()
            .set_model(Some(train::train(&samples, args.epochs)));
        let mut by: BTreeMap<String, [usize; 4]> = BTreeMap::new();
        for r in all.iter().filter(|r| family(&r.source) == fam) {
            let flagged = d
                .injection_score(&r.text, role_for(&r.source))
                .is_some_and(|f| f.score >= args.threshold);
            let e = by.entry(short_source(&r.source)).or_default();
            let k = if r.label == 1 { 0 } else { 2 };
            e[k] += usize::from(flagged);
            e[k + 1] += 1;
        }
        for (src, e) in by {
            println!(
                "{:<72} {:>6} {:>7} {:>6} {:>7}",
                src,
                e[1],
                fmt(ratio(e[0], e[1])),
                e[3],
                fmt(ratio(e[2], e[3]))
            );
        }
    }
    Ok(())
}

/// Trains on every dev row except the `validation` sources (held out).
fn train_model(
    d: &Detectors,
    args: &Args,
) -> Result<sluice_filter::detect::injection::model::LinearModel, EvalError> {
    let rows: Vec<InjectionRow> = read_jsonl(&args.data.join("prompt_injection_dev.jsonl"))?;
    let rows: Vec<(String, u8, String, bool)> = rows
        .into_iter()
        .filter(|r| !r.source.contains("validation"))
        .map(|r| {
            let doc = role_for(&r.source) == Role::Document;
            (r.text, r.label, r.source, doc)
        })
        .collect();
    let samples = train::samples(d.injection(), &rows);
    println!(
        "training on {} rows ({} windows)",
        rows.len(),
        samples.len()
    );
    Ok(train::train(&samples, args.epochs))
}

fn finish(d: &Detectors, args: &Args, mut figs: Figures) -> Result<bool, EvalError> {
    pii(d, &args.data.join("pii_dev.jsonl"), args, &mut figs)?;
    secrets(d, &args.data, args, &mut figs)?;
    match &args.check {
        Some(p) => check(&figs, p),
        None => Ok(true),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("sluice-eval: {e}");
            ExitCode::from(2)
        }
    }
}
