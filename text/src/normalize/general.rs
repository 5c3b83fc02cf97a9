//! The general path of [`super::for_matching`], for a line with any non-ASCII char: folds
//! char by char, then in context (homoglyphs and leetspeak need their neighbours), then joins
//! spaced-out letters.

use super::{is_latin, prefold, Scratch};
use crate::chars::{homoglyph, is_alphabetic, is_alphanumeric, leet, lower};

/// The general path, for a line with any non-ASCII char. Appends to `text`/`map`; offsets are
/// relative to `base`.
pub(super) fn normalize_chars(
    src: &str,
    base: usize,
    text: &mut Vec<u8>,
    map: &mut Vec<u32>,
    scratch: &mut Scratch,
) {
    let base = base as u32;
    let Scratch { folded, chars, .. } = scratch;
    // First pass: fold each char, drop invisibles, collapse whitespace.
    folded.clear();
    for (i, c) in src.char_indices() {
        let Some(c) = prefold(c) else { continue };
        let c = if c.is_whitespace() { ' ' } else { c };
        if c == ' ' && matches!(folded.last(), Some((_, ' ')) | None) {
            continue;
        }
        folded.push((base + i as u32, c));
    }
    // Second pass: context-dependent folds (homoglyphs, leetspeak need neighbours).
    let n = folded.len();
    let at = |k: usize| folded.get(k).map(|p| p.1);
    chars.clear();
    for k in 0..n {
        let (o, c) = folded[k];
        let prev = if k == 0 { None } else { at(k - 1) };
        let next = at(k + 1);
        let c = if c.is_ascii_alphabetic() || c == ' ' {
            c
        } else if c.is_ascii() {
            match leet(c) {
                // A digit or symbol inside a word that has letters ("1gn0re", "pr3v10us") reads
                // as a letter; symbols only when a letter or digit follows ("h@ck", not "hi!").
                Some(l)
                    if (c.is_ascii_digit() || next.is_some_and(|n| n.is_ascii_alphanumeric()))
                        && word_has_letter(folded, k) =>
                {
                    l
                }
                _ => c,
            }
        } else if let Some(h) = homoglyph(c) {
            let near_latin = is_latin(prev)
                || is_latin(next)
                || (prev.is_some_and(|p| homoglyph(p).is_some()) && k >= 2 && is_latin(at(k - 2)));
            if near_latin {
                h
            } else {
                lower(c)
            }
        } else {
            lower(c)
        };
        chars.push((o, c));
    }
    // Third pass: join spaced-out letters ("i g n o r e", "i-g-n-o-r-e", "i.g.n.o.r.e").
    let mut k = 0;
    while k < chars.len() {
        // Cheap pre-check: a spaced run starts with a single letter followed by a separator.
        let single =
            chars.get(k + 1).is_some_and(|p| !is_alphanumeric(p.1)) && is_alphabetic(chars[k].1);
        if let Some(end) = single.then(|| spaced_run(chars, k)).flatten() {
            let mut j = k;
            while j < end {
                push(text, map, chars[j].0, chars[j].1);
                j += 2;
            }
            k = end;
            continue;
        }
        let (o, c) = chars[k];
        push(text, map, o, c);
        k += 1;
    }
}

/// Whether the run of ASCII letters, digits and leet symbols around `k` holds a letter.
fn word_has_letter(chars: &[(u32, char)], k: usize) -> bool {
    let part = |c: char| c.is_ascii_alphanumeric() || matches!(c, '@' | '$' | '!' | '|' | '+');
    let mut a = k;
    while a > 0 && chars.get(a - 1).is_some_and(|p| part(p.1)) {
        a -= 1;
        if k - a > 32 {
            break;
        }
    }
    let mut b = k;
    while chars.get(b).is_some_and(|p| part(p.1)) && b - k <= 32 {
        b += 1;
    }
    chars
        .get(a..b)
        .is_some_and(|w| w.iter().any(|p| p.1.is_ascii_alphabetic()))
}

fn push(text: &mut Vec<u8>, map: &mut Vec<u32>, orig: u32, c: char) {
    if c.is_ascii() {
        text.push(c as u8);
        map.push(orig);
        return;
    }
    let mut buf = [0u8; 4];
    let s = c.encode_utf8(&mut buf);
    text.extend_from_slice(s.as_bytes());
    for _ in 0..s.len() {
        map.push(orig);
    }
}

/// If a run of at least four single letters separated by one separator char starts at `k`,
/// returns the index one past its last letter.
fn spaced_run(chars: &[(u32, char)], k: usize) -> Option<usize> {
    let letter = |i: usize| chars.get(i).is_some_and(|p| is_alphabetic(p.1));
    let sep = |i: usize| {
        chars
            .get(i)
            .is_some_and(|p| matches!(p.1, ' ' | '-' | '.' | '_' | '*' | '|' | '/' | '+' | ','))
    };
    if k > 0 && letter(k - 1) || !letter(k) {
        return None;
    }
    let s = chars.get(k + 1).map(|p| p.1)?;
    let mut i = k;
    let mut count: i32 = 0;
    while letter(i) && !letter(i + 1) {
        count += 1;
        if sep(i + 1) && chars.get(i + 1).map(|p| p.1) == Some(s) && letter(i + 2) {
            i += 2;
        } else {
            break;
        }
    }
    if letter(i) && letter(i + 1) {
        // run ended on a multi-letter word: do not take its first letter
        i = i.saturating_sub(2);
        count -= 1;
    }
    (count >= 4).then_some(i + 1)
}
