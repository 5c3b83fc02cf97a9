//! What the host knows about the VM between calls: configuration, logs, metrics, properties,
//! and per HTTP context the header maps and body buffers, emulating Envoy's buffering.

use std::collections::HashMap;

/// proxy-wasm status codes the host returns.
pub mod status {
    pub const OK: i32 = 0;
    pub const NOT_FOUND: i32 = 1;
    pub const BAD_ARGUMENT: i32 = 2;
    pub const PARSE_FAILURE: i32 = 4;
    pub const EMPTY: i32 = 7;
    pub const CAS_MISMATCH: i32 = 8;
}

/// An answer the filter sent itself (`proxy_send_local_response`).
#[derive(Clone, Debug, PartialEq)]
pub struct LocalReply {
    pub status: u32,
    pub details: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The gRPC status the filter asked for; `None` for plain HTTP replies (-1 on the wire).
    pub grpc_status: Option<i32>,
}

impl LocalReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }
}

/// A gRPC call the filter dispatched (`proxy_grpc_call`).
#[derive(Clone, Debug, PartialEq)]
pub struct GrpcCall {
    pub token: u32,
    /// The context that made the call; its callbacks get the answer.
    pub context: u32,
    pub cluster: String,
    pub service: String,
    pub method: String,
    pub initial_metadata: Vec<(String, String)>,
    pub message: Vec<u8>,
    pub timeout_ms: u32,
    /// Set once answered (`Vm::grpc_reply`) or cancelled by the filter.
    pub finished: bool,
}

/// An HTTP call the filter dispatched (`proxy_http_call`); recorded, never answered.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpCall {
    pub token: u32,
    pub context: u32,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, String)>,
    pub timeout_ms: u32,
}

/// One HTTP stream as Envoy would hold it.
#[derive(Clone, Debug, Default)]
pub struct Stream {
    pub request_headers: Vec<(String, String)>,
    pub response_headers: Vec<(String, String)>,
    pub request_trailers: Vec<(String, String)>,
    pub response_trailers: Vec<(String, String)>,
    /// Body bytes held while the filter pauses (Envoy's StopIterationAndBuffer).
    pub request_buffer: Vec<u8>,
    pub response_buffer: Vec<u8>,
    /// What went on upstream / downstream so far.
    pub upstream_body: Vec<u8>,
    pub downstream_body: Vec<u8>,
    pub local_reply: Option<LocalReply>,
    /// The filter resumed the request or response from a callback (`proxy_continue_stream`).
    pub request_resumed: bool,
    pub response_resumed: bool,
    /// The last request / response callback paused and nothing resumed it since.
    pub request_paused: bool,
    pub response_paused: bool,
    /// The filter reset the stream (`proxy_close_stream`).
    pub closed: bool,
}

impl Stream {
    pub fn request_header(&self, name: &str) -> Option<&str> {
        find(&self.request_headers, name)
    }

    pub fn response_header(&self, name: &str) -> Option<&str> {
        find(&self.response_headers, name)
    }

    /// Whether Envoy would still run this stream's callbacks: a local reply or a reset ends it.
    pub fn ended(&self) -> bool {
        self.local_reply.is_some() || self.closed
    }

    /// Sends the held request body upstream, as Envoy does when the filter continues.
    pub fn release_request(&mut self) {
        self.request_paused = false;
        if !self.ended() {
            let held = std::mem::take(&mut self.request_buffer);
            self.upstream_body.extend(held);
        }
    }

    /// Sends the held response body downstream, as Envoy does when the filter continues.
    pub fn release_response(&mut self) {
        self.response_paused = false;
        if !self.ended() {
            let held = std::mem::take(&mut self.response_buffer);
            self.downstream_body.extend(held);
        }
    }
}

