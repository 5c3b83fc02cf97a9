//! The ASCII fast path of [`super::for_matching`]: the same folds as the general path for a
//! pure-ASCII line (the common case), byte by byte with no intermediate buffers.

use crate::chars::leet;

/// Byte classes for the ASCII path.
pub(super) const WS: u8 = 1;
const LETTER: u8 = 2;
/// Digits and the leet symbols `@ $ ! | +`: part of a word, folded to letters in some words.
const LEETISH: u8 = 4;
/// Separators of spaced-out letters (`i-g-n-o-r-e`).
const SEP: u8 = 8;
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let mut k = 0;
        if b.is_ascii_whitespace() || b == 0x0b {
            k |= WS;
        }
        if b.is_ascii_alphabetic() {
            k |= LETTER;
        }
        if b.is_ascii_digit() || matches!(b, b'@' | b'$' | b'!' | b'|' | b'+') {
            k |= LEETISH;
        }
        if matches!(
            b,
            b' ' | b'-' | b'.' | b'_' | b'*' | b'|' | b'/' | b'+' | b','
        ) {
            k |= SEP;
        }
        t[c] = k;
        c += 1;
    }
    t
};

#[inline]
pub(super) fn class(c: u8) -> u8 {
    CLASS[c as usize]
}

/// The same folds as `normalize` for pure-ASCII input (the common case), byte by byte with no
/// intermediate buffers: lower case, whitespace collapsed, leetspeak, spaced-out letters.
/// Appends to `text`/`map`; `cands` is scratch space.
pub(super) fn normalize_ascii(
    b: &[u8],
    base: usize,
    text: &mut Vec<u8>,
    map: &mut Vec<u32>,
    cands: &mut Vec<u32>,
) {
    let start = text.len();
    // Folding never makes an ASCII line longer: write into place, then cut to length.
    text.resize(start + b.len(), 0);
    map.resize(start + b.len(), 0);
    let w = match (text.get_mut(start..), map.get_mut(start..)) {
        (Some(t), Some(m)) => fold_ascii(b, base as u32, t, m, cands),
        _ => 0,
    };
    text.truncate(start + w);
    map.truncate(start + w);
    // Join spaced-out letters, as in `spaced_run`. A run starts at a single letter followed by a
    // separator; every such position is in `cands`, so without a run the line is already final.
    let t = text.get(start..).unwrap_or_default();
    if !cands
        .iter()
        .any(|&k| ascii_spaced_run(t, k as usize).is_some())
    {
        return;
    }
    let t = text.split_off(start);
    let m = map.split_off(start);
    let mut k = 0;
    while k < t.len() {
        if let Some(e) = ascii_spaced_run(&t, k) {
            let mut j = k;
            while j <= e {
                text.push(t[j]);
                map.push(m[j]);
                j += 2;
            }
            k = e + 1;
            continue;
        }
        text.push(t[k]);
        map.push(m[k]);
        k += 1;
    }
}

