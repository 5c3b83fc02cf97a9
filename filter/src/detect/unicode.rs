//! Character properties the detectors ask of every non-ASCII char, answered from a few ranges
//! for the scripts most text is in (Latin, Cyrillic, CJK ideographs) before the standard
//! library's Unicode tables, whose binary searches cost a Russian prompt about half its scan
//! time. Each function equals its `char` method for every char (tested exhaustively).

/// `char::is_alphabetic`.
#[inline]
pub fn is_alphabetic(c: char) -> bool {
    match c as u32 {
        0..=0x7F => c.is_ascii_alphabetic(),
        // Latin-1 letters, Latin Extended-A and -B; Cyrillic; CJK unified ideographs.
        0xC0..=0xD6 | 0xD8..=0xF6 | 0xF8..=0x24F | 0x400..=0x481 | 0x48A..=0x52F => true,
        0x4E00..=0x9FFF => true,
        _ => c.is_alphabetic(),
    }
}

/// `char::is_alphanumeric`.
#[inline]
pub fn is_alphanumeric(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric()
    } else {
        is_alphabetic(c) || c.is_numeric()
    }
}

/// `c.to_lowercase()` where that is one char, else `c` unchanged.
#[inline]
pub fn lower(c: char) -> char {
    let u = c as u32;
    let shifted = |by: u32| char::from_u32(u + by).unwrap_or(c);
    match u {
        0..=0x7F => c.to_ascii_lowercase(),
        // Cyrillic: Ѐ..Џ, А..Я to lower case; а..я, ѐ..џ are lower case already.
        0x400..=0x40F => shifted(0x50),
        0x410..=0x42F => shifted(0x20),
        0x430..=0x45F | 0x4E00..=0x9FFF => c,
        _ => {
            let mut l = c.to_lowercase();
            match (l.next(), l.next()) {
                (Some(x), None) => x,
                _ => c,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_chars() -> impl Iterator<Item = char> {
        (0..=u32::from(char::MAX)).filter_map(char::from_u32)
    }

    #[test]
    fn is_alphabetic_equals_std_for_every_char() {
        for c in all_chars() {
            assert_eq!(
                is_alphabetic(c),
                c.is_alphabetic(),
                "{c:?} U+{:04X}",
                c as u32
            );
        }
    }

    #[test]
    fn is_alphanumeric_equals_std_for_every_char() {
        for c in all_chars() {
            assert_eq!(
                is_alphanumeric(c),
                c.is_alphanumeric(),
                "{c:?} U+{:04X}",
                c as u32
            );
        }
    }

    #[test]
    fn lower_equals_a_single_char_to_lowercase_for_every_char() {
        for c in all_chars() {
            let mut l = c.to_lowercase();
            let want = match (l.next(), l.next()) {
                (Some(x), None) => x,
                _ => c,
            };
            assert_eq!(lower(c), want, "{c:?} U+{:04X}", c as u32);
        }
    }
}
