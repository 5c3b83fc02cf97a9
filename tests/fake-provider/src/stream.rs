//! Wire framing shared by every provider: SSE events, streamed JSON arrays, splitting
//! reply text into deltas and re-slicing a whole body into fixed-size writes.
//!
//! Everything here is pure except [`respond`], which turns the planned writes into an
//! HTTP response whose body is written piece by piece, so tests see real separate writes.

use std::collections::VecDeque;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;

/// One server-sent event. `data` is one line: compact JSON never contains a raw newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<&'static str>,
    pub data: String,
}

impl SseEvent {
    /// An event carrying `event: NAME` before its data (Anthropic, Responses, Cohere).
    pub fn named(event: &'static str, data: &serde_json::Value) -> Self {
        Self {
            event: Some(event),
            data: data.to_string(),
        }
    }

    /// A data-only event (Chat Completions, Gemini).
    pub fn data(data: &serde_json::Value) -> Self {
        Self {
            event: None,
            data: data.to_string(),
        }
    }

    /// A data-only event with a literal payload, such as OpenAI's `[DONE]`.
    pub fn raw(data: &str) -> Self {
        Self {
            event: None,
            data: data.to_owned(),
        }
    }

    /// The event's bytes on the wire, terminated by the blank line.
    pub fn encode(&self) -> Bytes {
        let mut out = String::with_capacity(self.data.len() + 32);
        if let Some(name) = self.event {
            out.push_str("event: ");
            out.push_str(name);
            out.push('\n');
        }
        out.push_str("data: ");
        out.push_str(&self.data);
        out.push_str("\n\n");
        Bytes::from(out)
    }
}