/// Pass 1 of the ASCII path into `t`/`m` (at least `b.len()` long): lower case, whitespace
/// collapsed, leetspeak folded in words that have a letter. Returns the length written and
/// puts in `cands` every position where a spaced-out word could start.
fn fold_ascii(b: &[u8], base: u32, t: &mut [u8], m: &mut [u32], cands: &mut Vec<u32>) -> usize {
    cands.clear();
    let n = b.len().min(t.len()).min(m.len());
    // Plain stretches map byte to byte (`fold_plain`); the loop below takes the words and
    // whitespace runs between them, and hands back to `fold_plain` after a byte that ends a
    // word and starts no whitespace run.
    let (mut i, mut w) = fold_plain(b, base, t, m, cands, 0, 0);
    let mut slow_from = i;
    while i < n {
        if i > slow_from && i >= 1 {
            let (p, k) = (class(b[i - 1]), class(b[i]));
            if p & (LETTER | LEETISH) == 0 && p & k & WS == 0 {
                (i, w) = fold_plain(b, base, t, m, cands, i, w);
                slow_from = i;
                continue;
            }
        }
        let c = b[i];
        let k = class(c);
        if k & WS != 0 {
            if w > 0 && t[w - 1] != b' ' {
                t[w] = b' ';
                m[w] = base + i as u32;
                w += 1;
            }
            i += 1;
            continue;
        }
        if k & (LETTER | LEETISH) == 0 {
            t[w] = c;
            m[w] = base + i as u32;
            w += 1;
            i += 1;
            continue;
        }
        // A run of word bytes, copied with letters lower-cased; leetspeak is folded after,
        // and only if the run has a letter.
        let (run_i, run_w) = (i, w);
        let mut all = LETTER | LEETISH;
        let mut any = 0u8;
        while i < n {
            let c = b[i];
            let kj = class(c);
            if kj & (LETTER | LEETISH) == 0 {
                break;
            }
            all &= kj;
            any |= kj;
            t[w] = if kj & LETTER != 0 { c | 0x20 } else { c };
            m[w] = base + i as u32;
            w += 1;
            i += 1;
        }
        if all & LETTER != 0 {
            // Letters only. A single letter before a separator may start a spaced-out word.
            if i - run_i == 1 && b.get(i).is_some_and(|n| class(*n) & (SEP | WS) != 0) {
                cands.push(run_w as u32);
            }
        } else if any & LETTER != 0 {
            for k in run_i..i {
                let c = b[k];
                let o = run_w + (k - run_i);
                if class(c) & LETTER == 0 {
                    let next_alnum = b.get(k + 1).is_some_and(|n| n.is_ascii_alphanumeric());
                    if let Some(l) = leet(c as char).filter(|_| c.is_ascii_digit() || next_alnum) {
                        t[o] = l as u8;
                    }
                }
                if t[o].is_ascii_alphabetic() {
                    cands.push(o as u32);
                }
            }
        }
    }
    w
}

/// `fold_ascii` for the common case: no leading or repeated whitespace and no letter next to a
/// digit or leet symbol. There folding maps byte to byte (lower case, whitespace to a space).
/// Folds `b` from `i0` to output position `w0` as far as it is such text (ending before a word
/// or a whitespace run) and returns where it stopped, in `b` and in the output. `i0` is 0 or
/// follows a byte that is no letter, digit or leet symbol; the output up to `w0` is the fold
/// of `b[..i0]`, so it ends with a space exactly when `b[i0 - 1]` is whitespace.
fn fold_plain(
    b: &[u8],
    base: u32,
    t: &mut [u8],
    m: &mut [u32],
    cands: &mut Vec<u32>,
    i0: usize,
    w0: usize,
) -> (usize, usize) {
    let n = b.len().min(t.len()).min(m.len());
    if i0 >= n || w0 > i0 {
        return (i0, w0);
    }
    // Output position = input position - shift.
    let shift = i0 - w0;
    // The classes of the last three bytes, four bits each, index `PLAIN`.
    let at = |k: Option<usize>| {
        k.and_then(|k| b.get(k))
            .map_or(0, |c| usize::from(class(*c)))
    };
    let (mut idx, mut i) = if i0 == 0 {
        if class(b[0]) & WS != 0 {
            return (0, 0);
        }
        (at(Some(0)), 1)
    } else {
        ((at(i0.checked_sub(2)) << 4) | at(Some(i0 - 1)), i0)
    };
    let mut done = n;
    while i < n {
        idx = ((idx << 4) | usize::from(class(b[i]))) & 0xFFF;
        let f = PLAIN[idx];
        if f & PLAIN_BAD != 0 {
            // Restart at the first of the two spaces, or at the start of the word; never
            // before `i0`, which the caller has folded.
            done = if class(b[i]) & WS != 0 {
                i - 1
            } else {
                b[..i]
                    .iter()
                    .rposition(|c| class(*c) & (LETTER | LEETISH) == 0)
                    .map_or(0, |p| p + 1)
            }
            .max(i0);
            break;
        }
        if f & PLAIN_CAND != 0 {
            cands.push((i - 1 - shift) as u32);
        }
        i += 1;
        if idx & usize::from(LETTER) != 0 {
            // Letters after a letter: never bad, never a candidate (that needs a separator).
            // Skip them; the last two classes are then both a letter.
            let run = i;
            while i < n && b.get(i).is_some_and(|c| class(*c) & LETTER != 0) {
                i += 1;
            }
            if i > run {
                idx = usize::from(LETTER) << 4 | usize::from(LETTER);
            }
        }
    }
    let (Some(td), Some(md), Some(src)) = (
        t.get_mut(w0..done - shift),
        m.get_mut(w0..done - shift),
        b.get(i0..done),
    ) else {
        return (i0, w0);
    };
    // Two simple loops, which the compiler vectorises.
    for (d, &c) in td.iter_mut().zip(src) {
        *d = lower_ws(c);
    }
    for (dm, o) in md.iter_mut().zip(base + i0 as u32..) {
        *dm = o;
    }
    (done, done - shift)
}