/// `proxy_set_buffer_bytes` as Envoy's `Buffer::copyFrom` does it: at start 0 it drains `size`
/// bytes and prepends `data` (so (0, len) replaces the whole buffer); at or past the end it
/// appends; anything else is refused (`None`, BadArgument to the filter).
pub fn splice_buffer(buf: &mut Vec<u8>, start: usize, size: usize, data: &[u8]) -> Option<()> {
    if start == 0 {
        buf.splice(0..size.min(buf.len()), data.iter().copied());
    } else if start >= buf.len() {
        buf.extend_from_slice(data);
    } else {
        return None;
    }
    Some(())
}

/// `proxy_get_buffer_bytes`' range: clamped to the buffer, as Envoy does.
pub fn buffer_range(buf: &[u8], start: usize, max: usize) -> &[u8] {
    let start = start.min(buf.len());
    let end = start.saturating_add(max).min(buf.len());
    &buf[start..end]
}

/// Envoy's `setCopy`: the first header of that name takes the value in place, later ones go;
/// a missing header is appended (lowercased, as Envoy stores names).
pub fn replace_header(map: &mut Vec<(String, String)>, key: &str, value: String) {
    let mut value = Some(value);
    map.retain_mut(|(k, v)| {
        if !k.eq_ignore_ascii_case(key) {
            return true;
        }
        match value.take() {
            Some(new) => {
                *v = new;
                true
            }
            None => false,
        }
    });
    if let Some(value) = value {
        map.push((key.to_ascii_lowercase(), value));
    }
}

fn find<'a>(map: &'a [(String, String)], name: &str) -> Option<&'a str> {
    map.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    pub name: String,
    pub kind: i32,
    pub value: i64,
}

#[derive(Default)]
pub struct State {
    pub vm_config: Vec<u8>,
    pub plugin_config: Vec<u8>,
    pub logs: Vec<(i32, String)>,
    pub metrics: Vec<Metric>,
    pub properties: HashMap<Vec<String>, Vec<u8>>,
    pub streams: HashMap<u32, Stream>,
    /// The context whose callback runs now; header and body calls act on its stream.
    pub current: u32,
    pub grpc_calls: Vec<GrpcCall>,
    pub http_calls: Vec<HttpCall>,
    /// Tokens for gRPC and HTTP calls come from one counter, as in Envoy.
    pub next_token: u32,
    /// Clusters `proxy_grpc_call` accepts; `None` accepts any.
    pub clusters: Option<Vec<String>>,
    /// The message and status delivered by the gRPC callback in progress.
    pub grpc_message: Vec<u8>,
    pub grpc_status: (u32, String),
    pub shared_data: HashMap<String, (Vec<u8>, u32)>,
    pub tick_period_ms: u32,
    /// Shared queues by id (index + 1): name and pending messages.
    pub queues: Vec<(String, std::collections::VecDeque<Vec<u8>>)>,
    /// Log level the filter reads with `proxy_get_log_level` (0 trace .. 5 critical).
    pub log_level: u32,
    /// Fixed clock for `proxy_get_current_time_nanoseconds`; `None` reads the system clock.
    pub now_nanos: Option<u64>,
}

impl State {
    pub fn stream(&mut self) -> &mut Stream {
        self.streams.entry(self.current).or_default()
    }

    /// The header map a `MapType` names, for the current stream.
    pub fn map(&mut self, map_type: i32) -> Option<&mut Vec<(String, String)>> {
        let stream = self.stream();
        match map_type {
            0 => Some(&mut stream.request_headers),
            1 => Some(&mut stream.request_trailers),
            2 => Some(&mut stream.response_headers),
            3 => Some(&mut stream.response_trailers),
            _ => None,
        }
    }
}

/// Encodes a header map the proxy-wasm way: count, (key len, value len) pairs, then
/// NUL-terminated keys and values.
pub fn encode_map(map: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend((map.len() as u32).to_le_bytes());
    for (k, v) in map {
        out.extend((k.len() as u32).to_le_bytes());
        out.extend((v.len() as u32).to_le_bytes());
    }
    for (k, v) in map {
        out.extend(k.as_bytes());
        out.push(0);
        out.extend(v.as_bytes());
        out.push(0);
    }
    out
}

