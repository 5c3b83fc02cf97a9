//! The two normal forms of a text. [`for_matching`] folds every trick attackers use to slip
//! past word lists (full-width and mathematical letters, homoglyphs, zero-width and bidi
//! controls, accents, leetspeak, spaced-out letters) into plain lower-case text on one line,
//! with a map back to the original byte offsets; the filter's detectors match on it.
//! [`for_model`] folds only the disguises, keeps line breaks and words as written; the
//! judge's models score it.

mod ascii;
mod general;
mod model;
#[cfg(test)]
mod tests;

use crate::chars::{fold_accent, fold_compat, is_invisible, tag_ascii};
use ascii::normalize_ascii;
use general::normalize_chars;
pub use model::for_model;

/// A normalised view of a text. `map[i]` is the original byte offset of normalised byte `i`.
#[derive(Default, Debug)]
pub struct Normalized {
    pub text: String,
    pub map: Vec<u32>,
}

impl Normalized {
    /// Original byte range covering normalised range `a..b` (clamped, never panics).
    pub fn original_span(&self, a: usize, b: usize, original_len: usize) -> std::ops::Range<usize> {
        let start = self.map.get(a).copied().unwrap_or(0) as usize;
        let end = if b == 0 {
            start
        } else {
            self.map
                .get(b - 1)
                .map(|&o| o as usize + 1)
                .unwrap_or(original_len)
        };
        let end = end.min(original_len).max(start);
        start.min(original_len)..end
    }
}

/// Pre-folding of one char (invisible → None).
pub(crate) fn prefold(c: char) -> Option<char> {
    if c.is_ascii() {
        return Some(c.to_ascii_lowercase());
    }
    // Cyrillic and CJK ideographs: nothing to fold here (homoglyphs are folded in context).
    if matches!(c as u32, 0x400..=0x4FF | 0x4E00..=0x9FFF) {
        return Some(c);
    }
    prefold_other(c)
}

fn prefold_other(c: char) -> Option<char> {
    if let Some(ascii) = tag_ascii(c) {
        return Some(ascii.to_ascii_lowercase());
    }
    if is_invisible(c) {
        return None;
    }
    let c = fold_compat(c);
    Some(if c.is_ascii() {
        c.to_ascii_lowercase()
    } else {
        fold_accent(c)
    })
}

pub(crate) fn is_latin(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_ascii_alphabetic())
}

/// Normalises `src` into `out` (cleared first).
/// Line by line, so the ASCII fast path serves every line without a non-ASCII char; the line
/// breaks become single spaces, as any whitespace does. Both paths append bytes to one buffer
/// that is checked as UTF-8 once at the end.
pub fn for_matching(src: &str, out: &mut Normalized) {
    let mut text = std::mem::take(&mut out.text).into_bytes();
    text.clear();
    out.map.clear();
    text.reserve(src.len());
    out.map.reserve(src.len());
    let mut scratch = Scratch::default();
    let mut base = 0usize;
    // `memchr` finds the line breaks faster than `str::split`.
    let breaks = memchr::memchr_iter(b'\n', src.as_bytes()).chain(std::iter::once(src.len()));
    for end in breaks {
        let Some(line) = src.get(base..end) else {
            break;
        };
        if base > 0 && text.last().is_some_and(|c| *c != b' ') {
            text.push(b' ');
            out.map.push((base - 1) as u32);
        }
        if line.is_ascii() {
            normalize_ascii(
                line.as_bytes(),
                base,
                &mut text,
                &mut out.map,
                &mut scratch.cands,
            );
        } else {
            normalize_mixed(line, base, &mut text, &mut out.map, &mut scratch);
        }
        base += line.len() + 1;
    }
    out.text = match String::from_utf8(text) {
        Ok(t) => t,
        // Unreachable (only whole chars are pushed); keep text and map consistent anyway.
        Err(_) => {
            out.map.clear();
            String::new()
        }
    };
}

/// A line with some non-ASCII chars, cut at whitespace into chunks that no fold reaches
/// across: each ASCII chunk takes the ASCII path, only the others the general path.
///
/// A cut is safe after a word of two or more ASCII letters or after ASCII punctuation that
/// never folds (`.`, `,`, …): homoglyph and leetspeak folds look only inside a word, and a
/// spaced-out word ("i g n o r e") is single letters with separators, so it neither ends with
/// a two-letter word nor takes a punctuation mark before a space as one of its letters. Every
/// chunk ends with its whitespace, so the output so far is empty or ends with a space and each
/// chunk's own whitespace collapse sees what it would have seen in the whole line.
fn normalize_mixed(
    line: &str,
    base: usize,
    text: &mut Vec<u8>,
    map: &mut Vec<u32>,
    scratch: &mut Scratch,
) {
    let b = line.as_bytes();
    // Cuts are only at spaces and tabs: `memchr2` jumps to them.
    let ends = memchr::memchr2_iter(b' ', b'\t', b)
        .filter(|&p| {
            p >= 1
                && (p >= 2 && b[p - 1].is_ascii_alphabetic() && b[p - 2].is_ascii_alphabetic()
                    || matches!(b[p - 1], b'.' | b',' | b';' | b':' | b'?' | b')' | b'"'))
        })
        .map(|p| p + 1)
        .chain(std::iter::once(b.len()));
    // Neighbouring chunks of one kind are folded together (no cut is needed between them):
    // fewer, longer calls. `run` is where the chunks not yet folded start, and their kind.
    let mut run: Option<(usize, bool)> = None;
    let mut seg = 0;
    for e in ends {
        let ascii = b.get(seg..e).is_some_and(|s| s.is_ascii());
        if let Some((start, kind)) = run.filter(|r| r.1 != ascii) {
            chunk(line, start..seg, kind, base, text, map, scratch);
            run = None;
        }
        run.get_or_insert((seg, ascii));
        seg = e;
    }
    if let Some((start, kind)) = run {
        chunk(line, start..seg, kind, base, text, map, scratch);
    }
}

/// Chunks `range` of a mixed line (see `normalize_mixed`), all ASCII or none.
fn chunk(
    line: &str,
    range: std::ops::Range<usize>,
    ascii: bool,
    base: usize,
    text: &mut Vec<u8>,
    map: &mut Vec<u32>,
    scratch: &mut Scratch,
) {
    let a = range.start;
    let Some(part) = line.get(range) else { return };
    if ascii {
        normalize_ascii(part.as_bytes(), base + a, text, map, &mut scratch.cands);
    } else {
        normalize_chars(part, base + a, text, map, scratch);
    }
}

/// Buffers reused across the chunks and lines of one text.
#[derive(Default)]
pub(crate) struct Scratch {
    /// Where spaced-out words may start (`fold_ascii`).
    pub(crate) cands: Vec<u32>,
    /// Chars after the first and second pass of `normalize_chars`, with original offsets.
    pub(crate) folded: Vec<(u32, char)>,
    pub(crate) chars: Vec<(u32, char)>,
}
