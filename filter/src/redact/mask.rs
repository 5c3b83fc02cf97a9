//! Masking values an answer should not carry (`[REDACTED:EMAIL]`): in a whole answer at once,
//! in a streamed one as it goes, holding back only the tail that may still be a value in
//! progress.

use crate::detect::Finding;

/// At most this many bytes wait for a value in progress to end (a run of words that long is
/// no card, phone or address); past it the text goes on.
const MAX_HOLD: usize = 256;

/// Replaces the findings' spans in `text` by `[REDACTED:KIND]`. Spans off char boundaries or
/// overlapping an earlier one are skipped.
pub fn mask(text: &str, findings: &[Finding]) -> String {
    if findings.is_empty() {
        return text.to_owned();
    }
    let mut spans: Vec<&Finding> = findings.iter().collect();
    spans.sort_by_key(|f| f.span.start);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for f in spans {
        let (Some(before), true) = (
            text.get(at..f.span.start),
            text.is_char_boundary(f.span.end),
        ) else {
            continue;
        };
        out.push_str(before);
        out.push_str("[REDACTED:");
        out.push_str(f.kind);
        out.push(']');
        at = f.span.end;
    }
    out.push_str(text.get(at..).unwrap_or_default());
    out
}

/// The text of a streamed answer on its way out: deltas go in, and come out masked once no
/// value can still grow across their end. What waits is the last word and, before it, the
/// short digit or capital groups cards, phones and IBANs are written in ("4111 1111 …").
#[derive(Default, Debug)]
pub struct StreamMasker {
    pending: String,
}

impl StreamMasker {
    pub fn push(&mut self, delta: &str) {
        self.pending.push_str(delta);
    }

    /// The text held so far: what the value detectors scan, for `release`'s findings.
    pub fn pending(&self) -> &str {
        &self.pending
    }

    /// Releases the held text up to where a value may still be in progress (all of it at
    /// `end`), with `findings` (spans in `pending()`) masked; a value found across that point
    /// is held whole.
    pub fn release(&mut self, findings: &[Finding], end: bool) -> String {
        let mut cut = if end {
            self.pending.len()
        } else {
            hold_from(&self.pending)
        };
        while let Some(f) = findings
            .iter()
            .find(|f| f.span.start < cut && f.span.end > cut)
        {
            cut = f.span.start;
        }
        let rest = self.pending.split_off(cut);
        let ready = std::mem::replace(&mut self.pending, rest);
        let done: Vec<Finding> = findings
            .iter()
            .filter(|f| f.span.end <= cut)
            .cloned()
            .collect();
        mask(&ready, &done)
    }
}

/// Where the tail of `text` that could still grow into a value starts.
fn hold_from(text: &str) -> usize {
    let b = text.as_bytes();
    let space = |c: u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r');
    let token_start = |end: usize| {
        b[..end]
            .iter()
            .rposition(|c| space(*c))
            .map_or(0, |i| i + 1)
    };
    let mut from = b.len();
    if from > 0 && !space(b[from - 1]) {
        from = token_start(from);
    }
    // Back over "1234 " groups: one space (or '-') between short groups of digits or capitals.
    loop {
        let gap = from.saturating_sub(1);
        if from == 0 || b[gap] != b' ' {
            break;
        }
        let start = token_start(gap);
        if start == gap || !is_group(&b[start..gap]) {
            break;
        }
        from = start;
    }
    let floor = text.floor_char_boundary(b.len().saturating_sub(MAX_HOLD));
    from.max(floor)
}

/// A piece of a card, phone or IBAN number: "4111", "+44", "(020)", "GB82", "WEST".
fn is_group(t: &[u8]) -> bool {
    t.len() <= 6
        && t.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"+-().".contains(c))
        && (t.iter().any(u8::is_ascii_digit) || t.iter().all(u8::is_ascii_uppercase))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Detectors;

    fn detectors() -> &'static Detectors {
        static D: std::sync::OnceLock<Detectors> = std::sync::OnceLock::new();
        D.get_or_init(Detectors::new)
    }

    /// Streams `text` in pieces of `size` bytes through a masker, as the engine does.
    fn stream(text: &str, size: usize) -> (String, usize) {
        let mut m = StreamMasker::default();
        let (mut out, mut most_held) = (String::new(), 0);
        let mut findings = Vec::new();
        let mut at = 0;
        while at < text.len() {
            let mut end = (at + size).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            m.push(&text[at..end]);
            findings.clear();
            detectors().scan_values(m.pending(), &mut findings);
            out += &m.release(&findings, false);
            most_held = most_held.max(m.pending().len());
            at = end;
        }
        findings.clear();
        detectors().scan_values(m.pending(), &mut findings);
        out += &m.release(&findings, true);
        (out, most_held)
    }

    #[test]
    fn a_streamed_answer_is_masked_as_the_whole_answer_is_at_any_split() {
        let text = "Write to jane.doe@example.com or call +44 20 7946 0958; card 4111 1111 1111 1111, \
                    IBAN GB82 WEST 1234 5698 7654 32, key ghp_8aK2mZq9LwX4rT7yB1nC5vD3fG6hJ0pQsE2u. Bye.";
        let mut findings = Vec::new();
        detectors().scan_values(text, &mut findings);
        let whole = mask(text, &findings);
        assert!(!whole.contains("jane") && !whole.contains("7946") && !whole.contains("ghp_"));
        for size in [1, 2, 3, 5, 8, 13, 40] {
            let (streamed, most_held) = stream(text, size);
            assert_eq!(streamed, whole, "pieces of {size}");
            assert!(most_held <= MAX_HOLD + size, "held {most_held}");
        }
    }

    #[test]
    fn only_a_possible_value_in_progress_waits() {
        for (text, held) in [
            ("Hello wor", "wor"),
            ("Hello world ", ""),
            ("card 4111 1111 ", "4111 1111 "),
            ("IBAN GB82 WEST 12", "IBAN GB82 WEST 12"),
            ("in the year 2024 we", "2024 we"),
            ("it is nice ", ""),
        ] {
            assert_eq!(&text[hold_from(text)..], held, "{text:?}");
        }
        let long = "x".repeat(600);
        assert_eq!(long.len() - hold_from(&long), MAX_HOLD);
    }
}
