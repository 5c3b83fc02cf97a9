//! Secrets with a structure of their own, read by hand after a cheap search for their marker:
//! PEM private keys, JWTs, Facebook app tokens, Sidekiq credentials, `curl -u` users and
//! connection strings with a password.

use super::{entropy, finding, is_placeholder};
use crate::detect::{is_alnum_at, Finding};

pub(super) fn pem_keys(text: &str, out: &mut Vec<Finding>) {
    let mut from = 0;
    while let Some(s) = next_at(text, from, "-----BEGIN ") {
        let Some(head_end) = text.get(s + 11..).and_then(|t| t.find("-----")) else {
            break;
        };
        let label = text.get(s + 11..s + 11 + head_end).unwrap_or("");
        from = s + 11 + head_end + 5;
        if !label.ends_with("PRIVATE KEY") || label.len() > 40 {
            continue;
        }
        let end_marker = format!("-----END {label}-----");
        let body_end = text.get(from..).and_then(|t| t.find(&end_marker));
        let e = match body_end {
            Some(r) => from + r + end_marker.len(),
            // Truncated key: take the base64 body that follows.
            None => {
                let mut e = from;
                let b = text.as_bytes();
                while e < b.len()
                    && (b[e].is_ascii_alphanumeric()
                        || matches!(
                            b[e],
                            b'+' | b'/' | b'=' | b'\n' | b'\r' | b' ' | b'\\' | b':' | b'-' | b','
                        ))
                {
                    e += 1;
                }
                e
            }
        };
        let body = text.get(from..e).unwrap_or("");
        let body_chars = body.bytes().filter(|c| c.is_ascii_alphanumeric()).count();
        if body_chars >= 40 && !is_placeholder(body.trim_end_matches(&end_marker[..])) {
            out.push(finding("PRIVATE_KEY", s, e, 0.99));
        }
        from = e.max(from);
    }
}

/// Byte offset of the next `needle` at or after `from` (memchr's vectorised search).
pub(super) fn next_at(text: &str, from: usize, needle: &str) -> Option<usize> {
    let hay = text.as_bytes().get(from..)?;
    let at = match needle.as_bytes() {
        [c] => memchr::memchr(*c, hay),
        n => memchr::memmem::find(hay, n),
    };
    at.map(|r| from + r)
}

pub(super) fn jwts(text: &str, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    let url = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
    let mut i = 0;
    while let Some(at) = next_at(text, i, "eyJ") {
        i = at;
        if i > 0 && url(b[i - 1]) {
            i += 1;
            continue;
        }
        let mut e = i;
        let mut parts = [0usize; 3];
        let mut k = 0;
        while e < b.len() {
            if url(b[e]) {
                parts[k] += 1;
            } else if b[e] == b'.' && k < 2 && b.get(e + 1).is_some_and(|c| url(*c)) {
                k += 1;
            } else {
                break;
            }
            e += 1;
        }
        if k == 2
            && parts[0] >= 10
            && parts[1] >= 10
            && b.get(i + parts[0] + 1..i + parts[0] + 4) == Some(b"eyJ")
        {
            out.push(finding("JWT", i, e, 0.95));
        }
        i = e.max(i + 1);
    }
}

/// Whether a value ending at `e` is cut short or masked ("xoxp-5723…-####", "ghp_ab12..."):
/// then it is an example, not a secret. (Not `*`: "**key**" is markdown bold.)
pub(super) fn redacted_tail(b: &[u8], e: usize) -> bool {
    let rest = b.get(e..).unwrap_or_default();
    rest.starts_with(b"..") || rest.starts_with("…".as_bytes()) || rest.first() == Some(&b'#')
}

/// Facebook app access tokens: the app id (15–16 digits), `|` (or `%7C`), the app secret or
/// token (27–40 URL-safe chars).
pub(super) fn facebook_app_tokens(text: &str, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    let url = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
    let mut from = 0;
    while let Some(bar) = next_at(text, from, "|") {
        from = bar + 1;
        let mut s = bar;
        while s > 0 && b[s - 1].is_ascii_digit() && bar - s <= 16 {
            s -= 1;
        }
        if !(15..=16).contains(&(bar - s)) || (s > 0 && is_alnum_at(b, s - 1)) {
            continue;
        }
        let mut e = bar + 1;
        while e < b.len() && url(b[e]) {
            e += 1;
        }
        let secret = text.get(bar + 1..e).unwrap_or("");
        if (27..=40).contains(&secret.len())
            && !is_placeholder(secret)
            && entropy(secret) >= 3.0
            && !redacted_tail(b, e)
        {
            out.push(finding("FACEBOOK_TOKEN", s, e, 0.9));
        }
    }
}

