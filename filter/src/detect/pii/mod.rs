//! Personal data: e-mail, phone numbers, payment cards (Luhn), IBAN (mod-97), US SSN (valid
//! areas), IPv4 and IPv6. Hand-written byte scanners rather than regexes: one pass each, no
//! backtracking, and every candidate is validated before it becomes a finding.

use std::net::Ipv6Addr;
use std::ops::Range;

use super::{is_alnum_at, DetectorId, Finding};

mod context;

pub const EMAIL: &str = "EMAIL";
pub const PHONE: &str = "PHONE";
pub const CARD: &str = "CREDIT_CARD";
pub const IBAN: &str = "IBAN";
pub const SSN: &str = "US_SSN";
pub const IP: &str = "IP_ADDRESS";

fn finding(kind: &'static str, span: Range<usize>, score: f32) -> Finding {
    Finding {
        detector: DetectorId::Pii,
        kind,
        span,
        score,
    }
}

/// Appends PII findings, non-overlapping, in order of discovery per type (caller sorts).
pub fn scan(text: &str, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    let start = out.len();
    emails(text, out);
    ibans(b, out);
    ipv6(text, out);
    digit_runs(b, out);
    // Keep non-overlapping findings: the earliest start wins, and at one start the scanner that
    // ran first (the more specific one). Sorting keeps this linear in the number of findings.
    let found = out.split_off(start);
    let mut order: Vec<(usize, usize)> = found
        .iter()
        .enumerate()
        .map(|(i, f)| (f.span.start, i))
        .collect();
    order.sort_unstable();
    let mut last_end = 0;
    for (_, i) in order {
        if let Some(f) = found.get(i) {
            if f.span.start >= last_end {
                last_end = f.span.end;
                out.push(f.clone());
            }
        }
    }
}

fn emails(text: &str, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    let local = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-');
    let domain = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-');
    let mut from = 0;
    let mut next = 0;
    // A vectorised search for '@': most bytes are never looked at one by one.
    while let Some(at) = b
        .get(next..)
        .and_then(|t| memchr::memchr(b'@', t))
        .map(|r| next + r)
    {
        next = at + 1;
        if at < from {
            continue;
        }
        let mut s = at;
        while s > from && b.get(s - 1).is_some_and(|c| local(*c)) {
            s -= 1;
        }
        // A literal "\n" escape before the address is not part of it.
        if s > 0
            && b.get(s - 1) == Some(&b'\\')
            && b.get(s).is_some_and(|c| matches!(c, b'n' | b't' | b'r'))
        {
            s += 1;
        }
        while s < at && b.get(s).is_some_and(|c| *c == b'.') {
            s += 1;
        }
        let mut e = at + 1;
        while b.get(e).is_some_and(|c| domain(*c)) {
            e += 1;
        }
        while e > at + 1 && b.get(e - 1).is_some_and(|c| matches!(c, b'.' | b'-')) {
            e -= 1;
        }
        if s == at || e <= at + 1 {
            continue;
        }
        let Some(dom) = b.get(at + 1..e) else {
            continue;
        };
        let Some(dot) = dom.iter().rposition(|c| *c == b'.') else {
            continue;
        };
        let tld = dom.get(dot + 1..).unwrap_or_default();
        if tld.len() < 2 || !tld.iter().all(|c| c.is_ascii_alphabetic()) || dot == 0 {
            continue;
        }
        if !context::is_ssh_remote(b, e) {
            out.push(finding(EMAIL, s..e, 0.99));
        }
        from = e;
    }
}

/// IBAN: country code, two check digits, 11–30 alphanumerics, optionally grouped by spaces.
fn ibans(b: &[u8], out: &mut Vec<Finding>) {
    // A start `i` has check digits at i+2 and i+3: visit the places where a digit follows a
    // digit (found eight bytes at a time), in order, and test the start two bytes before.
    let mut i = 0;
    let mut d = 2;
    loop {
        d = digit_from(b, d.max(i + 2));
        if d + 1 >= b.len() {
            break;
        }
        if !b[d + 1].is_ascii_digit() {
            d += 1;
            continue;
        }
        let s = d - 2;
        if !(b[s].is_ascii_uppercase()
            && b[s + 1].is_ascii_uppercase()
            && (s == 0 || !is_alnum_at(b, s - 1)))
        {
            d += 1;
            continue;
        }
        if let Some(e) = iban_at(b, s) {
            out.push(finding(IBAN, s..e, 0.99));
            i = e;
        } else {
            d += 1;
        }
    }
}