/// Splits `text` into pieces of at most `n` characters (not bytes), so each piece is valid
/// UTF-8. Empty text gives no pieces; `n == 0` is treated as 1.
pub fn split_chars(text: &str, n: usize) -> Vec<String> {
    let n = n.max(1);
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut count = 0;
    for ch in text.chars() {
        current.push(ch);
        count += 1;
        if count == n {
            pieces.push(std::mem::take(&mut current));
            count = 0;
        }
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces
}

/// Pieces of a streamed JSON array as Gemini sends it without `alt=sse`:
/// `[`, first element, then `,\r\n` + each further element, then `]`.
pub fn json_array_pieces(items: &[serde_json::Value]) -> Vec<Bytes> {
    let mut pieces = Vec::with_capacity(items.len() + 1);
    for (i, item) in items.iter().enumerate() {
        let prefix = if i == 0 { "[" } else { ",\r\n" };
        pieces.push(Bytes::from(format!("{prefix}{item}")));
    }
    if items.is_empty() {
        pieces.push(Bytes::from_static(b"["));
    }
    pieces.push(Bytes::from_static(b"]"));
    pieces
}

/// Concatenates the pieces and cuts them again into writes of exactly `n` bytes (the last
/// one may be shorter), deliberately ignoring event and UTF-8 boundaries.
pub fn reslice(pieces: &[Bytes], n: usize) -> Vec<Bytes> {
    let n = n.max(1);
    let whole: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
    whole.chunks(n).map(Bytes::copy_from_slice).collect()
}

/// How the body of a response is to be written.
#[derive(Debug, Clone, Copy, Default)]
pub struct WritePlan {
    /// Re-slice everything into writes of this many bytes.
    pub chunk_bytes: Option<usize>,
    /// Pause between writes; without it the writer only yields so each write is flushed.
    pub write_delay: Option<Duration>,
}

/// Builds the response. A single piece without re-slicing goes out as an ordinary body
/// with a Content-Length; anything else is written piece by piece (chunked encoding).
pub fn respond(
    status: StatusCode,
    content_type: &'static str,
    pieces: Vec<Bytes>,
    plan: WritePlan,
) -> Response {
    let writes = match plan.chunk_bytes {
        Some(n) => reslice(&pieces, n),
        None => pieces,
    };
    let body = if writes.len() == 1 && plan.chunk_bytes.is_none() {
        Body::from(writes.into_iter().next().unwrap_or_default())
    } else {
        paced_body(writes, plan.write_delay)
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if content_type.starts_with("text/event-stream") {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    response
}

/// A body that hands hyper one write at a time. Between writes it sleeps or at least
/// yields: the body then reports "not ready", and hyper flushes what it has to the socket
/// instead of coalescing several writes into one.
fn paced_body(writes: Vec<Bytes>, delay: Option<Duration>) -> Body {
    let queue: VecDeque<Bytes> = writes.into();
    let stream =
        futures_util::stream::unfold((queue, true), move |(mut queue, first)| async move {
            let next = queue.pop_front()?;
            if !first {
                match delay {
                    Some(d) if !d.is_zero() => tokio::time::sleep(d).await,
                    _ => tokio::task::yield_now().await,
                }
            }
            Some((Ok::<Bytes, std::io::Error>(next), (queue, false)))
        });
    Body::from_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn named_event_has_event_line_and_blank_line() {
        let ev = SseEvent::named("ping", &json!({"type": "ping"}));
        assert_eq!(
            &ev.encode()[..],
            b"event: ping\ndata: {\"type\":\"ping\"}\n\n"
        );
    }

    #[test]
    fn data_event_and_done_marker() {
        assert_eq!(
            &SseEvent::data(&json!({"a": 1})).encode()[..],
            b"data: {\"a\":1}\n\n"
        );
        assert_eq!(&SseEvent::raw("[DONE]").encode()[..], b"data: [DONE]\n\n");
    }

    #[test]
    fn newlines_in_text_stay_on_one_data_line() {
        let ev = SseEvent::data(&json!({"t": "a\nb\n\nc"}));
        let wire = ev.encode();
        assert_eq!(wire.iter().filter(|b| **b == b'\n').count(), 2);
    }

    #[test]
    fn split_counts_chars_not_bytes() {
        let table: &[(&str, usize, &[&str])] = &[
            ("", 4, &[]),
            ("abcdefghij", 4, &["abcd", "efgh", "ij"]),
            ("héllo wörld", 3, &["hél", "lo ", "wör", "ld"]),
            ("日本語テキスト", 2, &["日本", "語テ", "キス", "ト"]),
            ("ab", 0, &["a", "b"]),
            ("ab", 100, &["ab"]),
        ];
        for (text, n, want) in table {
            assert_eq!(split_chars(text, *n), *want, "split {text:?} by {n}");
        }
    }

    #[test]
    fn reslice_ignores_boundaries_and_keeps_bytes() {
        let pieces = vec![Bytes::from("data: é\n\n"), Bytes::from("data: x\n\n")];
        let whole: Vec<u8> = pieces.iter().flat_map(|p| p.to_vec()).collect();
        for n in [1usize, 2, 3, 7, 100] {
            let out = reslice(&pieces, n);
            assert!(out.iter().all(|w| !w.is_empty() && w.len() <= n));
            assert!(out[..out.len() - 1].iter().all(|w| w.len() == n));
            let joined: Vec<u8> = out.iter().flat_map(|p| p.to_vec()).collect();
            assert_eq!(joined, whole, "n={n}");
        }
        // One byte per write splits the two-byte 'é' across writes.
        assert_eq!(reslice(&pieces, 1).len(), whole.len());
    }

    #[test]
    fn json_array_pieces_form_valid_json() {
        let items = vec![json!({"a": 1}), json!({"b": "x"}), json!([])];
        let joined: Vec<u8> = json_array_pieces(&items)
            .iter()
            .flat_map(|p| p.to_vec())
            .collect();
        let parsed: serde_json::Value = serde_json::from_slice(&joined).unwrap();
        assert_eq!(parsed, json!([{"a": 1}, {"b": "x"}, []]));
        let empty: Vec<u8> = json_array_pieces(&[])
            .iter()
            .flat_map(|p| p.to_vec())
            .collect();
        assert_eq!(empty, b"[]");
    }
}
