//! A streamed answer in flight: events re-framed, text deltas passed through the restorer
//! (placeholders split across deltas come out whole), output checks run on a rolling window of
//! recent text, and the stream stopped with a provider-format error event when a check blocks.

use std::ops::Range;

use crate::redact::mask::StreamMasker;
use crate::redact::vault::{StreamRestorer, Vault};

use super::sse::Framer;

/// Bytes of recent answer text the output checks see, so a value split over deltas is caught.
pub const WINDOW_BYTES: usize = 512;

/// Per-stream state, kept in the exchange.
#[derive(Debug, Default)]
pub struct AnswerStream {
    pub(crate) framer: Framer,
    /// New personal data and secrets masked on the way out, before placeholders are restored.
    pub(crate) masker: StreamMasker,
    pub(crate) restorer: StreamRestorer,
    /// The last delta event, rebuilt with held-back text when a run of text ends.
    pub(crate) template: Option<Template>,
    /// Recent provider text (placeholders not yet restored), for the output checks.
    pub(crate) window: String,
    /// Set once an error event ended the stream: later bytes are dropped.
    pub stopped: bool,
    /// Answer text bytes seen so far, for the answer length limit.
    pub(crate) answer_bytes: usize,
    /// The answer's text so far, kept only for the checks of its whole text (format,
    /// language), up to a bound; `text_cut` once the bound dropped some.
    pub(crate) text: String,
    pub(crate) text_cut: bool,
    /// Set once the checks of the whole text ran (when the text ended, or at the end).
    pub(crate) text_checked: bool,
}

#[derive(Debug)]
pub(crate) struct Template {
    pub name: Option<String>,
    pub data: String,
    pub literal: Range<usize>,
}

impl AnswerStream {
    /// Appends a delta to the window, dropping the oldest text beyond `WINDOW_BYTES`.
    pub(crate) fn slide(&mut self, delta: &str) {
        self.window.push_str(delta);
        if self.window.len() > WINDOW_BYTES {
            let mut cut = self.window.len() - WINDOW_BYTES;
            while !self.window.is_char_boundary(cut) {
                cut += 1;
            }
            self.window.drain(..cut);
        }
    }
}

/// Serialises an event: `event:` line if named, one `data:` line, blank line.
pub fn build_event(name: Option<&str>, data: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 32);
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    for line in data.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

/// Restores placeholders in every string of a JSON event (complete texts such as Responses'
/// `response.completed`). `None` when nothing changed or the data is not JSON.
pub fn restore_json(data: &str, vault: &Vault) -> Option<String> {
    fn walk(value: &mut serde_json::Value, vault: &Vault) -> bool {
        match value {
            serde_json::Value::String(s) if s.contains('<') => {
                let restored = vault.restore(s);
                let changed = restored != *s;
                *s = restored;
                changed
            }
            serde_json::Value::Array(items) => {
                items.iter_mut().fold(false, |c, v| walk(v, vault) | c)
            }
            serde_json::Value::Object(map) => {
                map.values_mut().fold(false, |c, v| walk(v, vault) | c)
            }
            _ => false,
        }
    }
    let mut value: serde_json::Value = serde_json::from_str(data).ok()?;
    walk(&mut value, vault).then(|| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_bounded_and_utf8_safe() {
        let mut s = AnswerStream::default();
        for _ in 0..300 {
            s.slide("é!");
        }
        assert!(s.window.len() <= WINDOW_BYTES);
        assert!(s.window.ends_with("é!"));
    }

    #[test]
    fn events_are_rebuilt() {
        assert_eq!(
            build_event(Some("ping"), "{}"),
            b"event: ping\ndata: {}\n\n"
        );
        assert_eq!(build_event(None, "a\nb"), b"data: a\ndata: b\n\n");
    }
}
