//! `sluice-judge train`: fits the embedded model reproducibly from the dev data.
//! Logistic regression over hashed n-gram features of text segments (lines, sentences),
//! trained with AdaGrad in a fixed order (seeded shuffle, one thread), so the same data gives
//! the same bytes. Labels are per text, not per segment, so training is multiple-instance: an
//! attack text's most suspicious segment is taken as the attack and its other segments are
//! left out, re-chosen over a few rounds. The decision threshold is picked on the held-out
//! fifth of every source, never on the test file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::data::{self, Row};
use crate::features::{Featurizer, SparseVec};
use crate::model::{sigmoid, LinearModel};
use sluice_text::normalize::for_model;
use sluice_text::segment::segments;

#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub data_dir: PathBuf,
    pub out: PathBuf,
    pub dims_log2: u32,
    pub epochs: usize,
    /// Training rounds; after each but the last, every attack text's positive segment is
    /// re-chosen as its highest-scoring one.
    pub rounds: usize,
    pub learning_rate: f32,
    pub l2: f32,
    /// The threshold keeps every held-out source's false-positive rate at or below this.
    pub target_fpr: f64,
    /// The grey zone starts where the pooled held-out false-positive rate reaches this.
    pub grey_fpr: f64,
    /// Families ([`data::family`]) left out entirely: leave-family-out runs train without them.
    pub exclude_families: Vec<String>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("../shared/data"),
            out: PathBuf::from("judge-service/model/segment-lr-v2.bin"),
            dims_log2: 18,
            epochs: 25,
            rounds: 4,
            learning_rate: 0.25,
            l2: 2e-7,
            target_fpr: 0.02,
            grey_fpr: 0.10,
            exclude_families: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("no training rows in {0}")]
    NoRows(String),
}

/// Sources with fewer held-out negatives than this are covered by the pooled constraint only:
/// a handful of hard negatives (role-play prompts, tables) would otherwise set the threshold alone.
const MIN_NEGATIVES_PER_SOURCE: usize = 200;

pub fn train(cfg: &TrainConfig) -> Result<LinearModel, TrainError> {
    let mut rows = data::load(&cfg.data_dir.join(data::DEV_FILE))?;
    rows.retain(|r| {
        !cfg.exclude_families
            .iter()
            .any(|f| f == data::family(&r.source))
    });
    let (held, fit): (Vec<&Row>, Vec<&Row>) = rows.iter().partition(|r| data::is_held_out(r));
    if fit.is_empty() {
        return Err(TrainError::NoRows(cfg.data_dir.display().to_string()));
    }
    let featurizer = Featurizer::new(cfg.dims_log2);
    // Every segment of every training text, with the index of its text.
    let mut xs: Vec<SparseVec> = Vec::new();
    let mut owner: Vec<usize> = Vec::new();
    for (i, r) in fit.iter().enumerate() {
        for s in segments(&for_model(&r.text)) {
            xs.push(featurizer.features(s));
            owner.push(i);
        }
    }
    let row_weights = sample_weights(&fit);
    let examples: Vec<Example> = xs
        .iter()
        .zip(&owner)
        .map(|(x, &i)| Example {
            x,
            y: f32::from(fit[i].label),
            weight: row_weights[i],
        })
        .collect();
    eprintln!("{} texts, {} segments", fit.len(), examples.len());

    // Round one: every segment carries its text's label.
    let mut chosen: Vec<usize> = (0..examples.len()).collect();
    let mut fitted = (Vec::new(), 0.0);
    for round in 0..cfg.rounds.max(1) {
        eprintln!("round {}: {} segments", round + 1, chosen.len());
        fitted = fit_logistic(&examples, &chosen, featurizer.dims(), cfg);
        let (w, bias) = &fitted;
        let margin = |x: &SparseVec| bias + x.iter().map(|&(j, v)| w[j as usize] * v).sum::<f32>();
        let mut best: Vec<Option<(usize, f32)>> = vec![None; fit.len()];
        for (k, ex) in examples.iter().enumerate() {
            if ex.y > 0.5 {
                let m = margin(ex.x);
                let slot = &mut best[owner[k]];
                if slot.is_none_or(|(_, b)| m > b) {
                    *slot = Some((k, m));
                }
            }
        }
        chosen = (0..examples.len())
            .filter(|&k| examples[k].y < 0.5 || best[owner[k]].is_some_and(|(b, _)| b == k))
            .collect();
    }
    let (w, bias) = fitted;

    // Quantise first, then pick the threshold with the weights that will ship.
    let model = LinearModel::new(featurizer, w, bias);
    let mut model = LinearModel::from_bytes(&model.to_bytes())
        .map_err(|e| TrainError::NoRows(format!("quantised model does not load: {e}")))?;
    let held_scores: Vec<f32> = held.iter().map(|r| model.score(&r.text)).collect();
    let (docs, prompts): (Vec<_>, Vec<_>) = held
        .iter()
        .zip(&held_scores)
        .partition(|(r, _)| data::is_document(r));
    let (prompt_rows, prompt_scores): (Vec<&Row>, Vec<f32>) = prompts.into_iter().unzip();
    let (doc_rows, doc_scores): (Vec<&Row>, Vec<f32>) = docs.into_iter().unzip();
    model.threshold = pick_threshold(&prompt_rows, &prompt_scores, cfg.target_fpr);
    model.document_threshold = if doc_rows.iter().any(|r| r.label == 0) {
        pooled_threshold(&doc_rows, &doc_scores, cfg.target_fpr)
    } else {
        model.threshold
    };
    model.grey_low = pooled_threshold(&held, &held_scores, cfg.grey_fpr).min(model.threshold);
    eprintln!(
        "trained on {} rows, {} held out; threshold {:.4} (documents {:.4}), grey zone from {:.4}",
        fit.len(),
        held.len(),
        model.threshold,
        model.document_threshold,
        model.grey_low
    );
    write(&cfg.out, &model.to_bytes())?;
    Ok(model)
}