/// `PLAIN[pprev << 8 | prev << 4 | cur]` (byte classes): `PLAIN_BAD` if `prev, cur` is a pair of
/// whitespace bytes or a letter touching a leet byte; `PLAIN_CAND` if `prev` is a single letter
/// (after a non-letter) before a separator, where a spaced-out word may start.
const PLAIN_BAD: u8 = 1;
const PLAIN_CAND: u8 = 2;
static PLAIN: [u8; 4096] = {
    let mut t = [0u8; 4096];
    let mut x = 0;
    while x < 4096 {
        let (pprev, prev, k) = ((x >> 8) as u8, ((x >> 4) & 15) as u8, (x & 15) as u8);
        let bad = (prev & k & WS) | (((prev & LETTER) << 1) & k) | (((k & LETTER) << 1) & prev);
        let mut f = 0;
        if bad != 0 {
            f |= PLAIN_BAD;
        }
        if prev & LETTER != 0 && pprev & LETTER == 0 && k & (SEP | WS) != 0 {
            f |= PLAIN_CAND;
        }
        t[x] = f;
        x += 1;
    }
    t
};

/// ASCII letters to lower case, whitespace to a space, other bytes unchanged; branch-free,
/// so that a loop of it is vectorised.
#[inline]
pub(super) fn lower_ws(c: u8) -> u8 {
    let upper = c.wrapping_sub(b'A') < 26;
    let ws = c == b' ' || c.wrapping_sub(9) < 5;
    if ws {
        b' '
    } else {
        c | (u8::from(upper) << 5)
    }
}

/// If a run of at least four single letters separated by the same separator starts at `k` in
/// the folded ASCII line `t`, the index of its last letter.
fn ascii_spaced_run(t: &[u8], k: usize) -> Option<usize> {
    let letter = |k: usize| t.get(k).is_some_and(|c| class(*c) & LETTER != 0);
    let sep = |k: usize| t.get(k).is_some_and(|c| class(*c) & SEP != 0);
    if !(letter(k) && !letter(k + 1) && !(k > 0 && letter(k - 1)) && sep(k + 1)) {
        return None;
    }
    let s = t.get(k + 1).copied();
    let mut e = k;
    let mut count: i32 = 0;
    while letter(e) && !letter(e + 1) {
        count += 1;
        if sep(e + 1) && t.get(e + 1).copied() == s && letter(e + 2) {
            e += 2;
        } else {
            break;
        }
    }
    if letter(e) && letter(e + 1) {
        e = e.saturating_sub(2);
        count -= 1;
    }
    (count >= 4).then_some(e)
}
