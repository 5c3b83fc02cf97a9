//! Text normalisation shared by the features, the cache key and training, so that
//! trivially disguised variants (case, full-width letters, zero-width characters,
//! runs of whitespace) map to the same representation.

/// Returns the normalised form of `text`: lower case, full-width ASCII folded to ASCII,
/// zero-width and control characters dropped, whitespace runs collapsed to one space (or to
/// one line break when the run holds one: the model scores a text line by line), trimmed.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending: Option<char> = None;
    for c in text.chars() {
        let c = fold_fullwidth(c);
        if c.is_whitespace() {
            if !out.is_empty() {
                pending = match (pending, is_line_break(c)) {
                    (Some('\n'), _) | (_, true) => Some('\n'),
                    _ => Some(' '),
                };
            }
            continue;
        }
        if is_invisible(c) {
            continue;
        }
        if let Some(space) = pending.take() {
            out.push(space);
        }
        for l in c.to_lowercase() {
            out.push(l);
        }
    }
    out
}

/// Truncates `text` to at most `max_bytes` bytes on a character boundary.
pub fn truncate(text: &str, max_bytes: usize) -> &str {
    &text[..text.floor_char_boundary(max_bytes)]
}

fn fold_fullwidth(c: char) -> char {
    match c as u32 {
        // U+FF01..U+FF5E mirror ASCII 0x21..0x7E.
        cp @ 0xFF01..=0xFF5E => char::from_u32(cp - 0xFF01 + 0x21).unwrap_or(c),
        0x3000 => ' ',
        _ => c,
    }
}

fn is_line_break(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}')
}

fn is_invisible(c: char) -> bool {
    matches!(c as u32, 0x200B..=0x200F | 0x2060..=0x2064 | 0xFEFF | 0x00AD) || c.is_control()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_disguises() {
        let cases = [
            (
                "  Ignore\tPREVIOUS  instructions ",
                "ignore previous instructions",
            ),
            ("Table:\r\n \n| a |  b |\n", "table:\n| a | b |"),
            ("Ｉｇｎｏｒｅ all", "ignore all"),
            ("ig\u{200B}nore", "ignore"),
            ("", ""),
            ("Ärger", "ärger"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input), want, "input {input:?}");
        }
    }

    #[test]
    fn truncates_on_char_boundary() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