/// One training example: a segment's features, its label and its weight.
struct Example<'a> {
    x: &'a SparseVec,
    y: f32,
    weight: f32,
}

/// Fits logistic regression with AdaGrad on `examples[chosen]`, from zero weights, in a seeded
/// order; returns the weights and the bias.
fn fit_logistic(
    examples: &[Example],
    chosen: &[usize],
    dims: usize,
    cfg: &TrainConfig,
) -> (Vec<f32>, f32) {
    let mut w = vec![0f32; dims];
    let mut g2 = vec![1e-6f32; dims];
    let (mut bias, mut bias_g2) = (0f32, 1e-6f32);
    let mut order = chosen.to_vec();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for epoch in 0..cfg.epochs {
        rng.shuffle(&mut order);
        let mut loss = 0f64;
        for &i in &order {
            let Example { x, y, weight } = examples[i];
            let margin = bias + x.iter().map(|&(j, v)| w[j as usize] * v).sum::<f32>();
            let p = sigmoid(margin);
            loss -=
                f64::from(weight) * f64::from(if y > 0.5 { p } else { 1.0 - p }).max(1e-12).ln();
            let g = (p - y) * weight;
            for &(j, v) in x {
                let j = j as usize;
                let grad = g * v + cfg.l2 * w[j];
                g2[j] += grad * grad;
                w[j] -= cfg.learning_rate * grad / g2[j].sqrt();
            }
            bias_g2 += g * g;
            bias -= cfg.learning_rate * g / bias_g2.sqrt();
        }
        if epoch + 1 == cfg.epochs {
            eprintln!(
                "  epoch {}: mean weighted log-loss {:.4}",
                epoch + 1,
                loss / order.len().max(1) as f64
            );
        }
    }
    (w, bias)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    std::fs::write(path, bytes).map_err(|source| TrainError::Write {
        path: path.display().to_string(),
        source,
    })
}

/// Each source gets weight proportional to the square root of its size, so the big sources
/// do not drown the small ones (BIPIA code, llm-guard) while still counting for more.
fn sample_weights(rows: &[&Row]) -> Vec<f32> {
    let mut per: BTreeMap<&str, usize> = BTreeMap::new();
    for r in rows {
        *per.entry(&r.source).or_default() += 1;
    }
    let mean = rows.len() as f32 / per.len() as f32;
    rows.iter()
        .map(|r| {
            let n = per[r.source.as_str()] as f32;
            (mean / n).sqrt().clamp(0.5, 4.0)
        })
        .collect()
}

/// Smallest threshold at which every source with enough held-out negatives, and the pool,
/// stays at or below `target_fpr`.
fn pick_threshold(rows: &[&Row], scores: &[f32], target_fpr: f64) -> f32 {
    let mut neg_by_source: BTreeMap<&str, Vec<f32>> = BTreeMap::new();
    for (r, &s) in rows.iter().zip(scores) {
        if r.label == 0 {
            neg_by_source.entry(&r.source).or_default().push(s);
        }
    }
    let mut t = pooled_threshold(rows, scores, target_fpr);
    for negs in neg_by_source.values() {
        if negs.len() >= MIN_NEGATIVES_PER_SOURCE {
            let ts = threshold_for(negs.clone(), target_fpr);
            eprintln!(
                "  source with {} held-out negatives needs threshold {ts:.4}",
                negs.len()
            );
            t = t.max(ts);
        }
    }
    t
}

fn pooled_threshold(rows: &[&Row], scores: &[f32], fpr: f64) -> f32 {
    let negs: Vec<f32> = rows
        .iter()
        .zip(scores)
        .filter(|(r, _)| r.label == 0)
        .map(|(_, &s)| s)
        .collect();
    threshold_for(negs, fpr)
}

/// Lowest threshold letting at most `floor(fpr * n)` of these negative scores reach it.
fn threshold_for(mut negs: Vec<f32>, fpr: f64) -> f32 {
    if negs.is_empty() {
        return 0.5;
    }
    negs.sort_by(|a, b| b.total_cmp(a));
    let allowed = (fpr * negs.len() as f64).floor() as usize;
    match negs.get(allowed) {
        Some(&s) => next_up(s).min(1.0),
        None => 0.0,
    }
}

fn next_up(x: f32) -> f32 {
    if x >= 1.0 {
        1.0
    } else {
        f32::from_bits(x.to_bits() + 1)
    }
}

/// Small deterministic PRNG for the training order; reproducibility matters, quality hardly.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_bounds_false_positives() {
        let negs: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect();
        let t = threshold_for(negs.clone(), 0.02);
        let fp = negs.iter().filter(|&&s| s >= t).count();
        assert!(fp <= 2, "fp {fp} at {t}");
        assert!(t <= 0.99, "threshold {t} higher than needed");
    }
}
