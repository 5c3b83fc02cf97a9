//! One header map, read from the host in one call and looked up by name. Under Envoy's V8
//! runtime one `proxy_get_header_map_value` costs about as much as reading all pairs, so the
//! adapter reads each map once (`proxy_wasm::hostcalls::get_map_bytes`). Values that are not
//! UTF-8 read as absent instead of trapping the VM (as the SDK's `String` helpers do).

/// The pairs of one header map, in Envoy's order.
#[derive(Debug, Default, Clone)]
pub struct Headers {
    pairs: Vec<(String, Vec<u8>)>,
}

impl From<Vec<(String, Vec<u8>)>> for Headers {
    fn from(pairs: Vec<(String, Vec<u8>)>) -> Self {
        Headers { pairs }
    }
}

impl Headers {
    /// The first value of `name` (compared without case), as `proxy_get_header_map_value`
    /// answers; `None` when absent or not UTF-8.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_raw(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The first value of `name` as bytes, UTF-8 or not: whether the header is there at all.
    pub fn get_raw(&self, name: &str) -> Option<&[u8]> {
        self.pairs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
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

    #[test]
    fn first_value_wins_names_ignore_case_and_bad_utf8_reads_as_absent() {
        let h = Headers::from(
            [
                (":method", &b"POST"[..]),
                ("x-user", b"alice"),
                ("x-user", b"mallory"),
                ("x-bin", b"\xff\xfe"),
                ("x-empty", b""),
            ]
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_vec()))
            .collect::<Vec<_>>(),
        );
        assert_eq!(h.get(":method"), Some("POST"));
        assert_eq!(h.get("X-User"), Some("alice"));
        assert_eq!(h.get("x-bin"), None);
        assert_eq!(h.get_raw("x-bin"), Some(&b"\xff\xfe"[..]));
        assert_eq!(h.lossy("x-bin").as_deref(), Some("\u{fffd}\u{fffd}"));
        assert_eq!(h.get("x-empty"), Some(""));
        assert_eq!(h.get("x-missing"), None);
        assert_eq!(Headers::default().get("a"), None);
    }
}
