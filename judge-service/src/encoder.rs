//! The fine-tuned transformer encoder (all-MiniLM-L6-v2 + a linear head, int8) run in ONNX
//! Runtime. A text longer than one window is scored in overlapping token windows, all in one
//! batch, and its most suspicious window decides: one injected sentence in a long e-mail counts.
//! Window geometry and operating points come from the model's `encoder.json`, written by
//! `judge-service/train/train_encoder.py`, so training and serving cannot drift apart.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::Session;
use ort::value::Tensor;
use tokenizers::Tokenizer;

/// The shipped model's directory (`encoder.onnx`, `tokenizer.json`, `encoder.json`).
pub const SHIPPED_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/model/encoder-v1");

const CLS: i64 = 101;
const SEP: i64 = 102;

#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    #[error(
        "ONNX Runtime library not found: set ORT_DYLIB_PATH (or --onnxruntime-lib) to the \
         libonnxruntime.so that PyPI's onnxruntime wheel ships ({0})"
    )]
    Runtime(String),
    #[error("loading the encoder from {path}: {reason}")]
    Load { path: String, reason: String },
    #[error("encoder inference failed: {0}")]
    Inference(String),
}

/// What `encoder.json` holds: window geometry and the operating points picked on held-out rows.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct EncoderMeta {
    pub name: String,
    /// Tokens per window, `[CLS]` and `[SEP]` included.
    pub max_len: usize,
    /// Content tokens between window starts.
    pub stride: usize,
    /// Weight of the n-gram model's logit in the served score (see [`combine`]).
    #[serde(default)]
    pub ngram_weight: f32,
    pub operating_points: OperatingPoints,
}

/// Scores at or above `threshold` block; at or above `suspicious` alert. Documents (tool
/// results, retrieved pages) have their own pair: benign documents score differently.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
pub struct OperatingPoints {
    pub threshold: f32,
    pub suspicious: f32,
    pub document_threshold: f32,
    pub document_suspicious: f32,
}

pub struct Encoder {
    tokenizer: Tokenizer,
    /// `Session::run` needs `&mut`; each session is used by one caller at a time.
    sessions: Vec<Mutex<Session>>,
    pub meta: EncoderMeta,
}

/// ONNX Runtime, loaded once per process from `lib` (or `ORT_DYLIB_PATH`) on first use; later
/// calls get the same environment whatever they pass.
fn runtime(lib: Option<&Path>) -> Result<&'static Environment, EncoderError> {
    static RUNTIME: OnceLock<Result<Environment, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let path = match lib {
                Some(p) => p.to_path_buf(),
                None => std::env::var_os("ORT_DYLIB_PATH")
                    .map(PathBuf::from)
                    .ok_or("ORT_DYLIB_PATH is not set")?,
            };
            ort::init_from(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .with_name("sluice-judge")
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| EncoderError::Runtime(e.clone()))
}

