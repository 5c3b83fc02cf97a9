//! Text handling shared by the Sluice filter, the judge and the node probe, so that all three
//! fold the same disguises and cut text the same way: normalisation ([`normalize`]: one form for
//! word-list matching, one for the models), the pieces a model scores ([`segment`]), decoding of
//! embedded payloads ([`decode`]) and char-boundary truncation.

pub mod chars;
pub mod decode;
pub mod normalize;
pub mod segment;

use std::borrow::Cow;

/// `text` cut to at most `max_bytes` bytes, on a character boundary.
pub fn truncate(text: &str, max_bytes: usize) -> &str {
    &text[..text.floor_char_boundary(max_bytes)]
}

/// [`truncate`] for an owned string, without copying it.
pub fn truncate_owned(mut text: String, max_bytes: usize) -> String {
    text.truncate(text.floor_char_boundary(max_bytes));
    text
}

/// The text of a fixed-size, NUL-padded kernel buffer (a task's `comm`, a request line): the
/// bytes before the first NUL, invalid UTF-8 replaced rather than dropped.
pub fn nul_terminated(bytes: &[u8]) -> Cow<'_, str> {
    let len = memchr::memchr(0, bytes).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_char_boundary() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate_owned("héllo".to_owned(), 2), "h");
        assert_eq!(truncate_owned("abc".to_owned(), 10), "abc");
    }

    #[test]
    fn nul_terminated_stops_at_the_first_nul_and_keeps_bad_bytes_visible() {
        assert_eq!(nul_terminated(b"curl\0\0\0"), "curl");
        assert_eq!(nul_terminated(b"python3"), "python3");
        assert_eq!(nul_terminated(b"\0x"), "");
        assert_eq!(nul_terminated(b"a\xffb\0"), "a\u{FFFD}b");
    }
}
