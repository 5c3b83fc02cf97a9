//! The injection lexicon: word lists in eight languages, kept as data in `lexicon/*.txt` and
//! compiled in, and the automata that find their entries in normalised text.

use aho_corasick::automaton::Automaton;
use aho_corasick::dfa::DFA;
use aho_corasick::{AhoCorasick, AhoCorasickKind, Anchored, Input, MatchKind, StartKind};

/// Lexicon classes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Class {
    /// "ignore", "forget", "bypass" … (needs a target).
    Override,
    /// "instructions", "rules", "restrictions" … (object of an override).
    Target,
    /// "reveal", "print", "repeat" … (needs a secret object).
    Reveal,
    /// "what are", "tell me" … (needs a possessive target: "your rules").
    Ask,
    /// "system prompt", "initial instructions": sensitive on their own.
    Secret,
    /// "configuration", "setup", "password": sensitive when something asks to reveal them.
    Sensitive,
    /// "your", "deine", "tus" … (makes the next target the model's own).
    Possessive,
    /// "do not", "never": cancels a following override or reveal verb.
    Negation,
    /// A standalone signal with its own weight.
    Phrase(f32),
    /// A signal that only counts in tool results and documents (indirect injection).
    Indirect(f32),
}

/// One word list: its text, whether each line starts with a weight, the class of its entries.
type List = (&'static str, bool, fn(f32) -> Class);

/// The word lists, one file per class, in the order their entries are numbered.
const LISTS: &[List] = &[
    (include_str!("lexicon/override.txt"), false, |_| {
        Class::Override
    }),
    (include_str!("lexicon/target.txt"), false, |_| Class::Target),
    (include_str!("lexicon/reveal.txt"), false, |_| Class::Reveal),
    (include_str!("lexicon/ask.txt"), false, |_| Class::Ask),
    (include_str!("lexicon/secret.txt"), false, |_| Class::Secret),
    (include_str!("lexicon/sensitive.txt"), false, |_| {
        Class::Sensitive
    }),
    (include_str!("lexicon/possessive.txt"), false, |_| {
        Class::Possessive
    }),
    (include_str!("lexicon/negation.txt"), false, |_| {
        Class::Negation
    }),
    (include_str!("lexicon/phrases.txt"), true, Class::Phrase),
    (include_str!("lexicon/indirect.txt"), true, Class::Indirect),
];

/// The entries of every list, in order: lines that are neither blank nor `# ` comments. A
/// weighted line is its weight, a space and the entry; a weight that does not parse counts
/// 0 (the lists are compiled in, and a test checks every weight).
pub(super) fn lists() -> impl Iterator<Item = (&'static str, Class)> {
    LISTS.iter().flat_map(|&(text, weighted, class)| {
        text.lines()
            .filter(|l| !l.is_empty() && *l != "#" && !l.starts_with("# "))
            .map(move |l| match l.split_once(' ').filter(|_| weighted) {
                Some((w, entry)) => (entry, class(w.parse().unwrap_or(0.0))),
                None => (l, class(0.0)),
            })
    })
}

/// The lexicon's patterns (without `*`) and, per pattern, its class and whether it may end or
/// start inside a word.
pub(super) fn entries() -> (Vec<String>, Vec<(Class, bool, bool)>) {
    lists()
        .map(|(p, c)| {
            let pattern = p.trim_matches('*').to_owned();
            (pattern, (c, p.ends_with('*'), p.starts_with('*')))
        })
        .unzip()
}

/// The lexicon automata. One DFA over all entries would be about 9 MB (the Cyrillic and
/// Chinese entries multiply its byte classes), too big for the caches; the ASCII entries alone
/// make a DFA of about 2 MB that walks the text, and the other entries are looked for, by
/// anchored searches, only where one of their first bytes stands.
pub(super) struct Lexicon {
    /// ASCII entries, unanchored, and each one's index in the lexicon.
    ascii: DFA,
    ascii_ids: Vec<usize>,
    /// The other entries, anchored searches only, their indices, and their first bytes.
    other: Option<AhoCorasick>,
    other_ids: Vec<usize>,
    other_first: [bool; 256],
    /// Their first two bytes (each has at least two), as bits indexed by `b0 << 8 | b1`: a
    /// Cyrillic entry's first byte is one of two, so the first byte alone lets through every
    /// char of a Russian text.
    other_first_two: Vec<u64>,
    /// Whether some non-ASCII entry starts with an ASCII byte (then every byte is looked at).
    other_ascii_first: bool,
}

impl Lexicon {
    pub(super) fn new(pats: &[String]) -> Option<Lexicon> {
        let (mut ascii, mut other) = (Vec::new(), Vec::new());
        let (mut ascii_ids, mut other_ids) = (Vec::new(), Vec::new());
        let mut other_first = [false; 256];
        let mut other_first_two = vec![0u64; 1 << 10];
        for (i, p) in pats.iter().enumerate() {
            if p.is_ascii() {
                ascii.push(p.as_str());
                ascii_ids.push(i);
            } else {
                other.push(p.as_str());
                other_ids.push(i);
                if let Some(&b) = p.as_bytes().first() {
                    other_first[usize::from(b)] = true;
                }
                if let [b0, b1, ..] = *p.as_bytes() {
                    let k = usize::from(b0) << 8 | usize::from(b1);
                    other_first_two[k / 64] |= 1 << (k % 64);
                }
            }
        }
        let ascii = DFA::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .prefilter(false)
            .build(&ascii)
            .ok()?;
        let other = if other.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .kind(Some(AhoCorasickKind::DFA))
                    .start_kind(StartKind::Anchored)
                    .build(&other)
                    .ok()?,
            )
        };
        let other_ascii_first = other_first.iter().take(128).any(|f| *f);
        Some(Lexicon {
            ascii,
            ascii_ids,
            other,
            other_ids,
            other_first,
            other_first_two,
            other_ascii_first,
        })
    }

    /// The non-overlapping leftmost-longest matches of all entries in `hay`, as (entry, start,
    /// end), appended to `out`: what `find_iter` of one automaton over all entries gives. From
    /// `pos`, that automaton's match is the leftmost-longest of the ASCII entries' and the
    /// others' matches from `pos` (their texts differ, so no tie); each side's match stays
    /// valid until the chosen one ends past its start.
    pub(super) fn matches(&self, hay: &[u8], out: &mut Vec<(usize, usize, usize)>) {
        let mut pos = 0;
        let mut next_ascii: Option<Option<(usize, usize, usize)>> = None;
        let mut next_other: Option<Option<(usize, usize, usize)>> = None;
        loop {
            if next_ascii.is_some_and(|m| m.is_some_and(|m| m.1 < pos)) {
                next_ascii = None;
            }
            if next_other.is_some_and(|m| m.is_some_and(|m| m.1 < pos)) {
                next_other = None;
            }
            let a = *next_ascii.get_or_insert_with(|| {
                leftmost_longest_from(&self.ascii, hay, pos)
                    .map(|(p, s, e)| (self.ascii_ids.get(p).copied().unwrap_or(p), s, e))
            });
            let o = *next_other.get_or_insert_with(|| self.other_from(hay, pos));
            let m = match (a, o) {
                (Some(a), Some(o)) => {
                    if (o.1, std::cmp::Reverse(o.2)) < (a.1, std::cmp::Reverse(a.2)) {
                        o
                    } else {
                        a
                    }
                }
                (Some(m), None) | (None, Some(m)) => m,
                (None, None) => break,
            };
            out.push(m);
            // No entry is empty; should one be, step past it rather than loop.
            pos = if m.2 > pos { m.2 } else { pos + 1 };
        }
    }

    /// The leftmost-longest match of a non-ASCII entry starting at or after `pos`: the first
    /// place holding one of their first two bytes where an anchored search matches.
    fn other_from(&self, hay: &[u8], pos: usize) -> Option<(usize, usize, usize)> {
        let ac = self.other.as_ref()?;
        let mut i = pos;
        while i < hay.len() {
            if !self.other_ascii_first {
                i = next_non_ascii(hay, i);
            }
            let Some(&b) = hay.get(i) else { break };
            i += 1;
            if !self.other_first[usize::from(b)] {
                continue;
            }
            // Every entry has a second byte; without one here, none can match.
            let Some(&b1) = hay.get(i) else { break };
            let k = usize::from(b) << 8 | usize::from(b1);
            if self.other_first_two[k / 64] & (1 << (k % 64)) == 0 {
                continue;
            }
            let input = Input::new(hay)
                .span(i - 1..hay.len())
                .anchored(Anchored::Yes);
            if let Ok(Some(m)) = ac.try_find(input) {
                let p = m.pattern().as_usize();
                return Some((
                    self.other_ids.get(p).copied().unwrap_or(p),
                    m.start(),
                    m.end(),
                ));
            }
        }
        None
    }
}

/// The index of the first non-ASCII byte at or after `i`, or `hay.len()`; eight bytes a step.
fn next_non_ascii(hay: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = hay.get(i..i + 8).and_then(|c| <[u8; 8]>::try_from(c).ok()) {
        let high = u64::from_le_bytes(chunk) & 0x8080_8080_8080_8080;
        if high != 0 {
            return i + (high.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while hay.get(i).is_some_and(u8::is_ascii) {
        i += 1;
    }
    i.min(hay.len())
}

/// The leftmost-longest match of `dfa` in `hay` starting at or after `pos`, as (pattern, start,
/// end).
fn leftmost_longest_from(dfa: &DFA, hay: &[u8], pos: usize) -> Option<(usize, usize, usize)> {
    if pos > hay.len() {
        return None;
    }
    let input = Input::new(hay).span(pos..hay.len());
    let m = dfa.try_find(&input).ok()??;
    Some((m.pattern().as_usize(), m.start(), m.end()))
}
