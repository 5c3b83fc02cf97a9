//! Trains the injection detector's linear model (`--train OUT`): logistic regression with
//! AdaGrad and L2 over the hashed window features and the lexicon score. Rows of every
//! `validation` source and the whole `prompt_injection_dev_test.jsonl` are never used, so the
//! figures printed for them are held-out figures. Each source is weighted by the square root
//! of its size so the two largest sources do not decide the model alone.

use std::collections::HashMap;

use sluice_filter::detect::injection::model::{length_norm, LinearModel, BUCKETS};
use sluice_filter::detect::injection::InjectionDetector;

/// One row: its windows' features, lexicon score, label and weight. An attack row that spans
/// several windows is learnt from its highest-scoring window only (multiple-instance learning):
/// the rest of a long poisoned document is ordinary text and must not be learnt as attack.
pub struct Sample {
    pub windows: Vec<Vec<u32>>,
    pub lexicon: f32,
    pub label: f32,
    pub weight: f32,
}

/// Builds samples from (text, label, source, is_document) rows.
pub fn samples(det: &InjectionDetector, rows: &[(String, u8, String, bool)]) -> Vec<Sample> {
    let mut per_source: HashMap<&str, usize> = HashMap::new();
    for r in rows {
        *per_source.entry(r.2.as_str()).or_default() += 1;
    }
    let mut out = Vec::new();
    for (text, label, source, doc) in rows {
        let role = if *doc {
            sluice_filter::model::Role::Document
        } else {
            sluice_filter::model::Role::User
        };
        let (lex, windows) = det.training_inputs(text, role);
        let n = per_source.get(source.as_str()).copied().unwrap_or(1) as f32;
        let row_weight = 100.0 / n.sqrt();
        if *label == 1 {
            out.push(Sample {
                windows,
                lexicon: lex,
                label: 1.0,
                weight: row_weight,
            });
        } else {
            // Every window of a benign row is benign.
            let k = windows.len().max(1) as f32;
            for feats in windows {
                out.push(Sample {
                    windows: vec![feats],
                    lexicon: lex,
                    label: 0.0,
                    weight: row_weight / k,
                });
            }
        }
    }
    out
}

/// ln(0.7 / 0.3): moves the decision point from probability 0.7 to 0.5.
const OPERATING_POINT_SHIFT: f32 = 0.847_298;

/// L2 penalty per update: keeps rare n-grams from memorising single rows.
const L2: f32 = 1e-4;

pub fn train(samples: &[Sample], epochs: usize) -> LinearModel {
    let mut w = vec![0f32; BUCKETS];
    let mut g2 = vec![1e-6f32; BUCKETS];
    let (mut bias, mut lexw) = (0f32, 0f32);
    let (mut gb, mut gl) = (1e-6f32, 1e-6f32);
    let lr = 0.2f32;
    let l2 = L2;
    let total_w: f32 = samples.iter().map(|s| s.weight).sum::<f32>() / samples.len().max(1) as f32;
    // Deterministic shuffle (LCG) so the committed model can be rebuilt bit for bit.
    let mut order: Vec<usize> = (0..samples.len()).collect();
    let mut seed: u64 = 0x5EED;
    for _ in 0..epochs {
        for i in (1..order.len()).rev() {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let j = (seed >> 33) as usize % (i + 1);
            order.swap(i, j);
        }
        for &i in &order {
            let s = &samples[i];
            let logit = |feats: &[u32]| {
                let sum: f32 = feats.iter().map(|&f| w[f as usize]).sum();
                bias + lexw * s.lexicon + sum * length_norm(feats.len())
            };
            let Some((feats, z)) = s
                .windows
                .iter()
                .map(|f| (f, logit(f)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
            else {
                continue;
            };
            let p = 1.0 / (1.0 + (-z).exp());
            let g = (p - s.label) * s.weight / total_w;
            gb += g * g;
            bias -= lr * g / gb.sqrt();
            let glx = g * s.lexicon;
            gl += glx * glx;
            lexw -= lr * glx / gl.sqrt();
            let norm = length_norm(feats.len());
            for &f in feats {
                let f = f as usize;
                let gf = g * norm + l2 * w[f];
                g2[f] += gf * gf;
                w[f] -= lr * gf / g2[f].sqrt();
            }
        }
    }
    let max = w.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
    let scale = max / 127.0;
    let weights = w
        .iter()
        .map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8)
        .collect();
    LinearModel {
        // Shift so that a policy threshold of 0.5 is the operating point picked on the
        // validation sources (0.7 before the shift).
        bias: bias - OPERATING_POINT_SHIFT,
        lexicon: lexw,
        scale,
        weights,
    }
}