/// Decodes `encode_map`'s format; `None` on malformed input.
pub fn decode_map(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    let u32_at = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = u32_at(0)?;
    let mut sizes = Vec::with_capacity(count.min(1024));
    for i in 0..count {
        sizes.push((u32_at(4 + i * 8)?, u32_at(8 + i * 8)?));
    }
    let mut at = 4 + count * 8;
    let mut out = Vec::with_capacity(sizes.len());
    for (klen, vlen) in sizes {
        let key = bytes.get(at..at + klen)?;
        at += klen + 1;
        let value = bytes.get(at..at + vlen)?;
        at += vlen + 1;
        out.push((
            String::from_utf8_lossy(key).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    Some(out)
}

/// Splits a serialized property path (segments separated by NUL).
pub fn decode_path(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_maps_round_trip() {
        let map = vec![
            (":path".to_string(), "/v1/x".to_string()),
            ("x-a".to_string(), String::new()),
        ];
        assert_eq!(decode_map(&encode_map(&map)), Some(map));
        assert_eq!(decode_map(&[1, 0, 0, 0, 9]), None);
        assert_eq!(decode_path(b"request\0id"), vec!["request", "id"]);
    }

    #[test]
    fn buffers_are_replaced_prepended_and_appended_as_in_envoy() {
        // (before, start, size, data, after; None when refused)
        type Case<'a> = (&'a [u8], usize, usize, &'a [u8], Option<&'a [u8]>);
        let cases: &[Case] = &[
            (b"hello world", 0, 11, b"bye", Some(b"bye")),
            (b"hello world", 0, 100, b"bye", Some(b"bye")),
            (b"hello world", 0, 5, b"HELLO", Some(b"HELLO world")),
            (b"world", 0, 0, b"hello ", Some(b"hello world")),
            (b"hello", 5, 0, b"!", Some(b"hello!")),
            (b"hello", 9, 3, b"!", Some(b"hello!")),
            (b"", 0, 0, b"x", Some(b"x")),
            (b"hello", 2, 1, b"L", None),
        ];
        for (before, start, size, data, after) in cases {
            let mut buf = before.to_vec();
            let result = splice_buffer(&mut buf, *start, *size, data);
            match after {
                Some(after) => assert_eq!(buf, *after, "{before:?} {start} {size}"),
                None => {
                    assert!(result.is_none());
                    assert_eq!(buf, *before, "a refused write leaves the buffer");
                }
            }
        }
    }

    #[test]
    fn buffer_reads_are_clamped() {
        assert_eq!(buffer_range(b"hello", 0, usize::MAX), b"hello");
        assert_eq!(buffer_range(b"hello", 1, 3), b"ell");
        assert_eq!(buffer_range(b"hello", 4, 10), b"o");
        assert_eq!(buffer_range(b"hello", 9, 1), b"");
    }

    #[test]
    fn replaced_headers_keep_their_place_and_lose_duplicates() {
        let own = |m: &[(&str, &str)]| -> Vec<(String, String)> {
            m.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let mut map = own(&[("a", "1"), ("X-B", "2"), ("c", "3"), ("x-b", "4")]);
        replace_header(&mut map, "x-b", "9".into());
        assert_eq!(map, own(&[("a", "1"), ("X-B", "9"), ("c", "3")]));
        replace_header(&mut map, "New", "n".into());
        assert_eq!(
            map,
            own(&[("a", "1"), ("X-B", "9"), ("c", "3"), ("new", "n")])
        );
    }

    #[test]
    fn releasing_a_stream_moves_held_bytes_unless_it_ended() {
        let mut s = Stream {
            request_buffer: b"abc".to_vec(),
            request_paused: true,
            ..Stream::default()
        };
        s.release_request();
        assert_eq!(
            (s.upstream_body.as_slice(), s.request_buffer.len()),
            (&b"abc"[..], 0)
        );
        assert!(!s.request_paused);
        s.response_buffer = b"xyz".to_vec();
        s.closed = true;
        s.release_response();
        assert!(
            s.downstream_body.is_empty(),
            "a reset stream forwards nothing"
        );
    }
}
