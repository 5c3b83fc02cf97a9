//! Proxy-wasm shared data as the budget store: one key-value map per VM id, shared by every
//! Envoy worker thread, with compare-and-swap versions. Calls the host directly rather than
//! through the SDK's helpers, which panic (trapping the VM) on a status they do not expect.

use std::ptr::null_mut;

use proxy_wasm::types::Status;

use crate::budget::{Store, StoreError};

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> Status;

    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> Status;
}

/// The host's shared data.
pub struct HostStore;

impl Store for HostStore {
    fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        let mut data: *mut u8 = null_mut();
        let mut size: usize = 0;
        let mut cas: u32 = 0;
        // SAFETY: the pointers are valid for the call; the host allocates the value with the
        // module's own allocator (`proxy_on_memory_allocate`), so the module owns and frees it.
        let status = unsafe {
            proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas)
        };
        match status {
            Status::Ok if data.is_null() => Ok(Some((Vec::new(), cas))),
            // SAFETY: see above; `size` bytes were allocated for `data` by the module's allocator.
            Status::Ok => Ok(Some((
                unsafe { Vec::from_raw_parts(data, size, size) },
                cas,
            ))),
            Status::NotFound => Ok(None),
            other => Err(StoreError::Host(format!("get: {other:?}"))),
        }
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<bool, StoreError> {
        // SAFETY: the pointers are valid for the call; the host copies the bytes.
        let status = unsafe {
            proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
        };
        match status {
            Status::Ok => Ok(true),
            Status::CasMismatch => Ok(false),
            other => Err(StoreError::Host(format!("set: {other:?}"))),
        }
    }
}
