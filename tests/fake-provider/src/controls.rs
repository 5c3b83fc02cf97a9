//! Per-request test controls carried in `x-fake-*` request headers, and the choice of the
//! reply text. Parsed once per request into typed values; a malformed control header is
//! the test's mistake and is answered with a 400 in the provider's error format.

use std::time::Duration;

use axum::http::HeaderMap;
use base64::Engine as _;

use crate::stream::WritePlan;

/// Characters of reply text per streamed delta when `x-fake-delta-chars` is absent.
pub const DEFAULT_DELTA_CHARS: usize = 4;
/// Upper bound for the delay headers, so a typo cannot hang a test run for hours.
const MAX_DELAY_MS: u64 = 120_000;

/// The typed form of the `x-fake-*` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controls {
    /// Reply text forced by `x-fake-reply` (UTF-8, else Latin-1) or `x-fake-reply-b64` (base64 of UTF-8).
    pub reply: Option<String>,
    /// `x-fake-delta-chars`: characters of reply text per delta event.
    pub delta_chars: usize,
    /// `x-fake-chunk-bytes`: re-slice the whole body into writes of this many bytes.
    pub chunk_bytes: Option<usize>,
    /// `x-fake-delay-ms`: wait before answering.
    pub delay: Option<Duration>,
    /// `x-fake-write-delay-ms`: wait between writes of a streamed body.
    pub write_delay: Option<Duration>,
    /// `x-fake-status`: answer with this error status (400..=599) in the provider's format.
    pub status: Option<u16>,
}

impl Default for Controls {
    fn default() -> Self {
        Self {
            reply: None,
            delta_chars: DEFAULT_DELTA_CHARS,
            chunk_bytes: None,
            delay: None,
            write_delay: None,
            status: None,
        }
    }
}

/// A control header that could not be used, with the reason in words for the error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlError(pub String);

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Controls {
    /// Reads every control header; absent headers keep their defaults.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, ControlError> {
        let mut c = Controls::default();
        if let Some(v) = headers.get("x-fake-reply") {
            c.reply = Some(header_text(v.as_bytes()));
        } else if let Some(v) = headers.get("x-fake-reply-b64") {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(v.as_bytes())
                .map_err(|e| ControlError(format!("x-fake-reply-b64 is not base64: {e}")))?;
            let text = String::from_utf8(raw)
                .map_err(|_| ControlError("x-fake-reply-b64 does not decode to UTF-8".into()))?;
            c.reply = Some(text);
        }
        if let Some(n) = number(headers, "x-fake-delta-chars")? {
            c.delta_chars = positive(n, "x-fake-delta-chars")?;
        }
        if let Some(n) = number(headers, "x-fake-chunk-bytes")? {
            c.chunk_bytes = Some(positive(n, "x-fake-chunk-bytes")?);
        }
        c.delay = delay(headers, "x-fake-delay-ms")?;
        c.write_delay = delay(headers, "x-fake-write-delay-ms")?;
        if let Some(n) = number(headers, "x-fake-status")? {
            if !(400..=599).contains(&n) {
                return Err(ControlError(format!(
                    "x-fake-status must be an error status 400..=599, got {n}"
                )));
            }
            c.status = u16::try_from(n).ok();
        }
        Ok(c)
    }

    /// How the response body is to be written.
    pub fn write_plan(&self) -> WritePlan {
        WritePlan {
            chunk_bytes: self.chunk_bytes,
            write_delay: self.write_delay,
        }
    }
}

/// Header bytes as text: UTF-8 when valid, else Latin-1, which is how Python's
/// `http.client` (and so `requests`) encodes a non-ASCII `str` header value.
fn header_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

fn number(headers: &HeaderMap, name: &str) -> Result<Option<u64>, ControlError> {
    let Some(v) = headers.get(name) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("").trim();
    s.parse::<u64>()
        .map(Some)
        .map_err(|_| ControlError(format!("{name} must be a non-negative integer, got {s:?}")))
}