/// The end of the longest valid IBAN starting at `i` (whose first four chars are a country
/// code and check digits), if any.
fn iban_at(b: &[u8], i: usize) -> Option<usize> {
    let mut chars: Vec<u8> = b.get(i..i + 4)?.to_vec();
    let mut e = i + 4;
    let mut best = None;
    loop {
        let mut j = e;
        if b.get(j) == Some(&b' ') && chars.len().is_multiple_of(4) {
            j += 1;
        }
        let Some(&c) = b.get(j) else { break };
        if !(c.is_ascii_uppercase() || c.is_ascii_digit()) || chars.len() >= 34 {
            break;
        }
        chars.push(c);
        e = j + 1;
        if chars.len() >= 15 && !is_alnum_at(b, e) && iban_valid(&chars) {
            best = Some(e);
        }
    }
    best
}

/// ISO 13616 check: move the first four chars to the end, letters to numbers, mod 97 == 1.
pub fn iban_valid(chars: &[u8]) -> bool {
    if chars.len() < 15 || chars.len() > 34 {
        return false;
    }
    let mut rem: u32 = 0;
    for &c in chars.iter().skip(4).chain(chars.iter().take(4)) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

fn ipv6(text: &str, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    let cand = |c: u8| c.is_ascii_hexdigit() || c == b':' || c == b'.';
    let mut next = 0;
    // An address has colons: visit each maximal run of hex digits, colons and dots that
    // holds one, found from its colons.
    while let Some(colon) = b
        .get(next..)
        .and_then(|t| memchr::memchr(b':', t))
        .map(|r| next + r)
    {
        let mut r0 = colon;
        while r0 > 0 && cand(b[r0 - 1]) {
            r0 -= 1;
        }
        let mut e = colon;
        while e < b.len() && cand(b[e]) {
            e += 1;
        }
        next = e + 1;
        // The candidate starts at the run's start if no letter or digit precedes it, else
        // after the run's first dot (as in "v.2001:db8::1").
        let start = if r0 == 0 || !is_alnum_at(b, r0 - 1) {
            Some(r0)
        } else {
            b[r0..e].iter().position(|c| *c == b'.').map(|d| r0 + d + 1)
        };
        let Some(i) = start.filter(|i| *i < e) else {
            continue;
        };
        let mut end = e;
        while end > i && b[end - 1] == b'.' {
            end -= 1;
        }
        let colons = b[i..end].iter().filter(|c| **c == b':').count();
        if colons >= 2 && end - i >= 3 && !is_alnum_at(b, e) {
            if let Some(s) = text.get(i..end) {
                if let Ok(addr) = s.parse::<Ipv6Addr>() {
                    // "::" and tiny forms like "a::b" are more often code than addresses.
                    if !addr.is_unspecified() && (colons >= 4 || s.len() >= 10) {
                        out.push(finding(IP, i..end, 0.95));
                    }
                }
            }
        }
    }
}

/// Runs of digits with separators: cards, SSNs, IPv4, phones.
fn digit_runs(b: &[u8], out: &mut Vec<Finding>) {
    let mut i = 0;
    while i < b.len() {
        // A number starts at a digit, or at a '+' or '(' right before one: find the next digit
        // (eight bytes a step) and look one byte back.
        let d = digit_from(b, i);
        i = if d > i && matches!(b.get(d - 1), Some(b'+' | b'(')) {
            d - 1
        } else {
            d
        };
        if i >= b.len() {
            break;
        }
        i = number_at(b, i, out);
    }
}

/// Matches the number that may start at `i` (a digit, '+' or '('); returns where to go on.
fn number_at(b: &[u8], mut i: usize, out: &mut Vec<Finding>) -> usize {
    let c = b[i];
    let starts = c.is_ascii_digit() || (c == b'+' || c == b'(') && next_digit(b, i + 1);
    // A literal "\n" escape before the number is a boundary too.
    let escaped = i >= 2 && b[i - 2] == b'\\' && matches!(b[i - 1], b'n' | b't' | b'r');
    if !starts || (i > 0 && !escaped && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'.')) {
        return i + 1;
    }
    if let Some(e) = ipv4_at(b, i) {
        if !context::is_non_personal_ipv4(b, i..e) {
            out.push(finding(IP, i..e, 0.95));
        }
        return e;
    }
    if let Some(e) = ssn_at(b, i) {
        out.push(finding(SSN, i..e, 0.9));
        return e;
    }
    if let Some(e) = card_at(b, i) {
        out.push(finding(CARD, i..e, 0.95));
        return e;
    }
    if let Some(e) = phone_at(b, i) {
        if context::continues_identifier(b, i) || context::is_isbn(b, i..e) {
            return e;
        }
        out.push(finding(PHONE, i..e, 0.85));
        return e;
    }
    // Skip the rest of this number, separators included, so no tail of it matches alone.
    while i < b.len()
        && (b[i].is_ascii_digit()
            || matches!(b[i], b'+' | b'(' | b')' | b'-' | b'.' | b' ') && next_digit(b, i + 1))
    {
        i += 1;
    }
    i + 1
}