impl Encoder {
    /// Loads the model in `dir` with `sessions` parallel sessions of `threads` threads each;
    /// `runtime_lib` is the ONNX Runtime library (`ORT_DYLIB_PATH` when `None`).
    pub fn load(
        dir: &Path,
        runtime_lib: Option<&Path>,
        sessions: usize,
        threads: usize,
    ) -> Result<Self, EncoderError> {
        let load_err = |what: &str, reason: String| EncoderError::Load {
            path: dir.join(what).display().to_string(),
            reason,
        };
        let meta: EncoderMeta = std::fs::read_to_string(dir.join("encoder.json"))
            .map_err(|e| load_err("encoder.json", e.to_string()))
            .and_then(|s| {
                serde_json::from_str(&s).map_err(|e| load_err("encoder.json", e.to_string()))
            })?;
        if meta.max_len < 3 || meta.stride == 0 || meta.stride > meta.max_len - 2 {
            return Err(load_err(
                "encoder.json",
                "window geometry out of range".into(),
            ));
        }
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| load_err("tokenizer.json", e.to_string()))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| load_err("tokenizer.json", e.to_string()))?;
        let env = runtime(runtime_lib)?;
        let model = dir.join("encoder.onnx");
        let sessions = (0..sessions.max(1))
            .map(|_| {
                Session::builder(env)
                    .and_then(|b| b.with_intra_threads(threads.max(1)).map_err(Into::into))
                    .and_then(|b| b.with_inter_threads(1).map_err(Into::into))
                    // ONNX Runtime's pool spins after each run by default: on a 2-core node
                    // that burns the cores Envoy and the app need between requests.
                    .and_then(|b| b.with_intra_op_spinning(false).map_err(Into::into))
                    .and_then(|mut b| b.commit_from_file(&model))
                    .map(Mutex::new)
                    .map_err(|e| load_err("encoder.onnx", e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let encoder = Self {
            tokenizer,
            sessions,
            meta,
        };
        // The first run of a session allocates its arenas and picks kernels (tens of
        // milliseconds): pay it here, before the service says it is listening, rather than
        // in a caller's deadline. One window fills a session; a long text warms the batch path.
        let warm = "warm up ".repeat(200);
        for s in &encoder.sessions {
            encoder.score_on(&mut s.lock().unwrap_or_else(|p| p.into_inner()), &warm)?;
        }
        Ok(encoder)
    }

    /// Content-token windows of `text`; every token is in at least one.
    pub fn windows(&self, text: &str) -> Result<Vec<Vec<i64>>, EncoderError> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| EncoderError::Inference(e.to_string()))?;
        let ids: Vec<i64> = enc.get_ids().iter().map(|&i| i64::from(i)).collect();
        Ok(
            window_ranges(ids.len(), self.meta.max_len - 2, self.meta.stride)
                .map(|r| ids[r].to_vec())
                .collect(),
        )
    }

    /// The attack probability of `text`: that of its most suspicious window. Blocking (a few
    /// milliseconds of CPU): call it from a blocking thread, not the async runtime.
    pub fn score(&self, text: &str) -> Result<f32, EncoderError> {
        self.score_on(&mut self.session(), text)
    }

    fn score_on(&self, session: &mut Session, text: &str) -> Result<f32, EncoderError> {
        let windows = self.windows(text)?;
        let width = windows.iter().map(Vec::len).max().unwrap_or(0) + 2;
        let mut ids = vec![0i64; windows.len() * width];
        let mut mask = vec![0i64; windows.len() * width];
        for (row, w) in windows.iter().enumerate() {
            let line = &mut ids[row * width..][..w.len() + 2];
            line[0] = CLS;
            line[1..=w.len()].copy_from_slice(w);
            line[w.len() + 1] = SEP;
            mask[row * width..][..w.len() + 2].fill(1);
        }
        let shape = [windows.len(), width];
        let infer = |e: ort::Error| EncoderError::Inference(e.to_string());
        let inputs = ort::inputs![
            "input_ids" => Tensor::from_array((shape, ids)).map_err(infer)?,
            "attention_mask" => Tensor::from_array((shape, mask)).map_err(infer)?,
        ];
        let outputs = session.run(inputs).map_err(infer)?;
        let (_, logits) = outputs["logits"]
            .try_extract_tensor::<f32>()
            .map_err(infer)?;
        let best = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        Ok(crate::model::sigmoid(best))
    }

    /// A free session if there is one, else waits for the first.
    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        for s in &self.sessions {
            if let Ok(guard) = s.try_lock() {
                return guard;
            }
        }
        // A poisoned session only means another caller panicked mid-run; ONNX Runtime's state
        // is not ours to corrupt, so keep using it.
        self.sessions[0].lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The served score: the encoder's and the n-gram model's probabilities blended in logit
/// space, `(1 - w)·logit(encoder) + w·logit(ngram)`. The n-gram model knows the dev sources'
/// wording and vetoes some of the encoder's confident mistakes ("write to X and copy Y"); the
/// encoder carries what generalises. Mirrors `combine()` in train_encoder.py.
pub fn combine(encoder: f32, ngram: f32, w: f32) -> f32 {
    const CLIP: f64 = 1e-6;
    let logit = |p: f32| {
        let p = f64::from(p).clamp(CLIP, 1.0 - CLIP);
        (p / (1.0 - p)).ln()
    };
    let z = (1.0 - f64::from(w)) * logit(encoder) + f64::from(w) * logit(ngram);
    (1.0 / (1.0 + (-z).exp())) as f32
}

/// Token ranges of the windows over `len` content tokens: `body` tokens each, starts `stride`
/// apart, the last one ending at the text's end. Mirrors `windows()` in train_encoder.py.
fn window_ranges(
    len: usize,
    body: usize,
    stride: usize,
) -> impl Iterator<Item = std::ops::Range<usize>> {
    let last = len.saturating_sub(body);
    let mut starts: Vec<usize> = (0..last).step_by(stride).collect();
    starts.push(last);
    starts.dedup();
    starts.into_iter().map(move |s| s..(s + body).min(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combine_blends_in_logit_space() {
        assert!((combine(0.9, 0.1, 0.0) - 0.9).abs() < 1e-6);
        assert!((combine(0.9, 0.1, 1.0) - 0.1).abs() < 1e-6);
        assert!((combine(0.9, 0.1, 0.5) - 0.5).abs() < 1e-6);
        // Saturated inputs stay finite and ordered.
        assert!(combine(1.0, 0.0, 0.3) > 0.99 && combine(1.0, 0.0, 0.3) < 1.0);
        assert!(combine(0.99, 0.5, 0.3) > combine(0.98, 0.5, 0.3));
    }

    #[test]
    fn windows_cover_every_token_and_overlap() {
        for len in [0usize, 1, 125, 126, 127, 200, 222, 223, 1000] {
            let ranges: Vec<_> = window_ranges(len, 126, 96).collect();
            let mut seen = vec![false; len];
            for r in &ranges {
                assert!(r.len() <= 126, "len {len}: {r:?}");
                seen[r.clone()].iter_mut().for_each(|s| *s = true);
            }
            assert!(seen.iter().all(|&s| s), "len {len}: {ranges:?}");
            assert_eq!(ranges.last().map(|r| r.end), Some(len), "len {len}");
            if len <= 126 {
                assert_eq!(ranges.len(), 1, "len {len}");
            }
        }
        // Python's windows() for 300 tokens starts at 0, 96 and 174 (the tail window).
        let starts: Vec<_> = window_ranges(300, 126, 96).map(|r| r.start).collect();
        assert_eq!(starts, [0, 96, 174]);
    }
}
