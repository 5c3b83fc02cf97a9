//! Shared data (key/value with CAS versions) and shared queues, kept in memory: the host runs
//! one VM, so these are only shared between its contexts.

use wasmtime::Linker;

use crate::abi::{give, read, read_str, write_u32, Ctx};
use crate::state::{status, State};

pub fn define(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    // Shared data (one VM here, so a map with CAS versions).
    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: Ctx<'_>, kptr: i32, klen: i32, ret_ptr: i32, ret_size: i32, ret_cas: i32| {
            let key = read_str(&mut c, kptr, klen).unwrap_or_default();
            let Some((value, cas)) = c.data().shared_data.get(&key).cloned() else {
                return status::NOT_FOUND;
            };
            if write_u32(&mut c, ret_cas, cas).is_none() {
                return status::BAD_ARGUMENT;
            }
            give(&mut c, &value, ret_ptr, ret_size)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: Ctx<'_>, kptr: i32, klen: i32, vptr: i32, vlen: i32, cas: i32| {
            let (Some(key), Some(value)) = (read_str(&mut c, kptr, klen), read(&mut c, vptr, vlen))
            else {
                return status::BAD_ARGUMENT;
            };
            let entry = c
                .data_mut()
                .shared_data
                .entry(key)
                .or_insert((Vec::new(), 0));
            if cas != 0 && cas as u32 != entry.1 {
                return status::CAS_MISMATCH;
            }
            // CAS 0 means "no version" to the SDK, so versions skip it when they wrap.
            *entry = (value, entry.1.wrapping_add(1).max(1));
            status::OK
        },
    )?;
    define_queues(linker)
}

/// Shared queues, in memory: one VM, so register and resolve name the same queues.
fn define_queues(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    fn id_of(state: &State, name: &str) -> Option<u32> {
        let i = state.queues.iter().position(|(n, _)| n == name)?;
        Some(i as u32 + 1)
    }
    linker.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut c: Ctx<'_>, nptr: i32, nlen: i32, ret: i32| {
            let Some(name) = read_str(&mut c, nptr, nlen) else {
                return status::BAD_ARGUMENT;
            };
            let state = c.data_mut();
            let id = id_of(state, &name).unwrap_or_else(|| {
                state.queues.push((name, Default::default()));
                state.queues.len() as u32
            });
            write_u32(&mut c, ret, id).map_or(status::BAD_ARGUMENT, |_| status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |mut c: Ctx<'_>, _vm_ptr: i32, _vm_len: i32, nptr: i32, nlen: i32, ret: i32| {
            let name = read_str(&mut c, nptr, nlen).unwrap_or_default();
            match id_of(c.data(), &name) {
                Some(id) => write_u32(&mut c, ret, id).map_or(status::BAD_ARGUMENT, |_| status::OK),
                None => status::NOT_FOUND,
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |mut c: Ctx<'_>, id: i32, vptr: i32, vlen: i32| {
            let Some(value) = read(&mut c, vptr, vlen) else {
                return status::BAD_ARGUMENT;
            };
            let slot = (id as u32 as usize).wrapping_sub(1);
            match c.data_mut().queues.get_mut(slot) {
                Some((_, queue)) => {
                    queue.push_back(value);
                    status::OK
                }
                None => status::NOT_FOUND,
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |mut c: Ctx<'_>, id: i32, ret_ptr: i32, ret_size: i32| {
            let slot = (id as u32 as usize).wrapping_sub(1);
            let Some((_, queue)) = c.data_mut().queues.get_mut(slot) else {
                return status::NOT_FOUND;
            };
            match queue.pop_front() {
                Some(value) => give(&mut c, &value, ret_ptr, ret_size),
                None => status::EMPTY,
            }
        },
    )?;
    Ok(())
}
