//! What the host knows about the VM between calls: configuration, logs, metrics, properties,
//! and per HTTP context the header maps and body buffers, emulating Envoy's buffering.

use std::collections::HashMap;

/// proxy-wasm status codes the host returns.
pub mod status {
    pub const OK: i32 = 0;
    pub const NOT_FOUND: i32 = 1;
    pub const BAD_ARGUMENT: i32 = 2;
    pub const CAS_MISMATCH: i32 = 8;
}

/// An answer the filter sent itself (`proxy_send_local_response`).
#[derive(Clone, Debug, PartialEq)]
pub struct LocalReply {
    pub status: u32,
    pub details: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
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
    pub message: Vec<u8>,
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
}

impl Stream {
    pub fn request_header(&self, name: &str) -> Option<&str> {
        find(&self.request_headers, name)
    }

    pub fn response_header(&self, name: &str) -> Option<&str> {
        find(&self.response_headers, name)
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
    pub next_token: u32,
    /// Clusters `proxy_grpc_call` accepts; `None` accepts any.
    pub clusters: Option<Vec<String>>,
    /// The message and status delivered by the gRPC callback in progress.
    pub grpc_message: Vec<u8>,
    pub grpc_status: (u32, String),
    pub shared_data: HashMap<String, (Vec<u8>, u32)>,
    pub tick_period_ms: u32,
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
}
