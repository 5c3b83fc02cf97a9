//! `sluice-judge eval`: what the embedded model blocks and flags, per family and per language,
//! on the held-out fifth of the dev files and on the test file, at the operating points it
//! ships with; then the leave-family-out figures recorded when the encoder was trained (the
//! ones that predict unseen traffic: each family measured by a model that never saw it).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::backend::embedded::EmbeddedBackend;
use crate::data::{self, Row};
use crate::proto::{TextKind, Verdict};
use sluice_text::normalize::for_model;

/// Targets of the detection issue: benign sources at most this blocked / flagged, attacks at
/// least this blocked.
pub const GOAL_BENIGN_BLOCKED: f64 = 0.01;
pub const GOAL_BENIGN_FLAGGED: f64 = 0.03;
pub const GOAL_ATTACKS_BLOCKED: f64 = 0.85;

/// Attacks blocked, benign texts blocked and flagged (blocked or suspicious).
#[derive(Debug, Default, Clone, Copy, serde::Deserialize)]
pub struct Tally {
    pub attacks: usize,
    pub attacks_blocked: usize,
    pub benign: usize,
    pub benign_blocked: usize,
    pub benign_flagged: usize,
}

impl Tally {
    fn add(&mut self, label: u8, verdict: Verdict) {
        let blocked = usize::from(verdict == Verdict::Block);
        if label == 1 {
            self.attacks += 1;
            self.attacks_blocked += blocked;
        } else {
            self.benign += 1;
            self.benign_blocked += blocked;
            self.benign_flagged += usize::from(verdict != Verdict::Allow);
        }
    }

    fn merge(&mut self, o: &Tally) {
        self.attacks += o.attacks;
        self.attacks_blocked += o.attacks_blocked;
        self.benign += o.benign;
        self.benign_blocked += o.benign_blocked;
        self.benign_flagged += o.benign_flagged;
    }
}

fn rate(n: usize, d: usize) -> String {
    if d == 0 {
        "-".into()
    } else {
        format!("{:.3}", n as f64 / d as f64)
    }
}

/// One table: a line per key, then the pooled line and the worst line of each side.
pub fn table(title: &str, by: &BTreeMap<String, Tally>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## {title}");
    let _ = writeln!(
        out,
        "{:<48} {:>6} {:>8} {:>6} {:>8} {:>8}",
        "", "attack", "blocked", "benign", "blocked", "flagged"
    );
    let mut pooled = Tally::default();
    for (k, t) in by {
        pooled.merge(t);
        let name: String = k.chars().take(48).collect();
        let _ = writeln!(out, "{}", row(&name, t));
    }
    let _ = writeln!(out, "{}", row("ALL (pooled)", &pooled));
    let _ = writeln!(out, "{}", worst(by));
    out
}

fn row(name: &str, t: &Tally) -> String {
    format!(
        "{:<48} {:>6} {:>8} {:>6} {:>8} {:>8}",
        name,
        t.attacks,
        rate(t.attacks_blocked, t.attacks),
        t.benign,
        rate(t.benign_blocked, t.benign),
        rate(t.benign_flagged, t.benign)
    )
}

/// Worst attack recall and worst benign block / flag rates among keys with at least 20 rows of
/// that side (smaller ones are noise), with the goals.
fn worst(by: &BTreeMap<String, Tally>) -> String {
    let pick = |f: &dyn Fn(&Tally) -> Option<f64>, low: bool| {
        by.iter()
            .filter_map(|(k, t)| f(t).map(|v| (k, v)))
            .fold(None::<(&String, f64)>, |best, (k, v)| match best {
                Some((_, b)) if (low && b <= v) || (!low && b >= v) => best,
                _ => Some((k, v)),
            })
            .map_or("-".to_string(), |(k, v)| format!("{v:.3} ({k})"))
    };
    let recall = |t: &Tally| (t.attacks >= 20).then(|| t.attacks_blocked as f64 / t.attacks as f64);
    let blocked = |t: &Tally| (t.benign >= 20).then(|| t.benign_blocked as f64 / t.benign as f64);
    let flagged = |t: &Tally| (t.benign >= 20).then(|| t.benign_flagged as f64 / t.benign as f64);
    format!(
        "worst attack blocked {} (goal >= {GOAL_ATTACKS_BLOCKED}); worst benign blocked {} \
         (goal <= {GOAL_BENIGN_BLOCKED}); worst benign flagged {} (goal <= {GOAL_BENIGN_FLAGGED})",
        pick(&recall, true),
        pick(&blocked, false),
        pick(&flagged, false)
    )
}

fn kind(row: &Row) -> TextKind {
    if data::is_document(row) {
        TextKind::Document
    } else {
        TextKind::Prompt
    }
}

type Keyed = (BTreeMap<String, Tally>, BTreeMap<String, Tally>);

/// Tallies `rows` by family and by language.
fn tally(
    backend: &EmbeddedBackend,
    rows: &[&Row],
    key_by_source: bool,
) -> Result<Keyed, Box<dyn std::error::Error>> {
    let (mut by_key, mut by_lang): Keyed = Default::default();
    for r in rows {
        let score = backend.score_blocking(&for_model(&r.text))?;
        let v = backend.verdict(score, kind(r));
        let key = if key_by_source {
            r.source.clone()
        } else {
            data::family(&r.source).to_string()
        };
        by_key.entry(key).or_default().add(r.label, v);
        let lang = r.lang.clone().unwrap_or_else(|| "?".into());
        by_lang.entry(lang).or_default().add(r.label, v);
    }
    Ok((by_key, by_lang))
}

/// `more`: generated rows (`train/synthesize.py`) measured with the dev files.
pub fn evaluate(
    backend: &EmbeddedBackend,
    data_dir: &Path,
    more: &[PathBuf],
) -> Result<String, Box<dyn std::error::Error>> {
    let mut dev = data::load(&data_dir.join(data::DEV_FILE))?;
    dev.extend(data::load(&data_dir.join(data::EXTRA_FILE))?);
    for file in more {
        dev.extend(data::load(file)?);
    }
    let test = data::load(&data_dir.join(data::TEST_FILE))?;
    let held: Vec<&Row> = dev.iter().filter(|r| data::is_held_out(r)).collect();
    let p = backend.points();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "operating points: block {:.4}, suspicious {:.4}; documents {:.4} / {:.4}",
        p.threshold, p.suspicious, p.document_threshold, p.document_suspicious
    );
    let (by_family, by_lang) = tally(backend, &held, false)?;
    out += &table(
        "dev held-out fifth (dev + extra files), by family",
        &by_family,
    );
    out += &table("dev held-out fifth, by language", &by_lang);
    let test: Vec<&Row> = test.iter().collect();
    let (by_source, _) = tally(backend, &test, true)?;
    out += &table(
        "dev_test (in-distribution test split), by source",
        &by_source,
    );
    Ok(out)
}

/// The leave-family-out table recorded by training (`leave-family-out.json` beside the model):
/// every family scored by a model trained without it, at that model's own operating points.
pub fn recorded_leave_family_out(path: &Path) -> Result<String, Box<dyn std::error::Error>> {
    #[derive(serde::Deserialize)]
    struct Recorded {
        command: String,
        by_family: BTreeMap<String, Tally>,
        by_lang: BTreeMap<String, Tally>,
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let r: Recorded =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = format!(
        "\nLeave-family-out, recorded in {} by `{}`:",
        path.display(),
        r.command
    );
    out += &table(
        "leave-family-out (each family measured by a model that never saw it), by family",
        &r.by_family,
    );
    out += &table("leave-family-out, by language", &r.by_lang);
    Ok(out)
}