/// Sidekiq Enterprise/Pro gem credentials: `BUNDLE_ENTERPRISE__CONTRIBSYS__COM=` (or `GEMS`)
/// followed by `hex8:hex8`, Bundler's environment form of a source credential.
pub(super) fn sidekiq(text: &str, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    let hex8 = |i: usize| {
        b.get(i..i + 8)
            .is_some_and(|w| w.iter().all(|c| c.is_ascii_hexdigit()))
    };
    let mut from = 0;
    while let Some(at) = next_at(text, from, "CONTRIBSYS__COM") {
        from = at + 15;
        let mut p = from;
        while b.get(p).is_some_and(|c| matches!(c, b'"' | b'\'' | b' ')) {
            p += 1;
        }
        if !b.get(p).is_some_and(|c| matches!(c, b':' | b'=')) {
            continue;
        }
        while b
            .get(p)
            .is_some_and(|c| matches!(c, b':' | b'=' | b' ' | b'"' | b'\''))
        {
            p += 1;
        }
        if hex8(p) && b.get(p + 8) == Some(&b':') && hex8(p + 9) && !is_alnum_at(b, p + 17) {
            out.push(finding("SIDEKIQ_SECRET", p, p + 17, 0.9));
        }
    }
}

/// `curl -u user:password` / `--user 'user:password'` with a real-looking password.
pub(super) fn curl_user(text: &str, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    if memchr::memmem::find(b, b"-u").is_none() {
        return;
    }
    let mut i = 0;
    while let Some(at) = next_at(text, i, "-") {
        i = at;
        let flag_len = if b[i..].starts_with(b"--user ") {
            7
        } else if b[i..].starts_with(b"-u ") && (i == 0 || b[i - 1] == b' ') {
            3
        } else {
            i += 1;
            continue;
        };
        let mut p = i + flag_len;
        while b.get(p) == Some(&b' ') {
            p += 1;
        }
        let start = p;
        while p < b.len() && !matches!(b[p], b' ' | b'\n' | b'\t') {
            p += 1;
        }
        let raw = std::str::from_utf8(&b[start..p]).unwrap_or("");
        let cred: String = raw
            .chars()
            .filter(|c| !matches!(c, '"' | '\'' | '{' | '}'))
            .collect();
        if let Some((_, pw)) = cred.split_once(':') {
            let user = cred.split(':').next().unwrap_or("");
            let secret_part = if pw.is_empty() { user } else { pw };
            if secret_part.len() >= 6
                && !is_placeholder(secret_part)
                && !secret_part.starts_with('$')
            {
                out.push(finding("CURL_CREDENTIALS", start, p, 0.85));
            }
        }
        i = p.max(i + 1);
    }
}

/// `scheme://user:password@host` with a real-looking password.
pub(super) fn connection_strings(text: &str, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(at) = next_at(text, i, "://") {
        i = at;
        let mut s = i;
        while s > 0 && (b[s - 1].is_ascii_alphanumeric() || matches!(b[s - 1], b'+' | b'-' | b'.'))
        {
            s -= 1;
        }
        let mut e = i + 3;
        let mut colon = None;
        let mut at = None;
        while e < b.len()
            && !matches!(
                b[e],
                b' ' | b'\n' | b'"' | b'\'' | b'/' | b'`' | b'<' | b'>'
            )
        {
            match b[e] {
                b':' if colon.is_none() => colon = Some(e),
                b'@' => at = Some(e),
                _ => {}
            }
            e += 1;
        }
        if let (Some(c), Some(a)) = (colon, at) {
            if c < a && s < i {
                let pw = std::str::from_utf8(&b[c + 1..a]).unwrap_or("");
                if pw.len() >= 3
                    && !is_placeholder(pw)
                    && !pw.starts_with('$')
                    && !pw.eq_ignore_ascii_case("password")
                {
                    let mut host_end = a + 1;
                    while host_end < b.len()
                        && !matches!(
                            b[host_end],
                            b' ' | b'\n' | b'"' | b'\'' | b'`' | b'<' | b'>' | b')'
                        )
                    {
                        host_end += 1;
                    }
                    out.push(finding("CONNECTION_STRING", s, host_end, 0.9));
                    i = host_end;
                    continue;
                }
            }
        }
        i += 3;
    }
}