fn positive(n: u64, name: &str) -> Result<usize, ControlError> {
    match usize::try_from(n) {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ControlError(format!("{name} must be at least 1"))),
    }
}

fn delay(headers: &HeaderMap, name: &str) -> Result<Option<Duration>, ControlError> {
    match number(headers, name)? {
        None => Ok(None),
        Some(ms) if ms > MAX_DELAY_MS => Err(ControlError(format!(
            "{name} must be at most {MAX_DELAY_MS}"
        ))),
        Some(ms) => Ok(Some(Duration::from_millis(ms))),
    }
}

/// The reply text: the per-request header wins, then the reply stored with
/// `PUT /_fake/reply`, else an echo of the last user message.
pub fn select_reply(header: Option<&str>, stored: Option<&str>, user_text: &str) -> String {
    match (header, stored) {
        (Some(h), _) => h.to_owned(),
        (None, Some(s)) => s.to_owned(),
        (None, None) => format!("You said: {user_text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn reply_precedence() {
        let table = [
            (Some("hdr"), Some("stored"), "hi", "hdr"),
            (None, Some("stored"), "hi", "stored"),
            (None, None, "hi", "You said: hi"),
            (None, None, "", "You said: "),
            (Some(""), None, "hi", ""),
        ];
        for (hdr, stored, user, want) in table {
            assert_eq!(select_reply(hdr, stored, user), want);
        }
    }

    #[test]
    fn defaults_without_headers() {
        assert_eq!(
            Controls::from_headers(&HeaderMap::new()),
            Ok(Controls::default())
        );
    }

    #[test]
    fn parses_every_control() {
        let h = headers(&[
            ("x-fake-reply", "héllo".as_bytes()),
            ("x-fake-delta-chars", b"2"),
            ("x-fake-chunk-bytes", b"1"),
            ("x-fake-delay-ms", b"5"),
            ("x-fake-write-delay-ms", b"7"),
            ("x-fake-status", b"429"),
        ]);
        let c = Controls::from_headers(&h).unwrap();
        assert_eq!(c.reply.as_deref(), Some("héllo"));
        assert_eq!(c.delta_chars, 2);
        assert_eq!(c.chunk_bytes, Some(1));
        assert_eq!(c.delay, Some(Duration::from_millis(5)));
        assert_eq!(c.write_delay, Some(Duration::from_millis(7)));
        assert_eq!(c.status, Some(429));
    }

    #[test]
    fn reply_header_is_utf8_else_latin1() {
        let utf8 = headers(&[("x-fake-reply", "日本 é".as_bytes())]);
        assert_eq!(
            Controls::from_headers(&utf8).unwrap().reply.as_deref(),
            Some("日本 é")
        );
        let latin1 = headers(&[("x-fake-reply", b"caf\xe9")]);
        assert_eq!(
            Controls::from_headers(&latin1).unwrap().reply.as_deref(),
            Some("café")
        );
    }

    #[test]
    fn base64_reply_allows_newlines() {
        let h = headers(&[("x-fake-reply-b64", b"eyJhIjoxfQpvaw==")]);
        let c = Controls::from_headers(&h).unwrap();
        assert_eq!(c.reply.as_deref(), Some("{\"a\":1}\nok"));
    }

    #[test]
    fn rejects_bad_values() {
        let bad: &[(&'static str, &[u8])] = &[
            ("x-fake-delta-chars", b"0"),
            ("x-fake-delta-chars", b"-1"),
            ("x-fake-chunk-bytes", b"abc"),
            ("x-fake-status", b"200"),
            ("x-fake-status", b"600"),
            ("x-fake-delay-ms", b"99999999"),
            ("x-fake-reply-b64", b"!!!"),
        ];
        for (k, v) in bad {
            assert!(
                Controls::from_headers(&headers(&[(k, v)])).is_err(),
                "{k}: {v:?} should be rejected"
            );
        }
    }
}
