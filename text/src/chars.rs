//! Per-character properties and folds shared by both normalisers: fast answers for the
//! scripts most text is in (Latin, Cyrillic, CJK ideographs) before the standard library's
//! Unicode tables, whose binary searches cost a Russian prompt about half its scan time (each
//! equals its `char` method for every char, tested exhaustively), and the folds that undo the
//! disguises attackers put on words.

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

/// The ASCII character a Unicode tag character (U+E0020..=U+E007E) mirrors. Tags render as
/// nothing, yet models read them: text written in tags ("ASCII smuggling") is decoded, not
/// dropped, so the detectors see what the model sees.
pub fn tag_ascii(c: char) -> Option<char> {
    match c as u32 {
        u @ 0xE0020..=0xE007E => char::from_u32(u - 0xE0000),
        _ => None,
    }
}

/// Characters removed outright: zero-width, joiners, bidi controls, soft hyphen, BOM, tags
/// (those that mirror ASCII are decoded first, see [`tag_ascii`]).
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{E0000}'..='\u{E007F}')
}

/// Folds width and style variants (full-width forms, mathematical alphanumerics, circled and
/// parenthesised letters, small capitals) and typographic punctuation to ASCII.
pub fn fold_compat(c: char) -> char {
    fold_punctuation(fold_style(c))
}

/// Folds the width and style variants of letters, digits and spaces to ASCII: the disguises,
/// which no one writes by accident (typographic punctuation is left to [`fold_punctuation`]).
pub fn fold_style(c: char) -> char {
    let u = c as u32;
    let ascii = |v: u32| char::from_u32(v).unwrap_or(c);
    match u {
        0xFF01..=0xFF5E => ascii(u - 0xFEE0),
        0x3000 | 0x00A0 | 0x2000..=0x200A | 0x202F | 0x205F => ' ',
        0x1D400..=0x1D6A3 => {
            let k = (u - 0x1D400) % 52;
            if k < 26 {
                ascii(0x61 + k)
            } else {
                ascii(0x61 + k - 26)
            }
        }
        0x1D7CE..=0x1D7FF => ascii(0x30 + (u - 0x1D7CE) % 10),
        0x24B6..=0x24CF => ascii(0x61 + u - 0x24B6),
        0x24D0..=0x24E9 => ascii(0x61 + u - 0x24D0),
        0x249C..=0x24B5 => ascii(0x61 + u - 0x249C),
        0x1F130..=0x1F149 => ascii(0x61 + u - 0x1F130),
        0x1F150..=0x1F169 => ascii(0x61 + u - 0x1F150),
        0x1F170..=0x1F189 => ascii(0x61 + u - 0x1F170),
        0x1F1E6..=0x1F1FF => ascii(0x61 + u - 0x1F1E6),
        _ => c,
    }
}

/// Curly quotes, primes and dashes to their ASCII forms.
pub fn fold_punctuation(c: char) -> char {
    match c as u32 {
        0x2018 | 0x2019 | 0x201B | 0x2032 => '\'',
        0x201C | 0x201D | 0x201F | 0x2033 => '"',
        0x2010..=0x2015 | 0x2212 => '-',
        _ => c,
    }
}

/// Latin letters with diacritics to their base letter, so word lists need no accents.
pub fn fold_accent(c: char) -> char {
    match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => 'a',
        'ç' | 'ć' | 'č' => 'c',
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => 'e',
        'ì' | 'í' | 'î' | 'ï' | 'ī' | 'į' | 'ı' => 'i',
        'ñ' | 'ń' | 'ň' => 'n',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => 'o',
        'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' => 'u',
        'ý' | 'ÿ' => 'y',
        'ś' | 'š' | 'ş' => 's',
        'ź' | 'ż' | 'ž' => 'z',
        'ł' => 'l',
        'ß' => 's',
        _ => c,
    }
}

/// Cyrillic and Greek letters that look like Latin ones. Folded only next to Latin letters, so
/// Russian text stays Russian.
pub fn homoglyph(c: char) -> Option<char> {
    Some(match c {
        'а' | 'α' => 'a',
        'в' | 'β' => 'b',
        'с' | 'ϲ' => 'c',
        'е' | 'ε' | 'ё' => 'e',
        'һ' => 'h',
        'і' | 'ι' | 'ї' => 'i',
        'ј' => 'j',
        'к' | 'κ' => 'k',
        'м' => 'm',
        'н' | 'η' => 'n',
        'о' | 'ο' | 'σ' => 'o',
        'р' | 'ρ' => 'p',
        'ԛ' => 'q',
        'ѕ' => 's',
        'т' | 'τ' => 't',
        'у' | 'υ' | 'γ' => 'y',
        'х' | 'χ' => 'x',
        'ԝ' | 'ω' => 'w',
        'ν' => 'v',
        'ɡ' => 'g',
        'ℓ' => 'l',
        _ => return None,
    })
}

pub fn leet(c: char) -> Option<char> {
    Some(match c {
        '0' => 'o',
        '1' | '!' | '|' => 'i',
        '3' => 'e',
        '4' | '@' => 'a',
        '5' | '$' => 's',
        '7' | '+' => 't',
        '8' => 'b',
        '9' => 'g',
        _ => return None,
    })
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
