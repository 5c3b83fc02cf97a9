//! Secrets: credentials with a recognisable shape (provider prefixes, JWTs, PEM private keys,
//! connection strings with passwords) and high-entropy values assigned to a key word
//! (`api_key = "…"`, `Authorization: Bearer …`). Prefixes and key words are found with
//! aho-corasick; each candidate is then read by hand and checked for length, charset,
//! entropy and placeholder look (`xxxx`, `<token>`, `${VAR}`).

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, Input, MatchKind};

mod forms;
mod shapes;
#[cfg(test)]
mod tests;

use super::{is_alnum_at, DetectorId, Finding};
use forms::{
    connection_strings, curl_user, facebook_app_tokens, jwts, pem_keys, redacted_tail, sidekiq,
};
use shapes::{Shape, KEYWORDS, PUBLIC_EXAMPLE_KEYS, SHAPES};

pub struct SecretDetector {
    prefixes: Option<AhoCorasick>,
    keywords: Option<AhoCorasick>,
    /// Shortest run of token bytes (`TOKEN`) that can hold a prefix and its body.
    min_run: usize,
    /// How far before a run a prefix may start (prefixes with a space: `FlyV1 `).
    lookback: usize,
}

/// Bytes of token-like runs: every prefix and body byte except the spaces of a few prefixes.
static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric()
            || matches!(b, b'_' | b'-' | b'.' | b'/' | b'+' | b'=' | b'~');
        c += 1;
    }
    t
};

/// Calls `f` with each maximal run of `TOKEN` bytes at least `min` long, in order. A run that
/// long covers the byte `min - 1` after any point before it, so the scan probes one byte in
/// `min` and reads only around the probes that land on a token byte.
fn long_runs(b: &[u8], min: usize, mut f: impl FnMut(std::ops::Range<usize>)) {
    let min = min.max(1);
    let mut i = 0;
    while let Some(&c) = b.get(i + min - 1) {
        let probe = i + min - 1;
        if !TOKEN[c as usize] {
            i = probe + 1;
            continue;
        }
        let mut start = probe;
        while start > i && TOKEN[b[start - 1] as usize] {
            start -= 1;
        }
        let mut end = probe + 1;
        while end < b.len() && TOKEN[b[end] as usize] {
            end += 1;
        }
        if end - start >= min {
            f(start..end);
        }
        i = end;
    }
}

/// For a prefix: how many of its leading bytes lie outside the token run that holds its body
/// (up to and including its last non-token byte), and the shortest such run.
fn run_needs(s: &Shape) -> (usize, usize) {
    let cut = s
        .prefix
        .bytes()
        .rposition(|c| !TOKEN[c as usize])
        .map_or(0, |i| i + 1);
    (cut, s.prefix.len() - cut + s.min)
}

impl Default for SecretDetector {
    fn default() -> Self {
        Self::new()
    }
}

fn finding(kind: &'static str, a: usize, b: usize, score: f32) -> Finding {
    Finding {
        detector: DetectorId::Secrets,
        kind,
        span: a..b,
        score,
    }
}

impl SecretDetector {
    pub fn new() -> Self {
        let prefixes = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .kind(Some(AhoCorasickKind::DFA))
            .build(SHAPES.iter().map(|s| s.prefix))
            .ok();
        let keywords = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .kind(Some(AhoCorasickKind::DFA))
            .build(KEYWORDS)
            .ok();
        let min_run = SHAPES.iter().map(|s| run_needs(s).1).min().unwrap_or(0);
        let lookback = SHAPES.iter().map(|s| run_needs(s).0).max().unwrap_or(0);
        SecretDetector {
            prefixes,
            keywords,
            min_run,
            lookback,
        }
    }

    /// Appends secret findings, non-overlapping (specific shapes win over generic ones).
    pub fn scan(&self, text: &str, out: &mut Vec<Finding>) {
        let b = text.as_bytes();
        let mut found: Vec<Finding> = Vec::new();
        pem_keys(text, &mut found);
        jwts(text, &mut found);
        connection_strings(text, &mut found);
        if let Some(ac) = &self.prefixes {
            // Prefilter: a prefix and its body lie in one run of token bytes (a prefix with a
            // space just before it) at least `min_run` long. Prose has few such runs, so the
            // automaton reads a small part of the text.
            let mut searched = 0;
            long_runs(b, self.min_run, |run| {
                let from = run.start.saturating_sub(self.lookback).max(searched);
                self.prefixed(ac, text, from..run.end, &mut found);
                searched = run.end;
            });
        }
        self.assigned(text, &mut found);
        curl_user(text, &mut found);
        sidekiq(text, &mut found);
        facebook_app_tokens(text, &mut found);
        found.sort_by_key(|f| (f.span.start, std::cmp::Reverse(f.span.end)));
        let mut last_end = 0;
        for f in found {
            if f.span.start >= last_end {
                last_end = f.span.end;
                out.push(f);
            }
        }
    }

