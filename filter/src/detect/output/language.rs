//! `output_language`: which language an answer is in, told by script and then by common
//! function words, and whether it is one the operator expects.

use super::finding;
use crate::detect::{DetectorId, Finding};

/// Languages the detector can tell apart (by script, then by common function words).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Language {
    English,
    Spanish,
    French,
    German,
    Italian,
    Portuguese,
    Russian,
    Chinese,
    Japanese,
    Korean,
    Arabic,
    Other,
}

impl Language {
    pub fn code(self) -> &'static str {
        match self {
            Language::English => "en",
            Language::Spanish => "es",
            Language::French => "fr",
            Language::German => "de",
            Language::Italian => "it",
            Language::Portuguese => "pt",
            Language::Russian => "ru",
            Language::Chinese => "zh",
            Language::Japanese => "ja",
            Language::Korean => "ko",
            Language::Arabic => "ar",
            Language::Other => "other",
        }
    }

    /// The languages the detector tells apart (all but `Other`).
    pub const KNOWN: [Language; 11] = [
        Language::English,
        Language::Spanish,
        Language::French,
        Language::German,
        Language::Italian,
        Language::Portuguese,
        Language::Russian,
        Language::Chinese,
        Language::Japanese,
        Language::Korean,
        Language::Arabic,
    ];

    pub fn from_code(code: &str) -> Option<Self> {
        Self::KNOWN.into_iter().find(|l| l.code() == code)
    }
}

const STOPWORDS: &[(Language, &[&str])] = &[
    (
        Language::English,
        &[
            "the", "and", "is", "of", "to", "you", "that", "it", "with", "for", "are", "this",
        ],
    ),
    (
        Language::Spanish,
        &[
            "el", "la", "de", "que", "y", "en", "los", "es", "por", "para", "una", "con", "las",
        ],
    ),
    (
        Language::French,
        &[
            "le", "la", "les", "de", "et", "est", "une", "des", "que", "pour", "dans", "vous",
            "pas",
        ],
    ),
    (
        Language::German,
        &[
            "der", "die", "und", "ist", "das", "nicht", "ich", "sie", "mit", "den", "ein", "zu",
            "es",
        ],
    ),
    (
        Language::Italian,
        &[
            "il", "di", "che", "e", "la", "per", "non", "una", "sono", "gli", "con", "del", "della",
        ],
    ),
    (
        Language::Portuguese,
        &[
            "o", "de", "que", "e", "do", "da", "em", "um", "para", "nao", "uma", "os", "com",
            "voce",
        ],
    ),
];

/// Guesses the main language of `text`; None if there is too little text to tell.
pub fn detect_language(text: &str) -> Option<Language> {
    let (mut latin, mut cyr, mut han, mut kana, mut hangul, mut arabic) = (0, 0, 0, 0, 0, 0);
    for c in text.chars().take(4000) {
        match c as u32 {
            0x41..=0x5A | 0x61..=0x7A | 0xC0..=0x24F => latin += 1,
            0x400..=0x4FF => cyr += 1,
            0x3040..=0x30FF => kana += 1,
            0x4E00..=0x9FFF | 0x3400..=0x4DBF => han += 1,
            0xAC00..=0xD7AF | 0x1100..=0x11FF => hangul += 1,
            0x600..=0x6FF => arabic += 1,
            _ => {}
        }
    }
    let total = latin + cyr + han + kana + hangul + arabic;
    if total < 12 {
        return None;
    }
    if kana * 10 >= total {
        return Some(Language::Japanese);
    }
    for (n, l) in [
        (hangul, Language::Korean),
        (han, Language::Chinese),
        (cyr, Language::Russian),
        (arabic, Language::Arabic),
    ] {
        if n * 2 > total {
            return Some(l);
        }
    }
    if latin * 2 <= total {
        return Some(Language::Other);
    }
    let mut counts = [0usize; 6];
    for w in text
        .split(|c: char| !sluice_text::chars::is_alphabetic(c))
        .take(2000)
    {
        let w = w.to_lowercase();
        let w = w.replace('ã', "a");
        for (k, (_, words)) in STOPWORDS.iter().enumerate() {
            if words.contains(&w.as_str()) {
                counts[k] += 1;
            }
        }
    }
    let (best, n) = counts.iter().enumerate().max_by_key(|(_, n)| **n)?;
    if *n < 2 {
        return None;
    }
    STOPWORDS.get(best).map(|(l, _)| *l)
}

/// `OUTPUT_LANGUAGE` (kind = detected code) if the answer's language is not expected.
pub fn check_language(text: &str, allowed: &[Language]) -> Option<Finding> {
    let lang = detect_language(text)?;
    (!allowed.contains(&lang))
        .then(|| finding(DetectorId::OutputLanguage, lang.code(), 0, text.len(), 0.8))
}
