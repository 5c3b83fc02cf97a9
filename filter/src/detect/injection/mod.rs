//! Prompt injection and jailbreak detection. The text is normalised for matching
//! (`sluice_text::normalize::for_matching`), then one aho-corasick automaton finds lexicon entries in eight languages (the word lists are data, in
//! `lexicon/*.txt`): override verbs, their targets (instructions, rules), reveal verbs, secret
//! objects, possessives, jailbreak persona words and strong phrases. Signals combine by proximity ("ignore" then "instructions" within a few words)
//! and then by noisy-or into one score. Embedded base64/hex/URL-encoded payloads are decoded and
//! scanned the same way. Indirect-injection cues (text addressing "your response") count only in
//! tool results and documents, where no legitimate text talks to the model.

mod lexicon;
pub mod model;
#[cfg(test)]
mod tests;

use lexicon::{Class, Lexicon};
use model::LinearModel;
use Class::*;

use sluice_text::chars::is_alphanumeric;
use sluice_text::decode::decoded_payloads;
use sluice_text::normalize::{for_matching, Normalized};

use super::{DetectorId, Finding};
use crate::model::Role;

/// Lexicon score below which the model may not raise the score above the lexicon's.
const LEXICON_GATE: f32 = 0.1;

/// Window (normalised bytes) in which an override/reveal verb and its object combine.
const WINDOW: usize = 72;

/// Bytes allowed between a possessive and its object ("your own initial instructions").
const POSS_GAP: usize = 20;

/// A matched lexicon entry in the normalised text.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hit {
    class: Class,
    start: usize,
    end: usize,
    /// Pattern index: repeated hits of one pattern count once.
    pattern: usize,
}

pub struct InjectionDetector {
    ac: Option<Lexicon>,
    /// Per pattern: class, may end inside a word (`*` suffix), may start inside one (`*` prefix).
    entries: Vec<(Class, bool, bool)>,
    model: Option<LinearModel>,
}

/// Weights trained by `sluice-eval --train` (see filter/DETECTION.md).
static MODEL_BYTES: &[u8] = include_bytes!("model.bin");

impl Default for InjectionDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl InjectionDetector {
    pub fn new() -> Self {
        let (pats, entries) = lexicon::entries();
        let ac = Lexicon::new(&pats);
        InjectionDetector {
            ac,
            entries,
            model: LinearModel::from_bytes(MODEL_BYTES),
        }
    }

    /// Replaces the embedded model (None: lexicon only). Used by the trainer and tests.
    pub fn set_model(&mut self, model: Option<LinearModel>) {
        self.model = model;
    }

    /// What the model sees for one text: the lexicon score and each window's feature buckets.
    pub fn training_inputs(&self, text: &str, role: Role) -> (f32, Vec<Vec<u32>>) {
        let mut norm = Normalized::default();
        for_matching(text, &mut norm);
        let (lex, _) = self.lexicon_score(text, &norm, role);
        let mut toks = Vec::new();
        model::tokens(&norm.text, &mut toks);
        let doc = matches!(role, Role::Tool | Role::Document);
        let mut out = Vec::new();
        for w in model::windows(toks.len()) {
            let mut f = Vec::new();
            let end = (w + model::WINDOW).min(toks.len());
            model::window_features(toks.get(w..end).unwrap_or(&[]), doc, &mut f);
            out.push(f);
        }
        (lex, out)
    }

    /// Lexicon score of the text and its decoded payloads, with the span of the signals.
    fn lexicon_score(
        &self,
        text: &str,
        norm: &Normalized,
        role: Role,
    ) -> (f32, std::ops::Range<usize>) {
        let (mut score, mut span) = self.score_normalized(norm, role, text.len());
        // Decoded payloads: an encoded instruction is itself suspicious, so its signals add.
        for (range, decoded) in decoded_payloads(text, 8) {
            let mut n2 = Normalized::default();
            for_matching(&decoded, &mut n2);
            let (s, _) = self.score_normalized(&n2, role, decoded.len());
            if s > 0.2 {
                let s = 1.0 - (1.0 - s) * 0.8;
                if s > score {
                    score = s;
                    span = range;
                }
            }
        }
        (score, span)
    }