    /// Provider shapes whose prefix lies in `range` of `text`.
    fn prefixed(
        &self,
        ac: &AhoCorasick,
        text: &str,
        range: std::ops::Range<usize>,
        found: &mut Vec<Finding>,
    ) {
        let b = text.as_bytes();
        {
            for m in ac.find_iter(Input::new(text).range(range)) {
                let Some(s) = SHAPES.get(m.pattern().as_usize()) else {
                    continue;
                };
                // A prefix after a letter, digit or dot is inside a word or a file name
                // ("video_box.ico-7a38….png"), not the start of a token.
                if s.boundary
                    && m.start() > 0
                    && (is_alnum_at(b, m.start() - 1) || b[m.start() - 1] == b'.')
                {
                    continue;
                }
                let mut e = m.end();
                while e < b.len() && s.body.allows(b[e]) && e - m.end() <= s.max {
                    e += 1;
                }
                let n = e - m.end();
                if n < s.min || n > s.max || redacted_tail(b, e) {
                    continue;
                }
                let body = &text[m.end()..e];
                if !body.ends_with(s.suffix)
                    || is_placeholder(body)
                    || PUBLIC_EXAMPLE_KEYS.contains(&&text[m.start()..e])
                    || (n >= 16 && entropy(body) < 2.8)
                {
                    continue;
                }
                found.push(finding(s.kind, m.start(), e, 0.95));
            }
        }
    }

    /// `key = value` and `Authorization: Bearer value` with a high-entropy value.
    ///
    /// Key words are common inside words ("id", "key", "pass"), so the key-word automaton reads
    /// only the identifiers that can lead to a value: the ones right before an assignment
    /// operator (`:`, `=`, `->`) or "is ", and each "bearer". Key words are identifier bytes and
    /// every window starts after a non-identifier byte, so the automaton finds the same key
    /// words there as over the whole text (a proptest compares the two).
    fn assigned(&self, text: &str, out: &mut Vec<Finding>) {
        let Some(ac) = &self.keywords else { return };
        let b = text.as_bytes();
        let mut windows: Vec<(usize, usize)> = Vec::new();
        let mut before = |at: usize, end: usize| windows.push((identifier_start(b, at), end));
        for q in memchr::memchr2_iter(b':', b'=', b) {
            before(q, q);
        }
        for q in memchr::memmem::find_iter(b, b"->") {
            before(q, q);
        }
        for q in memchr::memchr2_iter(b'i', b'I', b) {
            if b.get(q + 1..q + 3)
                .is_some_and(|s| s.eq_ignore_ascii_case(b"s "))
            {
                before(q, q);
            }
        }
        for q in memchr::memchr2_iter(b'b', b'B', b) {
            if b.get(q..q + 6)
                .is_some_and(|s| s.eq_ignore_ascii_case(b"bearer"))
            {
                windows.push((q, q + 6));
            }
        }
        windows.sort_unstable();
        let mut merged: Option<(usize, usize)> = None;
        for (s, e) in windows.into_iter().chain([(usize::MAX, usize::MAX)]) {
            match merged {
                Some((ms, me)) if s <= me => merged = Some((ms, me.max(e))),
                _ => {
                    if let Some((ms, me)) = merged.replace((s, e)) {
                        for m in ac.find_iter(Input::new(text).range(ms..me)) {
                            self.assigned_at(text, m, out);
                        }
                    }
                }
            }
        }
    }

