//! Markdown images and links, and HTML `src=`/`href=` URLs, that carry data to hosts outside
//! the allow-list: an image fires without a click, so it scores higher than a link.

use super::finding;
use crate::detect::{DetectorId, Finding};

/// Markdown images and links, and HTML `src=`/`href=` URLs, pointing to hosts outside
/// `allowed_hosts` with data in the URL (query string or long path segment). Images fire
/// without a click, so they score higher than links.
pub fn exfiltration(text: &str, allowed_hosts: &[String], out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        // Every link has a ']' ("](") or an '=' ("src=", "href="): jump to the next one, and
        // from an '=' back to where its attribute name would start.
        let Some(p) = b.get(i..).and_then(|t| memchr::memchr2(b']', b'=', t)) else {
            break;
        };
        let p = i + p;
        i = if b[p] == b']' {
            p
        } else if p >= i + 4 && b[p - 4..p].eq_ignore_ascii_case(b"href") {
            p - 4
        } else if p >= i + 3 {
            p - 3
        } else {
            i = p + 1;
            continue;
        };
        if let Some(next) = link_at(text, i, allowed_hosts, out) {
            i = next;
            continue;
        }
        i = p + 1;
    }
}

/// Checks for a link starting at `i` (a Markdown "](" or an HTML `src=`/`href=`), records it
/// if risky, and returns where scanning continues; `None` if no link starts there.
pub(super) fn link_at(
    text: &str,
    i: usize,
    allowed_hosts: &[String],
    out: &mut Vec<Finding>,
) -> Option<usize> {
    let b = text.as_bytes();
    // Markdown: ](url  — image if the bracket opened with "![".
    if b[i] == b']' && b.get(i + 1) == Some(&b'(') {
        // `![x](<url>)`: CommonMark's bracketed destination.
        let bracketed = b.get(i + 2) == Some(&b'<');
        let url_start = i + 2 + usize::from(bracketed);
        let url_end = url_end(b, url_start);
        let open = b.get(..i).and_then(|h| h.iter().rposition(|c| *c == b'['));
        let image = open.is_some_and(|o| o > 0 && b.get(o - 1) == Some(&b'!'));
        let start = open.map(|o| if image { o - 1 } else { o }).unwrap_or(i);
        if let Some(url) = text.get(url_start..url_end) {
            if let Some(score) = url_risk(url, allowed_hosts, image) {
                let kind = if image {
                    "MARKDOWN_IMAGE"
                } else {
                    "MARKDOWN_LINK"
                };
                out.push(finding(
                    DetectorId::OutputExfiltration,
                    kind,
                    start,
                    (url_end + 1).min(b.len()),
                    score,
                ));
            }
        }
        return Some(url_end.max(i + 1));
    }
    // HTML: src= / href= with a quoted URL.
    if (b[i] == b's' || b[i] == b'h')
        && (b
            .get(i..i + 5)
            .is_some_and(|s| s.eq_ignore_ascii_case(b"src=\"") || s.eq_ignore_ascii_case(b"src='"))
            || b.get(i..i + 6).is_some_and(|s| {
                s.eq_ignore_ascii_case(b"href=\"") || s.eq_ignore_ascii_case(b"href='")
            }))
    {
        let image = b[i] == b's';
        let url_start = i + if image { 5 } else { 6 };
        let url_end = url_end(b, url_start);
        if let Some(url) = text.get(url_start..url_end) {
            if let Some(score) = url_risk(url, allowed_hosts, image) {
                out.push(finding(
                    DetectorId::OutputExfiltration,
                    "HTML_URL",
                    i,
                    url_end,
                    score,
                ));
            }
        }
        return Some(url_end.max(i + 1));
    }
    None
}

fn url_end(b: &[u8], from: usize) -> usize {
    let mut e = from;
    while e < b.len() && !matches!(b[e], b')' | b' ' | b'"' | b'\'' | b'\n' | b'>' | b'<') {
        e += 1;
    }
    e
}

/// Risk of a URL carrying data out: None for relative URLs and allowed hosts.
fn url_risk(url: &str, allowed: &[String], image: bool) -> Option<f32> {
    // Browsers read `\` as `/` in http(s) URLs: `https:\\evil.example` is evil.example.
    let lower = url.to_ascii_lowercase().replace('\\', "/");
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .or_else(|| lower.strip_prefix("//"))?;
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = rest.get(..host_end).unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or(host);
    let host = host.split(':').next().unwrap_or(host);
    if allowed
        .iter()
        .any(|a| host == a || host.ends_with(&format!(".{a}")))
    {
        return None;
    }
    let tail = rest.get(host_end..).unwrap_or("");
    let query = tail.split_once('?').map(|(_, q)| q).unwrap_or("");
    let longest_value = query
        .split('&')
        .filter_map(|kv| kv.split_once('=').map(|(_, v)| v.len()))
        .max()
        .unwrap_or(0);
    let longest_segment = tail
        .split(['/', '?', '&', '='])
        .map(str::len)
        .max()
        .unwrap_or(0);
    let data =
        longest_value >= 12 || longest_segment >= 40 || query.contains('[') || query.contains('{');
    match (image, data) {
        (true, true) => Some(0.95),
        (true, false) => Some(0.5),
        (false, true) => Some(0.6),
        (false, false) => None,
    }
}
