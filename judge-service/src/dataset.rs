//! `sluice-judge dataset`: the encoder's training manifest, written by the service's own code so
//! that training sees text exactly as serving does (the same normalisation), with the same
//! held-out split as the n-gram model, each row's source family (the unit left out in
//! leave-family-out evaluation) and, for long attack texts, the segment that carries the attack.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::data;
use crate::model::LinearModel;
use sluice_text::normalize::for_model;
use sluice_text::segment::segment_ranges;

/// Dev files the manifest is built from (never the test file).
pub const FILES: [&str; 2] = [data::DEV_FILE, data::EXTRA_FILE];

/// Attack texts longer than this (bytes of normalised text) name their most suspicious segment:
/// a training window of the encoder must hold the injection, not only its carrier document.
const FOCUS_MIN_BYTES: usize = 400;

#[derive(serde::Serialize)]
struct ManifestRow<'a> {
    text: String,
    label: u8,
    source: &'a str,
    family: String,
    lang: &'a str,
    category: &'a str,
    document: bool,
    held_out: bool,
    /// Byte offset of the attack's most suspicious segment in `text`, for long attacks.
    focus: Option<usize>,
    /// The n-gram model's score, to compare and combine the two models on the same rows.
    ngram: f32,
}

/// Writes one JSON line per row of the dev files and of `more` (generated rows, see
/// `train/synthesize.py`); returns the number of rows written.
pub fn export(
    data_dir: &Path,
    more: &[PathBuf],
    model: &LinearModel,
    out: &mut impl Write,
) -> Result<usize, Box<dyn std::error::Error>> {
    let mut n = 0;
    let files = FILES
        .iter()
        .map(|f| data_dir.join(f))
        .chain(more.iter().cloned());
    for file in files {
        for row in data::load(&file)? {
            let text = for_model(&row.text);
            let focus = (row.label == 1 && text.len() > FOCUS_MIN_BYTES)
                .then(|| most_suspicious_offset(model, &text))
                .flatten();
            let line = ManifestRow {
                family: data::family(&row.source).to_string(),
                source: &row.source,
                lang: row.lang.as_deref().unwrap_or(""),
                category: row.category.as_deref().unwrap_or(""),
                document: data::is_document(&row),
                held_out: data::is_held_out(&row),
                label: row.label,
                focus,
                ngram: model.score_normalised(&text),
                text,
            };
            serde_json::to_writer(&mut *out, &line)?;
            out.write_all(b"\n")?;
            n += 1;
        }
    }
    Ok(n)
}

fn most_suspicious_offset(model: &LinearModel, text: &str) -> Option<usize> {
    segment_ranges(text)
        .into_iter()
        .map(|r| (r.start, model.score_segment(&text[r])))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(start, _)| start)
}
