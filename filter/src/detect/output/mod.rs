//! Output checks on answers: script/HTML injection (XSS vectors) and refusal phrases (a sign
//! of probing) here; markdown images and links that carry data to outside hosts in
//! `exfiltration`; the checks of a whole answer that policy wires from configuration in
//! `format` (must be JSON) and `language` (expected languages).

mod exfiltration;
mod format;
mod language;
#[cfg(test)]
mod tests;

use aho_corasick::{
    AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, Anchored, Input, MatchKind, StartKind,
};

pub use exfiltration::exfiltration;
pub use format::check_json;
pub use language::{check_language, detect_language, Language};

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

pub(super) fn finding(
    detector: DetectorId,
    kind: &'static str,
    a: usize,
    b: usize,
    score: f32,
) -> Finding {
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
        disguised_script_urls(text, out);
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
                // HTML allows any whitespace, line breaks included, before the '='.
                while b
                    .get(p)
                    .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c'))
                {
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

/// Script URL schemes a browser still runs though they are not written plainly.
const SCRIPT_SCHEMES: [&[u8]; 3] = [b"javascript:", b"vbscript:", b"data:text/html"];

/// Script URLs spelled with character references or with tabs and line breaks inside
/// (`&#106;avascript:`, `jav&#x09;ascript:`, `javascript&#58;`): browsers decode references in
/// attributes and drop tabs and line breaks from URLs before they read the scheme. The plain
/// spelling is the `SCRIPT` automaton's.
fn disguised_script_urls(text: &str, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    if !b.iter().any(|c| matches!(c, b'&' | b'\t')) {
        return;
    }
    let (decoded, origin) = url_form(b);
    for scheme in SCRIPT_SCHEMES {
        let mut k = 0;
        while let Some(at) = decoded
            .get(k..)
            .and_then(|d| d.windows(scheme.len()).position(|w| w == scheme))
        {
            let (start, last) = (origin[k + at], origin[k + at + scheme.len() - 1]);
            let disguised = b[start..=last]
                .iter()
                .any(|c| matches!(c, b'&' | b'\t' | b'\n' | b'\r'));
            if disguised {
                out.push(finding(
                    DetectorId::OutputScript,
                    "SCRIPT",
                    start,
                    tag_end(b, last + 1),
                    0.9,
                ));
            }
            k += at + scheme.len();
        }
    }
}

/// `b` as a URL parser reads it, lower case: character references decoded (numeric, and the
/// few named ones a scheme can be spelled with), tabs and line breaks dropped; with, for each
/// byte, where in `b` it came from. Other non-ASCII characters become `?`.
fn url_form(b: &[u8]) -> (Vec<u8>, Vec<usize>) {
    let mut decoded = Vec::with_capacity(b.len());
    let mut origin = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let (c, len) = match b[i] {
            b'&' => char_reference(&b[i..]).unwrap_or((b'&', 1)),
            c if c.is_ascii() => (c.to_ascii_lowercase(), 1),
            _ => (b'?', 1),
        };
        if !matches!(c, b'\t' | b'\n' | b'\r') {
            decoded.push(c);
            origin.push(i);
        }
        i += len;
    }
    (decoded, origin)
}

/// The ASCII character a reference at the start of `b` stands for (`&#106;`, `&#x6A;`,
/// `&colon;`; the `;` may be missing after a number), lower case, and its length.
fn char_reference(b: &[u8]) -> Option<(u8, usize)> {
    const NAMED: [(&[u8], u8); 6] = [
        (b"&colon;", b':'),
        (b"&tab;", b'\t'),
        (b"&newline;", b'\n'),
        (b"&sol;", b'/'),
        (b"&lpar;", b'('),
        (b"&rpar;", b')'),
    ];
    if b.get(1) != Some(&b'#') {
        return NAMED.iter().find_map(|(name, c)| {
            b.get(..name.len())
                .filter(|s| s.eq_ignore_ascii_case(name))
                .map(|_| (*c, name.len()))
        });
    }
    let hex = matches!(b.get(2), Some(b'x' | b'X'));
    let from = 2 + usize::from(hex);
    let radix = if hex { 16 } else { 10 };
    let digits = b[from..]
        .iter()
        .take(8)
        .take_while(|c| (**c as char).is_digit(radix))
        .count();
    let value =
        u32::from_str_radix(std::str::from_utf8(&b[from..from + digits]).ok()?, radix).ok()?;
    let c = u8::try_from(value).ok().filter(u8::is_ascii)?;
    let len = from + digits + usize::from(b.get(from + digits) == Some(&b';'));
    Some((c.to_ascii_lowercase(), len))
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
