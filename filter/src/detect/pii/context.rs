//! What stands around a candidate decides whether it is personal data: a cue word makes a
//! national phone format a phone; an identifier, an ISBN, a version string, a loopback or
//! network address, or an SSH remote makes a look-alike something else.

/// Words that announce a phone number, lower case, in the injection lexicon's languages and a
/// few more. Generic words ("number", "nummer") are left out: order and account numbers follow
/// them as often.
const PHONE_CUES: [&str; 24] = [
    "phone",
    "tel",
    "mobile",
    "cell",
    "call",
    "fax",
    "whatsapp",
    "sms",
    "reach me",
    "telefon",
    "téléphone",
    "portable",
    "teléfono",
    "móvil",
    "movil",
    "telefone",
    "celular",
    "telefono",
    "cellulare",
    "handy",
    "телефон",
    "电话",
    "電話",
    "手机",
];

/// How far before a number a cue may stand.
const CUE_BYTES: usize = 32;

/// Whether a phone cue stands in the few bytes before `i`.
pub(super) fn phone_cue_before(b: &[u8], i: usize) -> bool {
    let from = i.saturating_sub(CUE_BYTES);
    let before = String::from_utf8_lossy(&b[from..i]).to_lowercase();
    PHONE_CUES.iter().any(|cue| before.contains(cue))
}

/// A number that continues an identifier: `ORD-2024-000123-45`, `INV-88231`.
pub(super) fn continues_identifier(b: &[u8], i: usize) -> bool {
    i >= 2 && b[i - 1] == b'-' && b[i - 2].is_ascii_alphanumeric()
}

/// An ISBN: 13 digits starting 978 or 979 with a valid check digit, or any 10 or 13 digits
/// right after the word ISBN.
pub(super) fn is_isbn(b: &[u8], span: std::ops::Range<usize>) -> bool {
    let digits: Vec<u8> = b[span.clone()]
        .iter()
        .filter(|c| c.is_ascii_digit())
        .map(|c| c - b'0')
        .collect();
    let after_word = {
        let from = span.start.saturating_sub(8);
        b[from..span.start]
            .windows(4)
            .any(|w| w.eq_ignore_ascii_case(b"isbn"))
    };
    if after_word && matches!(digits.len(), 10 | 13) {
        return true;
    }
    let sum: u32 = digits
        .iter()
        .enumerate()
        .map(|(k, d)| u32::from(*d) * if k % 2 == 0 { 1 } else { 3 })
        .sum();
    digits.len() == 13 && matches!(digits[..3], [9, 7, 8] | [9, 7, 9]) && sum.is_multiple_of(10)
}

/// A dotted quad that is no one's address: unspecified or loopback, a network written with
/// its prefix length (`10.0.0.0/8`; an interface's `10.0.1.40/24` is an address), or a version (`version 1.2.3.4`; `v1.2.3.4` never
/// starts a number).
pub(super) fn is_non_personal_ipv4(b: &[u8], span: std::ops::Range<usize>) -> bool {
    let quad = &b[span.clone()];
    if quad == b"0.0.0.0" || quad.starts_with(b"127.") {
        return true;
    }
    if let Some(prefix) = prefix_length(b, span.end) {
        // A network (host bits all zero), not an interface address like 10.0.1.40/24.
        let addr = quad
            .split(|c| *c == b'.')
            .fold(0u32, |a, part| (a << 8) | parse_u32(part));
        let host_bits = u32::MAX.checked_shr(prefix).unwrap_or(0);
        if addr & host_bits == 0 {
            return true;
        }
    }
    let from = span.start.saturating_sub(9);
    let before = b[from..span.start].to_ascii_lowercase();
    before.ends_with(b"version ") || before.ends_with(b"version: ")
}

/// The `/n` prefix length (0–32) right after a dotted quad, if any.
fn prefix_length(b: &[u8], end: usize) -> Option<u32> {
    if b.get(end) != Some(&b'/') {
        return None;
    }
    let digits = b[end + 1..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    let n = parse_u32(&b[end + 1..end + 1 + digits]);
    (1..=2).contains(&digits).then_some(n).filter(|n| *n <= 32)
}

fn parse_u32(digits: &[u8]) -> u32 {
    digits.iter().fold(0u32, |a, d| {
        a.saturating_mul(10).saturating_add(u32::from(d - b'0'))
    })
}

/// An address in scp form, `git@github.com:org/repo.git`: a host and a path, not a mailbox.
pub(super) fn is_ssh_remote(b: &[u8], end: usize) -> bool {
    b.get(end) == Some(&b':')
        && b.get(end + 1)
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'~' | b'/' | b'_'))
}