    /// The value assigned after the key word `m`, if it reads like a secret.
    fn assigned_at(&self, text: &str, m: aho_corasick::Match, out: &mut Vec<Finding>) {
        let b = text.as_bytes();
        // A key word starts a word or a camelCase part: "apiKey", "mailgun_token", not
        // "monkey" or "video".
        let first = b.get(m.start()).copied().unwrap_or(b' ');
        let prev = m.start().checked_sub(1).and_then(|i| b.get(i)).copied();
        let starts_word = match prev {
            None => true,
            Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit() => first.is_ascii_uppercase(),
            Some(c) if c.is_ascii_uppercase() => false,
            Some(_) => true,
        };
        if !starts_word {
            return;
        }
        let strong_key = b.get(m.start()..m.end()).is_some_and(|k| {
            [&b"password"[..], b"passwd", b"pwd", b"secret", b"pass"]
                .iter()
                .any(|w| k.eq_ignore_ascii_case(w))
        });
        let mut p = m.end();
        // Rest of the identifier: `_TOKEN4`, `Token`, `_key_id`.
        while p < b.len() && (b[p].is_ascii_alphanumeric() || matches!(b[p], b'_' | b'-' | b'.')) {
            p += 1;
        }
        while p < b.len() && matches!(b[p], b'"' | b'\'' | b'`' | b']') {
            p += 1;
        }
        while p < b.len() && b[p] == b' ' {
            p += 1;
        }
        let sep_start = p;
        let rest = &b[p..];
        // Assignment operators: `:`, `=`, `:=`, `=>`, `->`, and make's `::=`, `:::=`, `?=`.
        let op = rest
            .iter()
            .take(4)
            .take_while(|c| matches!(c, b':' | b'=' | b'?'))
            .count();
        if rest.starts_with(b"=>") || rest.starts_with(b"->") {
            p += 2;
        } else if op > 0 && rest[..op].iter().any(|c| matches!(c, b':' | b'=')) {
            p += op;
        } else if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case(b"is ") {
            p += 3;
        }
        let is_bearer = b
            .get(m.start()..m.end())
            .is_some_and(|k| k.eq_ignore_ascii_case(b"bearer"));
        if p == sep_start && !is_bearer {
            return;
        }
        while p < b.len() && matches!(b[p], b' ' | b'\t' | b'"' | b'\'' | b'`' | b'\n' | b'\r') {
            p += 1;
            if p - sep_start > 24 {
                break;
            }
        }
        for scheme in [&b"Bearer "[..], b"bearer ", b"Basic ", b"Token ", b"token "] {
            if b.get(p..p + scheme.len()) == Some(scheme) {
                p += scheme.len();
            }
        }
        let start = p;
        while p < b.len()
            && (b[p].is_ascii_alphanumeric()
                || matches!(
                    b[p],
                    b'_' | b'-'
                        | b'.'
                        | b'/'
                        | b'+'
                        | b'='
                        | b'~'
                        | b':'
                        | b'!'
                        | b'@'
                        | b'#'
                        | b'$'
                        | b'%'
                        | b'^'
                        | b'&'
                        | b'*'
                ))
        {
            p += 1;
        }
        let mut end = p;
        while end > start && matches!(b[end - 1], b'.' | b':' | b',') {
            end -= 1;
        }
        let Some(value) = text.get(start..end) else {
            return;
        };
        // A value cut short ("ops_eyJz..", "abc…[redacted]") is an example, not a secret.
        let truncated = text
            .get(end..)
            .is_some_and(|t| t.starts_with("..") || t.starts_with('…'));
        let min_len = if strong_key { 8 } else { 12 };
        if value.len() >= min_len && !truncated && looks_secret(value) {
            out.push(finding("GENERIC_SECRET", start, end, 0.7));
        }
    }
}

/// Start of the identifier that ends before `at`, past any spaces, quotes and operator bytes
/// between them (`api_key" ?= `): where a key word leading to `at` can begin.
fn identifier_start(b: &[u8], at: usize) -> usize {
    let mut s = at.min(b.len());
    while s > 0 && matches!(b[s - 1], b':' | b'=' | b'?') {
        s -= 1;
    }
    while s > 0 && b[s - 1] == b' ' {
        s -= 1;
    }
    while s > 0 && matches!(b[s - 1], b'"' | b'\'' | b'`' | b']') {
        s -= 1;
    }
    while s > 0 && (b[s - 1].is_ascii_alphanumeric() || matches!(b[s - 1], b'_' | b'-' | b'.')) {
        s -= 1;
    }
    s
}

/// A value that reads like a credential: long enough, mixed, high entropy, not a placeholder.
fn looks_secret(v: &str) -> bool {
    let n = v.len();
    if !(8..=512).contains(&n) || is_placeholder(v) {
        return false;
    }
    let digits = v.bytes().filter(u8::is_ascii_digit).count();
    let letters = v.bytes().filter(u8::is_ascii_alphabetic).count();
    // Digit-only ids and keys count from 16 digits; letter-only words need 20 chars.
    if letters == 0 && n < 16 || digits == 0 && n < 20 || v.contains("..") {
        return false;
    }
    // Words, paths and identifiers: mostly letters with separators but no digits.
    if v.starts_with("http") || v.starts_with('/') || v.starts_with("${") || v.contains("::") {
        return false;
    }
    let h = entropy(v);
    if n < 16 {
        h >= 2.8
    } else {
        h >= 3.0
    }
}

fn is_placeholder(v: &str) -> bool {
    let lower = v.to_ascii_lowercase();
    let b = lower.as_bytes();
    let x_or_star = b
        .iter()
        .filter(|c| matches!(c, b'x' | b'*' | b'.' | b'0' | b'#'))
        .count();
    x_or_star * 2 > b.len()
        || [
            "example",
            "your",
            "<",
            "{{",
            "${",
            "placeholder",
            "changeme",
            "redacted",
            "dummy",
            "sample",
            "fake",
            "xxxx",
            "****",
            "####",
            "abcdefgh",
            "qwerty",
            "here",
            "random",
            "string",
            "insert",
            "replace",
            "todo",
            "password",
            "username",
            "[",
        ]
        .iter()
        .any(|p| lower.contains(p))
        || b.windows(5).any(|w| w.iter().all(|c| *c == w[0]))
}

/// Shannon entropy in bits per byte.
pub fn entropy(s: &str) -> f32 {
    let mut counts = [0u32; 256];
    for c in s.bytes() {
        counts[c as usize] += 1;
    }
    let n = s.len() as f32;
    if n == 0.0 {
        return 0.0;
    }
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|&c| {
            let p = c as f32 / n;
            -p * p.log2()
        })
        .sum()
}
