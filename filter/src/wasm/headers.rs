//! Reads a header map from Envoy in one host call (see `crate::header_map`), as bytes: the
//! SDK's `String` map helpers panic on a value that is not UTF-8.

use proxy_wasm::types::MapType;

use crate::header_map::Headers;

/// Reads `map` from the host; an error reads as an empty map (the request then passes as one
/// the filter does not inspect, as with a failed lookup before).
pub fn fetch(map: MapType) -> Headers {
    proxy_wasm::hostcalls::get_map_bytes(map)
        .map(Headers::from)
        .unwrap_or_default()
}
