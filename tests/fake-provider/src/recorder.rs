//! Keeps the last requests that reached the fake provider, so end-to-end tests can check
//! exactly what arrived upstream after the filter rewrote it (`GET /_fake/requests`).

use std::collections::VecDeque;
use std::sync::Mutex;

use axum::http::request::Parts;
use base64::Engine as _;
use serde::Serialize;

/// How many requests are kept; older ones are dropped first.
pub const CAPACITY: usize = 200;

/// One received request as the tests see it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Recorded {
    /// Arrival order, starting at 1 and never reset (not even by a clear).
    pub seq: u64,
    pub method: String,
    pub path: String,
    /// Raw query string without `?`; empty when there is none.
    pub query: String,
    /// Lower-case header names; repeated headers are joined with ", ".
    pub headers: serde_json::Map<String, serde_json::Value>,
    /// The body as UTF-8 text, or base64 when `body_base64` is true.
    pub body: String,
    pub body_base64: bool,
    /// The body parsed as JSON, or null when it is not JSON.
    pub json: serde_json::Value,
}

impl Recorded {
    pub fn new(seq: u64, parts: &Parts, body: &[u8]) -> Self {
        let mut headers = serde_json::Map::new();
        for (name, value) in &parts.headers {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            match headers.get_mut(name.as_str()) {
                Some(serde_json::Value::String(existing)) => {
                    existing.push_str(", ");
                    existing.push_str(&value);
                }
                _ => {
                    headers.insert(name.as_str().to_owned(), value.into());
                }
            }
        }
        let (body_text, body_base64) = match std::str::from_utf8(body) {
            Ok(s) => (s.to_owned(), false),
            Err(_) => (base64::engine::general_purpose::STANDARD.encode(body), true),
        };
        Self {
            seq,
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or("").to_owned(),
            headers,
            body: body_text,
            body_base64,
            json: serde_json::from_slice(body).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// A bounded, thread-safe log of requests.
#[derive(Debug, Default)]
pub struct Recorder {
    inner: Mutex<Log>,
}

#[derive(Debug, Default)]
struct Log {
    next_seq: u64,
    entries: VecDeque<Recorded>,
}

impl Recorder {
    /// Records a request, dropping the oldest beyond [`CAPACITY`].
    pub fn push(&self, parts: &Parts, body: &[u8]) {
        let mut log = self.lock();
        log.next_seq += 1;
        let entry = Recorded::new(log.next_seq, parts, body);
        if log.entries.len() == CAPACITY {
            log.entries.pop_front();
        }
        log.entries.push_back(entry);
    }

    /// All kept requests, oldest first.
    pub fn list(&self) -> Vec<Recorded> {
        self.lock().entries.iter().cloned().collect()
    }

    pub fn clear(&self) {
        self.lock().entries.clear();
    }

    /// A poisoned lock only means another handler panicked mid-push; the log is still usable.
    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(uri: &str) -> Parts {
        Request::post(uri)
            .header("Content-Type", "application/json")
            .header("x-dup", "a")
            .header("x-dup", "b")
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[test]
    fn records_text_json_and_headers() {
        let r = Recorder::default();
        r.push(&parts("/v1/chat/completions?x=1"), br#"{"model":"m"}"#);
        let got = r.list();
        assert_eq!(got.len(), 1);
        let e = &got[0];
        assert_eq!(
            (e.seq, e.method.as_str(), e.path.as_str()),
            (1, "POST", "/v1/chat/completions")
        );
        assert_eq!(e.query, "x=1");
        assert_eq!(e.headers["content-type"], "application/json");
        assert_eq!(e.headers["x-dup"], "a, b");
        assert!(!e.body_base64);
        assert_eq!(e.json["model"], "m");
    }

    #[test]
    fn binary_body_is_base64() {
        let r = Recorder::default();
        r.push(&parts("/x"), &[0xff, 0x00, 0x41]);
        let e = &r.list()[0];
        assert!(e.body_base64);
        assert_eq!(e.body, "/wBB");
        assert_eq!(e.json, serde_json::Value::Null);
    }

    #[test]
    fn keeps_only_the_newest_and_clears() {
        let r = Recorder::default();
        for _ in 0..CAPACITY + 5 {
            r.push(&parts("/x"), b"");
        }
        let got = r.list();
        assert_eq!(got.len(), CAPACITY);
        assert_eq!(got[0].seq, 6);
        r.clear();
        assert!(r.list().is_empty());
        r.push(&parts("/x"), b"");
        assert_eq!(r.list()[0].seq, CAPACITY as u64 + 6);
    }
}