/// The first index at or after `i` of an ASCII digit, or `b.len()`; eight bytes a step.
fn digit_from(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    const LOW7: u64 = ONES * 0x7F;
    while let Some(chunk) = b.get(i..i + 8).and_then(|c| <[u8; 8]>::try_from(c).ok()) {
        let x = u64::from_le_bytes(chunk);
        let lo = x & LOW7;
        // High bit of each byte that is in '0'..='9' (and below 0x80): `lo` is under 0x80 per
        // byte, so neither the subtraction nor the addition carries between bytes.
        let digit = (ONES * (127 + 0x3A)).wrapping_sub(lo) & !x & (lo + ONES * (127 - 0x2F)) & HIGH;
        if digit != 0 {
            return i + (digit.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while b.get(i).is_some_and(|c| !c.is_ascii_digit()) {
        i += 1;
    }
    i.min(b.len())
}

fn next_digit(b: &[u8], i: usize) -> bool {
    b.get(i).is_some_and(|c| c.is_ascii_digit())
}

/// Reads up to `max` digits at `i`; returns (value, end).
fn digits(b: &[u8], i: usize, max: usize) -> (u32, usize) {
    let mut v = 0u32;
    let mut e = i;
    while e < b.len() && e - i < max && b[e].is_ascii_digit() {
        v = v.saturating_mul(10).saturating_add(u32::from(b[e] - b'0'));
        e += 1;
    }
    (v, e)
}

fn ipv4_at(b: &[u8], i: usize) -> Option<usize> {
    let mut p = i;
    for k in 0..4 {
        let (v, e) = digits(b, p, 3);
        if e == p || v > 255 || next_digit(b, e) || (e - p > 1 && b[p] == b'0') {
            return None;
        }
        p = e;
        if k < 3 {
            if b.get(p) != Some(&b'.') {
                return None;
            }
            p += 1;
        }
    }
    // Not part of a longer dotted number (version strings like 1.2.3.4.5).
    if b.get(p) == Some(&b'.') && next_digit(b, p + 1) || is_alnum_at(b, p) {
        return None;
    }
    Some(p)
}

fn ssn_at(b: &[u8], i: usize) -> Option<usize> {
    let (area, e1) = digits(b, i, 3);
    if e1 - i != 3 {
        return None;
    }
    let sep = *b.get(e1)?;
    if sep != b'-' && sep != b' ' {
        return None;
    }
    let (group, e2) = digits(b, e1 + 1, 2);
    if e2 - e1 != 3 || b.get(e2) != Some(&sep) {
        return None;
    }
    let (serial, e3) = digits(b, e2 + 1, 4);
    if e3 - e2 != 5 || is_alnum_at(b, e3) || b.get(e3) == Some(&b'-') && next_digit(b, e3 + 1) {
        return None;
    }
    ssn_valid(area, group, serial).then_some(e3)
}

/// SSA rules: area not 000, 666 or 900–999; group not 00; serial not 0000.
pub fn ssn_valid(area: u32, group: u32, serial: u32) -> bool {
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// 12–19 digits, single space or dash separators, Luhn-valid.
fn card_at(b: &[u8], i: usize) -> Option<usize> {
    // Digits in a fixed array: this runs at every number, so no allocation.
    let mut ds = [0u8; 19];
    let mut len = 0;
    let mut e = i;
    let mut last_end = None;
    let mut sep: Option<u8> = None;
    while e < b.len() && len < ds.len() {
        let c = b[e];
        if c.is_ascii_digit() {
            ds[len] = c - b'0';
            len += 1;
            e += 1;
            if len >= 12 && !next_digit(b, e) {
                last_end = Some((e, len));
            }
        } else if (c == b' ' || c == b'-') && next_digit(b, e + 1) && sep.is_none_or(|s| s == c) {
            sep = Some(c);
            e += 1;
        } else {
            break;
        }
    }
    let (end, n) = last_end?;
    if is_alnum_at(b, end) || next_digit(b, end) {
        return None;
    }
    let digits = ds.get(..n)?;
    (luhn_valid(digits) && digits.iter().any(|d| *d != digits[0])).then_some(end)
}

pub fn luhn_valid(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (k, &d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d);
        if k % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    !digits.is_empty() && sum.is_multiple_of(10)
}

/// International and North-American phone formats: `+CC …` with 8–15 digits, `(ddd) ddd-dddd`,
/// national formats after a cue word (`tel. 030 12345678`),
/// `ddd-ddd-dddd`, `ddd.ddd.dddd`, `001-…`, bare 10 digits, optional extension `x123`.
fn phone_at(b: &[u8], i: usize) -> Option<usize> {
    let plus = b.get(i) == Some(&b'+');
    let mut e = i + usize::from(plus);
    let mut n = 0usize;
    let mut groups = 0usize;
    let mut seps = 0usize;
    let mut paren = false;
    let mut last_digit_end = e;
    while e < b.len() {
        let c = b[e];
        if c.is_ascii_digit() {
            let (_, d) = digits(b, e, 20);
            n += d - e;
            groups += 1;
            e = d;
            last_digit_end = e;
            if b.get(e) == Some(&b')') && paren {
                e += 1;
                paren = false;
                last_digit_end = e;
                if b.get(e) == Some(&b' ') && next_digit(b, e + 1) {
                    e += 1;
                }
            }
        } else if c == b'(' && !paren && next_digit(b, e + 1) {
            paren = true;
            e += 1;
        } else if matches!(c, b'-' | b'.' | b' ')
            && (next_digit(b, e + 1) || b.get(e + 1) == Some(&b'('))
        {
            seps += 1;
            e += 1;
        } else {
            break;
        }
        if n > 15 {
            return None;
        }
    }
    let mut end = last_digit_end;
    if b.get(i) == Some(&b'(') && b.get(i..end).is_some_and(|s| !s.contains(&b')')) {
        return None;
    }
    let plain = if plus {
        (8..=15).contains(&n) && (groups >= 2 || n >= 10)
    } else {
        (n == 10 && (groups == 1 || groups == 3))
            || (n == 11 && groups == 4 && b.get(i) == Some(&b'1'))
            || (n == 13 && groups == 4 && b.get(i..i + 3) == Some(b"001"))
            || (n >= 10
                && groups >= 3
                && seps + usize::from(b.get(i) == Some(&b'(')) >= 2
                && n <= 13)
    };
    // A national format (`07700 900123`, `030 12345678`) is a phone where a cue word says so;
    // looked for last, as it reads the text before the number.
    let ok = plain || (7..=15).contains(&n) && groups <= 4 && context::phone_cue_before(b, i);
    if !ok || is_alnum_at(b, end) && !matches!(b.get(end), Some(b'x' | b'X' | b'e')) {
        return None;
    }
    // Extension: x123, ext. 123
    for pre in [&b"x"[..], b"X", b" x", b" ext. ", b" ext ", b"ext", b" x "] {
        if b.get(end..end + pre.len()) == Some(pre) && next_digit(b, end + pre.len()) {
            let (_, d) = digits(b, end + pre.len(), 6);
            if !is_alnum_at(b, d) {
                end = d;
            }
            break;
        }
    }
    if is_alnum_at(b, end) {
        return None;
    }
    Some(end)
}

#[cfg(test)]
mod tests;