    /// Appends one `INJECTION` finding if the text carries any signal (score > 0.2).
    pub fn scan(&self, text: &str, role: Role, out: &mut Vec<Finding>) {
        let mut norm = Normalized::default();
        for_matching(text, &mut norm);
        let (lex, mut span) = self.lexicon_score(text, &norm, role);
        let mut score = lex;
        // The model decides only where the lexicon saw something: on text unlike its training
        // data (tables, code, other sources) it alone raises too many alarms. Below the gate
        // the lexicon score stands and the model is not run at all.
        if let Some(m) = self.model.as_ref().filter(|_| lex >= LEXICON_GATE) {
            let mut toks = Vec::new();
            model::tokens(&norm.text, &mut toks);
            let doc = matches!(role, Role::Tool | Role::Document);
            score = best_window_score(m, &toks, doc, lex);
            if span.is_empty() {
                span = 0..text.len();
            }
        }
        if role == Role::System {
            // Operators write "never reveal your instructions" in system prompts themselves.
            score *= 0.6;
        }
        if score > 0.2 {
            out.push(Finding {
                detector: DetectorId::PromptInjection,
                kind: "INJECTION",
                span,
                score: score.clamp(0.0, 1.0),
            });
        }
    }

    pub(crate) fn hits(&self, s: &str) -> Vec<Hit> {
        let mut hits = Vec::new();
        let Some(ac) = &self.ac else { return hits };
        let mut found = Vec::new();
        ac.matches(s.as_bytes(), &mut found);
        for (idx, a, b) in found {
            let Some(&(class, stem, infix)) = self.entries.get(idx) else {
                continue;
            };
            let first = s.get(a..).and_then(|t| t.chars().next());
            let last = s.get(..b).and_then(|t| t.chars().next_back());
            let before = s.get(..a).and_then(|t| t.chars().next_back());
            let after = s.get(b..).and_then(|t| t.chars().next());
            let wordy = |c: Option<char>| c.is_some_and(|c| is_alphanumeric(c) && !is_cjk(c));
            if !infix && wordy(first) && wordy(before) {
                continue;
            }
            if !stem && wordy(last) && wordy(after) {
                continue;
            }
            hits.push(Hit {
                class,
                start: a,
                end: b,
                pattern: idx,
            });
        }
        hits
    }

    /// Score in 0..1 and the original span of the contributing hits.
    fn score_normalized(
        &self,
        norm: &Normalized,
        role: Role,
        orig_len: usize,
    ) -> (f32, std::ops::Range<usize>) {
        let hits = self.hits(&norm.text);
        let indirect = matches!(role, Role::Tool | Role::Document);
        // Best weight per signal key; noisy-or over distinct keys.
        let mut signals: Vec<(usize, f32)> = Vec::new();
        let mut lo = usize::MAX;
        let mut hi = 0usize;
        let mut add = |key: usize, w: f32, a: usize, b: usize| {
            if let Some(s) = signals.iter_mut().find(|s| s.0 == key) {
                s.1 = s.1.max(w);
            } else {
                signals.push((key, w));
            }
            lo = lo.min(a);
            hi = hi.max(b);
        };
        const OVERRIDE_KEY: usize = usize::MAX;
        const REVEAL_KEY: usize = usize::MAX - 1;
        const POSS_KEY: usize = usize::MAX - 2;
        const SECRET_KEY: usize = usize::MAX - 3;
        const REVERSE_KEY: usize = usize::MAX - 4;
        for (i, h) in hits.iter().enumerate() {
            let negated = i > 0
                && hits
                    .get(i - 1)
                    .is_some_and(|p| p.class == Negation && h.start.saturating_sub(p.end) <= 2);
            // Each lexicon word is a weak signal on its own; proximity combos below are strong.
            let base = match h.class {
                Override => 0.2,
                Target | Sensitive => 0.12,
                Reveal => 0.08,
                _ => 0.0,
            };
            if base > 0.0 && !negated {
                add(h.pattern, base, h.start, h.end);
            }
            match h.class {
                Override if !negated => {
                    if let Some(t) = follow(&hits, i, WINDOW, |c| matches!(c, Target | Secret)) {
                        add(OVERRIDE_KEY, 0.9, h.start, t.end);
                    }
                }
                Target => {
                    // "Anweisungen ignorieren", "instructions should be ignored".
                    if let Some(o) = follow(&hits, i, 32, |c| c == Override) {
                        add(REVERSE_KEY, 0.75, h.start, o.end);
                    }
                }
                Reveal if !negated => {
                    if let Some(t) = follow(&hits, i, WINDOW, |c| c == Secret) {
                        add(REVEAL_KEY, 0.85, h.start, t.end);
                    } else if let Some(t) = possessed(&hits, i, WINDOW) {
                        add(REVEAL_KEY, 0.85, h.start, t.end);
                    } else if let Some(t) = follow(&hits, i, 24, |c| c == Sensitive) {
                        add(REVEAL_KEY, 0.45, h.start, t.end);
                    }
                }
                Ask if !negated => {
                    if let Some(t) = possessed(&hits, i, 40) {
                        add(REVEAL_KEY, 0.75, h.start, t.end);
                    }
                }
                Secret => add(SECRET_KEY, 0.45, h.start, h.end),
                Possessive => {
                    // "your instructions", "your own hidden configuration": the model's own
                    // set-up is rarely the subject of a benign request.
                    if let Some(t) = hits.get(i + 1) {
                        if matches!(t.class, Target | Secret | Sensitive)
                            && t.start.saturating_sub(h.end) <= POSS_GAP
                        {
                            add(POSS_KEY, 0.6, h.start, t.end);
                        }
                    }
                }
                Phrase(w) => add(h.pattern, w, h.start, h.end),
                Indirect(w) if indirect => add(h.pattern, w, h.start, h.end),
                _ => {}
            }
        }
        let mut keep = 1.0f32;
        for (_, w) in &signals {
            keep *= 1.0 - w.clamp(0.0, 0.99);
        }
        let score = 1.0 - keep;
        let span = if lo == usize::MAX {
            0..0
        } else {
            norm.original_span(lo, hi, orig_len)
        };
        (score, span)
    }
}

