//! Server-Sent Events framing: upstream writes split events anywhere (mid-line, mid-UTF-8), so
//! bytes are re-framed on the blank line that ends each event before anything reads them.

/// Accumulates stream bytes and yields whole events, each with its terminating blank line.
#[derive(Debug, Default)]
pub struct Framer {
    pending: Vec<u8>,
}

/// Where the blank line ending the first event in `buf` finishes, if there is one.
/// SSE allows `\n`, `\r\n` and `\r` line ends, so an event ends at `\n\n`, `\r\n\r\n` or `\r\r`.
fn event_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buf.len() {
        match buf[i] {
            b'\n' if buf.get(i + 1) == Some(&b'\n') => return Some(i + 2),
            b'\n' if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') => {
                return Some(i + 3)
            }
            b'\r' if buf.get(i + 1) == Some(&b'\r') => return Some(i + 2),
            _ => {}
        }
        i += 1;
    }
    None
}

impl Framer {
    /// Adds a chunk and returns the events it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(len) = self.pending.get(start..).and_then(event_end) {
            events.push(self.pending[start..start + len].to_vec());
            start += len;
        }
        self.pending.drain(..start);
        events
    }

    /// Bytes held back waiting for the end of their event.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// Ends the stream: whatever is left (an unterminated last event) is returned as is.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }
}

/// The fields of one event that inspection needs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Event<'a> {
    /// The `event:` field, if any.
    pub name: Option<&'a str>,
    /// The `data:` lines joined by `\n`, as the SSE specification says.
    pub data: String,
}

/// Reads an event's fields. Invalid UTF-8 gives `None`: the caller forwards such events as they
/// are instead of guessing.
pub fn parse_event(raw: &[u8]) -> Option<Event<'_>> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut event = Event::default();
    let mut first_data = true;
    for line in text.split(['\n', '\r']) {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event.name = Some(value),
            "data" => {
                if !first_data {
                    event.data.push('\n');
                }
                event.data.push_str(value);
                first_data = false;
            }
            _ => {}
        }
    }
    Some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[u8] = b"event: message_start\ndata: {\"a\":1}\n\n: comment\n\ndata: {\"b\":\"\xc3\xa9\"}\r\n\r\ndata: [DONE]\n\n";

    #[test]
    fn every_chunking_gives_the_same_events() {
        let whole = Framer::default().push(STREAM);
        assert_eq!(whole.len(), 4);
        assert_eq!(whole.concat(), STREAM);
        for size in 1..STREAM.len() {
            let mut framer = Framer::default();
            let events: Vec<Vec<u8>> = STREAM.chunks(size).flat_map(|c| framer.push(c)).collect();
            assert_eq!(events, whole, "chunks of {size}");
            assert!(framer.finish().is_empty());
        }
    }

    #[test]
    fn unterminated_tail_is_kept_until_finish() {
        let mut framer = Framer::default();
        assert!(framer.push(b"data: {\"x\"").is_empty());
        assert_eq!(framer.pending(), b"data: {\"x\"");
        assert_eq!(framer.finish(), b"data: {\"x\"");
    }

    #[test]
    fn fields() {
        let e = parse_event(b"event: content_block_delta\ndata: {\"x\":\ndata: 1}\n\n").unwrap();
        assert_eq!(e.name, Some("content_block_delta"));
        assert_eq!(e.data, "{\"x\":\n1}");
        assert_eq!(parse_event(b": ping\n\n").unwrap(), Event::default());
        assert!(parse_event(b"data: \xff\n\n").is_none());
    }
}
