//! A header map as proxy-wasm serialises it (`proxy_get_header_map_pairs`), decoded with
//! bounds checks and looked up by name in place. The adapter reads each map in one host call:
//! under Envoy's V8 runtime one `proxy_get_header_map_value` costs about as much as all pairs.
//! Values that are not UTF-8 read as absent instead of trapping the VM (as the SDK's helpers do).

use std::ops::Range;

/// The pairs of one header map as Envoy serialised them, with each name's and value's place.
#[derive(Debug, Default)]
pub struct Headers {
    raw: Vec<u8>,
    pairs: Vec<(Range<usize>, Range<usize>)>,
}

impl Headers {
    /// Decodes proxy-wasm's map serialisation: a `u32` count, then a `u32` name size and a
    /// `u32` value size per pair, then each name and value followed by a NUL byte.
    pub fn parse(raw: Vec<u8>) -> Option<Headers> {
        let word = |at: usize| -> Option<usize> {
            let bytes = raw.get(at..at.checked_add(4)?)?;
            Some(u32::from_le_bytes(bytes.try_into().ok()?) as usize)
        };
        let count = word(0)?;
        let mut at = count.checked_mul(8)?.checked_add(4)?;
        let mut pairs = Vec::with_capacity(count.min(raw.len() / 8));
        for i in 0..count {
            let name_len = word(4 + i * 8)?;
            let value_len = word(8 + i * 8)?;
            let name = at..at.checked_add(name_len)?;
            at = name.end.checked_add(1)?;
            let value = at..at.checked_add(value_len)?;
            at = value.end.checked_add(1)?;
            if at > raw.len() {
                return None;
            }
            pairs.push((name, value));
        }
        Some(Headers { raw, pairs })
    }

    /// The first value of `name` (compared without case), as `proxy_get_header_map_value`
    /// answers; `None` when absent or not UTF-8.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_raw(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The first value of `name` as bytes, UTF-8 or not: whether the header is there at all.
    pub fn get_raw(&self, name: &str) -> Option<&[u8]> {
        self.pairs
            .iter()
            .find(|(n, _)| self.raw[n.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| &self.raw[v.clone()])
    }

    /// The first value of `name` with any byte that is not UTF-8 replaced by U+FFFD: for
    /// values that decide whether a request is inspected at all (`:path`), where reading a
    /// stray byte as "absent" would let the request pass unseen.
    pub fn lossy(&self, name: &str) -> Option<String> {
        self.get_raw(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// As [`Headers::get`], owned.
    pub fn owned(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serialise(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (n, v) in pairs {
            out.extend((n.len() as u32).to_le_bytes());
            out.extend((v.len() as u32).to_le_bytes());
        }
        for (n, v) in pairs {
            out.extend(*n);
            out.push(0);
            out.extend(*v);
            out.push(0);
        }
        out
    }

    #[test]
    fn first_value_wins_names_ignore_case_and_bad_utf8_reads_as_absent() {
        let raw = serialise(&[
            (b":method", b"POST"),
            (b"x-user", b"alice"),
            (b"x-user", b"mallory"),
            (b"x-bin", b"\xff\xfe"),
            (b"x-empty", b""),
        ]);
        let h = Headers::parse(raw).unwrap();
        assert_eq!(h.get(":method"), Some("POST"));
        assert_eq!(h.get("X-User"), Some("alice"));
        assert_eq!(h.get("x-bin"), None);
        assert_eq!(h.get_raw("x-bin"), Some(&b"\xff\xfe"[..]));
        assert_eq!(h.lossy("x-bin").as_deref(), Some("\u{fffd}\u{fffd}"));
        assert_eq!(h.get("x-empty"), Some(""));
        assert_eq!(h.get("x-missing"), None);
    }

    #[test]
    fn malformed_maps_are_refused_not_read_out_of_bounds() {
        let good = serialise(&[(b"a", b"b"), (b"cc", b"dd")]);
        for cut in 0..good.len() {
            assert!(
                Headers::parse(good[..cut].to_vec()).is_none(),
                "cut at {cut}"
            );
        }
        let mut huge = good.clone();
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Headers::parse(huge).is_none());
        let mut long_value = good;
        long_value[8..12].copy_from_slice(&1000u32.to_le_bytes());
        assert!(Headers::parse(long_value).is_none());
        assert_eq!(Headers::parse(serialise(&[])).unwrap().get("a"), None);
    }
}