/// The model's highest score over the windows of `toks`: the same as scoring each window's
/// `window_features`, but every unigram and bigram weight is looked up once (windows overlap
/// by half) and each window's sum is a difference of running totals.
fn best_window_score(m: &LinearModel, toks: &[u32], doc: bool, lex: f32) -> f32 {
    // uni[k], bi[k]: total weight of unigrams 0..k and of bigrams ending at 1..k.
    let mut uni = vec![0i32; toks.len() + 1];
    let mut bi = vec![0i32; toks.len() + 1];
    let (mut u, mut g) = (0i32, 0i32);
    let mask = (model::BUCKETS - 1) as u32;
    let mut prev: Option<u32> = None;
    let sums = uni.iter_mut().skip(1).zip(bi.iter_mut().skip(1));
    for (&t, (su, sb)) in toks.iter().zip(sums) {
        u += i32::from(m.weight(t & mask));
        if let Some(p) = prev {
            g += i32::from(m.weight(model::bigram(p, t)));
        }
        prev = Some(t);
        *su = u;
        *sb = g;
    }
    let doc_w = if doc {
        i32::from(m.weight(model::DOCUMENT_FEATURE))
    } else {
        0
    };
    let mut best = 0.0f32;
    for w in model::windows(toks.len()) {
        let end = (w + model::WINDOW).min(toks.len());
        let len = end.saturating_sub(w);
        let at = |v: &Vec<i32>, i: usize| v.get(i).copied().unwrap_or(0);
        // Bigrams inside the window end at w+1..end.
        let bigrams = if len > 1 {
            at(&bi, end) - at(&bi, w + 1)
        } else {
            0
        };
        let sum = at(&uni, end) - at(&uni, w) + bigrams + doc_w;
        let n = len + len.saturating_sub(1) + usize::from(doc);
        best = best.max(m.score_sum(sum as f32, n, lex));
    }
    best
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF)
}

/// The first later hit of a class within `window` bytes after hit `i` ends.
fn follow(hits: &[Hit], i: usize, window: usize, want: impl Fn(Class) -> bool) -> Option<&Hit> {
    let h = hits.get(i)?;
    hits.iter()
        .skip(i + 1)
        .take_while(|t| t.start.saturating_sub(h.end) <= window)
        .find(|t| want(t.class))
}

/// A possessive followed closely by a target/secret/sensitive object, within `window` of hit `i`.
fn possessed(hits: &[Hit], i: usize, window: usize) -> Option<&Hit> {
    let h = hits.get(i)?;
    let mut it = hits
        .iter()
        .skip(i + 1)
        .take_while(|t| t.start.saturating_sub(h.end) <= window)
        .peekable();
    while let Some(p) = it.next() {
        if p.class == Possessive {
            if let Some(t) = it.peek() {
                if matches!(t.class, Target | Secret | Sensitive)
                    && t.start.saturating_sub(p.end) <= POSS_GAP
                {
                    return Some(t);
                }
            }
        }
    }
    None
}
