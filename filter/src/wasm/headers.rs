//! Reads a header map from Envoy in one host call (see `crate::header_map`), directly rather
//! than through the SDK, whose map helpers panic on a value that is not UTF-8.

use std::ptr::null_mut;

use proxy_wasm::types::{MapType, Status};

use crate::header_map::Headers;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> Status;
}

/// Reads `map` from the host; an error or a malformed answer reads as an empty map (the
/// request then passes as one the filter does not inspect, as with a failed lookup before).
pub fn fetch(map: MapType) -> Headers {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: the pointers are valid for the call; the host allocates the answer with the
    // module's own allocator (`proxy_on_memory_allocate`), so the module owns and frees it.
    let status = unsafe { proxy_get_header_map_pairs(map, &mut data, &mut size) };
    if status != Status::Ok || data.is_null() {
        return Headers::default();
    }
    // SAFETY: see above; `size` bytes were allocated for `data` by the module's allocator.
    let raw = unsafe { Vec::from_raw_parts(data, size, size) };
    Headers::parse(raw).unwrap_or_default()
}
