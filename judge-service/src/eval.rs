//! `sluice-judge eval`: recall and false-positive rate per source for the embedded model, on
//! the held-out part of the dev data and on the test file.

use std::fmt::Write as _;
use std::path::Path;

use crate::data::{self, Counts, Row};
use crate::model::LinearModel;

/// Goals from the project brief.
pub const GOAL_RECALL: f64 = 0.95;
pub const GOAL_FPR: f64 = 0.02;

pub fn evaluate(model: &LinearModel, data_dir: &Path) -> Result<String, data::DataError> {
    let dev = data::load(&data_dir.join(data::DEV_FILE))?;
    let test = data::load(&data_dir.join(data::TEST_FILE))?;
    let held: Vec<&Row> = dev.iter().filter(|r| data::is_held_out(r)).collect();
    let test: Vec<&Row> = test.iter().collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "model threshold {:.4} (documents {:.4}), grey zone from {:.4}; goals: recall >= {GOAL_RECALL}, FPR <= {GOAL_FPR}",
        model.threshold, model.document_threshold, model.grey_low
    );
    for (name, rows) in [
        ("dev held-out (1/5 of each source)", &held),
        ("dev_test", &test),
    ] {
        let predicted: Vec<bool> = rows
            .iter()
            .map(|r| model.score(&r.text) >= model.threshold_for(data::is_document(r)))
            .collect();
        let by = data::counts_by_source(rows, &predicted);
        let _ = writeln!(out, "\n## {name}: {} rows", rows.len());
        let _ = writeln!(
            out,
            "{:<60} {:>5} {:>5} {:>7} {:>7}  goal",
            "source", "pos", "neg", "recall", "FPR"
        );
        let mut pooled = Counts::default();
        for (source, c) in &by {
            pooled.tp += c.tp;
            pooled.fn_ += c.fn_;
            pooled.fp += c.fp;
            pooled.tn += c.tn;
            let _ = writeln!(out, "{}", line(source, c));
        }
        let _ = writeln!(out, "{}", line("ALL (pooled)", &pooled));
    }
    Ok(out)
}

fn line(source: &str, c: &Counts) -> String {
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    let ok = c.recall().is_none_or(|r| r >= GOAL_RECALL) && c.fpr().is_none_or(|f| f <= GOAL_FPR);
    let name: String = source.chars().take(60).collect();
    format!(
        "{:<60} {:>5} {:>5} {:>7} {:>7}  {}",
        name,
        c.tp + c.fn_,
        c.fp + c.tn,
        fmt(c.recall()),
        fmt(c.fpr()),
        if ok { "met" } else { "MISSED" }
    )
}
