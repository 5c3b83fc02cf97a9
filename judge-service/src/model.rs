//! The embedded linear model: weights over hashed n-gram features, a bias, and the decision
//! threshold and grey-zone floor picked on held-out data at training time. A text is scored
//! line by line and sentence by sentence ([`sluice_text::segment`]); its score is the highest. Weights
//! are stored quantised to `i8` with one scale, so the shipped file is 2^k bytes plus a header.

use crate::features::{Featurizer, SparseVec};
use sluice_text::normalize::for_model;
use sluice_text::segment::segments;

const MAGIC: &[u8; 4] = b"SLJM";
/// Version 2 scores segments (version 1 scored the whole text with the same file layout).
const VERSION: u32 = 2;
const HEADER_LEN: usize = 4 + 4 * 7;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model file is empty: run `make train-judge` to build it")]
    Empty,
    #[error("not a sluice judge model (bad magic)")]
    BadMagic,
    #[error("unsupported model version {0} (this build reads {VERSION})")]
    Version(u32),
    #[error("model header says 2^{dims_log2} weights but the file holds {len}")]
    Length { dims_log2: u32, len: usize },
    #[error("model dimension 2^{0} is out of range (10..=24)")]
    Dims(u32),
    #[error("reading model file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Logistic-regression model over hashed features.
#[derive(Debug, Clone)]
pub struct LinearModel {
    featurizer: Featurizer,
    weights: Vec<f32>,
    pub bias: f32,
    /// Scores at or above this are attacks.
    pub threshold: f32,
    /// The same for documents (tool results, retrieved pages): picked on held-out documents,
    /// whose benign texts score differently from chat prompts.
    pub document_threshold: f32,
    /// Scores in `[grey_low, threshold)` are the grey zone (suspicious; the ensemble asks the LLM).
    pub grey_low: f32,
}

impl LinearModel {
    pub fn new(featurizer: Featurizer, weights: Vec<f32>, bias: f32) -> Self {
        Self {
            featurizer,
            weights,
            bias,
            threshold: 0.5,
            document_threshold: 0.5,
            grey_low: 0.2,
        }
    }

    /// The decision threshold for a text of this kind.
    pub fn threshold_for(&self, document: bool) -> f32 {
        if document {
            self.document_threshold
        } else {
            self.threshold
        }
    }

    pub fn featurizer(&self) -> Featurizer {
        self.featurizer
    }

    pub fn weights(&self) -> &[f32] {
        &self.weights
    }

    /// Raw margin (logit) for a feature vector.
    pub fn margin(&self, x: &SparseVec) -> f32 {
        self.bias
            + x.iter()
                .map(|&(i, v)| self.weights.get(i as usize).copied().unwrap_or(0.0) * v)
                .sum::<f32>()
    }

    /// Attack probability of one piece of normalised text, as a whole.
    pub fn score_segment(&self, segment: &str) -> f32 {
        sigmoid(self.margin(&self.featurizer.features(segment)))
    }

    /// Attack probability of already normalised text: that of its most suspicious segment.
    pub fn score_normalised(&self, normalised: &str) -> f32 {
        segments(normalised)
            .into_iter()
            .map(|s| self.score_segment(s))
            .fold(0.0, f32::max)
    }

    /// Attack probability of raw text.
    pub fn score(&self, text: &str) -> f32 {
        self.score_normalised(&for_model(text))
    }

    /// Serialises with weights quantised to `i8`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let max = self.weights.iter().fold(0f32, |m, w| m.max(w.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        let mut out = Vec::with_capacity(HEADER_LEN + self.weights.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.featurizer.dims_log2().to_le_bytes());
        for f in [
            scale,
            self.bias,
            self.threshold,
            self.grey_low,
            self.document_threshold,
        ] {
            out.extend_from_slice(&f.to_le_bytes());
        }
        out.extend(
            self.weights
                .iter()
                .map(|w| (w / scale).round().clamp(-127.0, 127.0) as i8 as u8),
        );
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ModelError> {
        if bytes.is_empty() {
            return Err(ModelError::Empty);
        }
        if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
            return Err(ModelError::BadMagic);
        }
        let word = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&bytes[4 + 4 * i..8 + 4 * i]);
            b
        };
        let version = u32::from_le_bytes(word(0));
        if version != VERSION {
            return Err(ModelError::Version(version));
        }
        let dims_log2 = u32::from_le_bytes(word(1));
        if !(10..=24).contains(&dims_log2) {
            return Err(ModelError::Dims(dims_log2));
        }
        let [scale, bias, threshold, grey_low, document_threshold] =
            [2, 3, 4, 5, 6].map(|i| f32::from_le_bytes(word(i)));
        let body = &bytes[HEADER_LEN..];
        if body.len() != 1usize << dims_log2 {
            return Err(ModelError::Length {
                dims_log2,
                len: body.len(),
            });
        }
        let weights = body.iter().map(|&b| f32::from(b as i8) * scale).collect();
        Ok(Self {
            featurizer: Featurizer::new(dims_log2),
            weights,
            bias,
            threshold,
            document_threshold,
            grey_low,
        })
    }

    pub fn load(path: &std::path::Path) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(&bytes)
    }

    /// The model shipped in the repository (`model/segment-lr-v2.bin`), compiled in.
    pub fn shipped() -> Result<Self, ModelError> {
        Self::from_bytes(SHIPPED)
    }
}

/// Name reported in `ClassifyResponse.model` for the shipped model family.
pub const MODEL_NAME: &str = "segment-lr-v2";

static SHIPPED: &[u8] = include_bytes!("../model/segment-lr-v2.bin");

pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_quantised_bytes() {
        let f = Featurizer::new(10);
        let weights: Vec<f32> = (0..1024).map(|i| ((i % 17) as f32 - 8.0) / 4.0).collect();
        let mut m = LinearModel::new(f, weights, -0.25);
        m.threshold = 0.7;
        m.grey_low = 0.3;
        m.document_threshold = 0.6;
        let back = LinearModel::from_bytes(&m.to_bytes()).expect("valid model bytes");
        assert_eq!(back.bias, -0.25);
        assert_eq!(back.threshold, 0.7);
        assert_eq!(back.grey_low, 0.3);
        assert_eq!(back.document_threshold, 0.6);
        for (a, b) in m.weights().iter().zip(back.weights()) {
            assert!((a - b).abs() <= 2.0 / 127.0 + 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn rejects_bad_files() {
        assert!(matches!(
            LinearModel::from_bytes(b""),
            Err(ModelError::Empty)
        ));
        assert!(matches!(
            LinearModel::from_bytes(b"nope, not a model at all, no no no"),
            Err(ModelError::BadMagic)
        ));
        let m = LinearModel::new(Featurizer::new(10), vec![0.0; 1024], 0.0);
        let mut bytes = m.to_bytes();
        bytes.pop();
        assert!(matches!(
            LinearModel::from_bytes(&bytes),
            Err(ModelError::Length { .. })
        ));
    }
}
