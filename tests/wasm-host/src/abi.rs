//! The `env::proxy_*` imports (proxy-wasm ABI 0.2.1): logs, time, buffers, header maps,
//! properties, stream control and metrics here; calls out (`calls`), shared data and queues
//! (`shared`) and WASI (`wasi`) beside. Anything else is defined as a trap, so a filter using
//! an unemulated host call fails loudly in tests.

use wasmtime::{Caller, Extern, Linker, Memory};

use crate::state::{
    buffer_range, decode_map, decode_path, encode_map, replace_header, splice_buffer, status,
    LocalReply, Metric, State,
};
use crate::wasi::system_nanos;

pub(crate) type Ctx<'a> = Caller<'a, State>;

pub(crate) fn memory(caller: &mut Ctx<'_>) -> Option<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Some(m),
        _ => None,
    }
}

pub(crate) fn read(caller: &mut Ctx<'_>, ptr: i32, len: i32) -> Option<Vec<u8>> {
    let mem = memory(caller)?;
    let (start, len) = (ptr as u32 as usize, len as u32 as usize);
    mem.data(&caller)
        .get(start..start.checked_add(len)?)
        .map(<[u8]>::to_vec)
}

pub(crate) fn read_str(caller: &mut Ctx<'_>, ptr: i32, len: i32) -> Option<String> {
    read(caller, ptr, len).map(|b| String::from_utf8_lossy(&b).into_owned())
}

pub(crate) fn write(caller: &mut Ctx<'_>, at: i32, bytes: &[u8]) -> Option<()> {
    let mem = memory(caller)?;
    let at = at as u32 as usize;
    mem.data_mut(caller)
        .get_mut(at..at.checked_add(bytes.len())?)?
        .copy_from_slice(bytes);
    Some(())
}

pub(crate) fn write_u32(caller: &mut Ctx<'_>, at: i32, value: u32) -> Option<()> {
    write(caller, at, &value.to_le_bytes())
}

/// Copies `data` into guest memory allocated by the guest, and stores its address and size.
pub(crate) fn give(caller: &mut Ctx<'_>, data: &[u8], ret_ptr: i32, ret_size: i32) -> i32 {
    let alloc = caller
        .get_export("proxy_on_memory_allocate")
        .and_then(Extern::into_func)
        .and_then(|f| f.typed::<i32, i32>(&caller).ok());
    let Some(alloc) = alloc else {
        return status::BAD_ARGUMENT;
    };
    let Ok(ptr) = alloc.call(&mut *caller, data.len() as i32) else {
        return status::BAD_ARGUMENT;
    };
    let done = write(caller, ptr, data)
        .and_then(|_| write_u32(caller, ret_ptr, ptr as u32))
        .and_then(|_| write_u32(caller, ret_size, data.len() as u32));
    if done.is_some() {
        status::OK
    } else {
        status::BAD_ARGUMENT
    }
}

/// Buffer types: 0 request body, 1 response body, 5 gRPC receive buffer, 6 VM config, 7 plugin config.
fn buffer(state: &mut State, kind: i32) -> Option<&mut Vec<u8>> {
    match kind {
        0 => Some(&mut state.stream().request_buffer),
        1 => Some(&mut state.stream().response_buffer),
        5 => Some(&mut state.grpc_message),
        6 => Some(&mut state.vm_config),
        7 => Some(&mut state.plugin_config),
        _ => None,
    }
}

pub fn define(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut c: Ctx<'_>, level: i32, ptr: i32, len: i32| {
            let message = read_str(&mut c, ptr, len).unwrap_or_default();
            c.data_mut().logs.push((level, message));
            status::OK
        },
    )?;
    linker.func_wrap("env", "proxy_get_log_level", |mut c: Ctx<'_>, ret: i32| {
        let level = c.data().log_level;
        write_u32(&mut c, ret, level).map_or(status::BAD_ARGUMENT, |_| status::OK)
    })?;
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: Ctx<'_>, ret: i32| {
            let now = c.data().now_nanos.unwrap_or_else(system_nanos);
            write(&mut c, ret, &now.to_le_bytes()).map_or(status::BAD_ARGUMENT, |_| status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut c: Ctx<'_>, period: i32| {
            c.data_mut().tick_period_ms = period as u32;
            status::OK
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut c: Ctx<'_>, context: i32| {
            c.data_mut().current = context as u32;
            status::OK
        },
    )?;
    linker.func_wrap("env", "proxy_done", |_: Ctx<'_>| status::OK)?;

    // Buffers.
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: Ctx<'_>, kind: i32, start: i32, max: i32, ret_ptr: i32, ret_size: i32| {
            let Some(buf) = buffer(c.data_mut(), kind) else {
                return status::NOT_FOUND;
            };
            let data = buffer_range(buf, start as u32 as usize, max as u32 as usize).to_vec();
            if data.is_empty() {
                return status::NOT_FOUND;
            }
            give(&mut c, &data, ret_ptr, ret_size)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut c: Ctx<'_>, kind: i32, start: i32, size: i32, ptr: i32, len: i32| {
            let Some(data) = read(&mut c, ptr, len) else {
                return status::BAD_ARGUMENT;
            };
            let Some(buf) = buffer(c.data_mut(), kind) else {
                return status::NOT_FOUND;
            };
            splice_buffer(buf, start as u32 as usize, size as u32 as usize, &data)
                .map_or(status::BAD_ARGUMENT, |_| status::OK)
        },
    )?;

    // Header maps.
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: Ctx<'_>, kind: i32, ret_ptr: i32, ret_size: i32| {
            let Some(map) = c.data_mut().map(kind) else {
                return status::NOT_FOUND;
            };
            let bytes = encode_map(map);
            give(&mut c, &bytes, ret_ptr, ret_size)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut c: Ctx<'_>, kind: i32, ptr: i32, len: i32| {
            let Some(pairs) = read(&mut c, ptr, len).and_then(|b| decode_map(&b)) else {
                return status::BAD_ARGUMENT;
            };
            match c.data_mut().map(kind) {
                Some(map) => {
                    *map = pairs;
                    status::OK
                }
                None => status::NOT_FOUND,
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: Ctx<'_>, kind: i32, kptr: i32, klen: i32, ret_ptr: i32, ret_size: i32| {
            let Some(key) = read_str(&mut c, kptr, klen) else {
                return status::BAD_ARGUMENT;
            };
            let value = c.data_mut().map(kind).and_then(|m| {
                m.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(&key))
                    .map(|(_, v)| v.clone())
            });
            match value {
                Some(v) => give(&mut c, v.as_bytes(), ret_ptr, ret_size),
                None => status::NOT_FOUND,
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut c: Ctx<'_>, kind: i32, kptr: i32, klen: i32, vptr: i32, vlen: i32| {
            let (Some(key), Some(value)) =
                (read_str(&mut c, kptr, klen), read_str(&mut c, vptr, vlen))
            else {
                return status::BAD_ARGUMENT;
            };
            let Some(map) = c.data_mut().map(kind) else {
                return status::NOT_FOUND;
            };
            replace_header(map, &key, value);
            status::OK
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut c: Ctx<'_>, kind: i32, kptr: i32, klen: i32, vptr: i32, vlen: i32| {
            let (Some(key), Some(value)) =
                (read_str(&mut c, kptr, klen), read_str(&mut c, vptr, vlen))
            else {
                return status::BAD_ARGUMENT;
            };
            match c.data_mut().map(kind) {
                Some(map) => {
                    map.push((key.to_ascii_lowercase(), value));
                    status::OK
                }
                None => status::NOT_FOUND,
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: Ctx<'_>, kind: i32, kptr: i32, klen: i32| {
            let Some(key) = read_str(&mut c, kptr, klen) else {
                return status::BAD_ARGUMENT;
            };
            match c.data_mut().map(kind) {
                Some(map) => {
                    map.retain(|(k, _)| !k.eq_ignore_ascii_case(&key));
                    status::OK
                }
                None => status::NOT_FOUND,
            }
        },
    )?;

    // Properties.
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: Ctx<'_>, pptr: i32, plen: i32, ret_ptr: i32, ret_size: i32| {
            let path = read(&mut c, pptr, plen)
                .map(|b| decode_path(&b))
                .unwrap_or_default();
            match c.data().properties.get(&path).cloned() {
                Some(value) => give(&mut c, &value, ret_ptr, ret_size),
                None => status::NOT_FOUND,
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut c: Ctx<'_>, pptr: i32, plen: i32, vptr: i32, vlen: i32| {
            let (Some(path), Some(value)) = (read(&mut c, pptr, plen), read(&mut c, vptr, vlen))
            else {
                return status::BAD_ARGUMENT;
            };
            c.data_mut().properties.insert(decode_path(&path), value);
            status::OK
        },
    )?;

    // Streams and local replies.
    linker.func_wrap(
        "env",
        "proxy_continue_stream",
        |mut c: Ctx<'_>, kind: i32| {
            let stream = c.data_mut().stream();
            match kind {
                0 => {
                    stream.release_request();
                    stream.request_resumed = true;
                }
                1 => {
                    stream.release_response();
                    stream.response_resumed = true;
                }
                _ => return status::BAD_ARGUMENT,
            }
            status::OK
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_close_stream",
        |mut c: Ctx<'_>, kind: i32| match kind {
            // Resetting either direction of an HTTP stream resets the whole stream.
            0 | 1 => {
                c.data_mut().stream().closed = true;
                status::OK
            }
            _ => status::BAD_ARGUMENT,
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: Ctx<'_>,
         code: i32,
         dptr: i32,
         dlen: i32,
         bptr: i32,
         blen: i32,
         hptr: i32,
         hlen: i32,
         grpc: i32| {
            let details = read_str(&mut c, dptr, dlen).unwrap_or_default();
            let body = read(&mut c, bptr, blen).unwrap_or_default();
            let headers = read(&mut c, hptr, hlen)
                .and_then(|b| decode_map(&b))
                .unwrap_or_default();
            c.data_mut().stream().local_reply = Some(LocalReply {
                status: code as u32,
                details,
                headers,
                body,
                grpc_status: (grpc >= 0).then_some(grpc),
            });
            status::OK
        },
    )?;

    // Metrics.
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: Ctx<'_>, kind: i32, nptr: i32, nlen: i32, ret_id: i32| {
            let name = read_str(&mut c, nptr, nlen).unwrap_or_default();
            let metrics = &mut c.data_mut().metrics;
            let id = match metrics.iter().position(|m| m.name == name) {
                Some(i) => i,
                None => {
                    metrics.push(Metric {
                        name,
                        kind,
                        value: 0,
                    });
                    metrics.len() - 1
                }
            };
            write_u32(&mut c, ret_id, id as u32).map_or(status::BAD_ARGUMENT, |_| status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |mut c: Ctx<'_>, id: i32, offset: i64| match c
            .data_mut()
            .metrics
            .get_mut(id as u32 as usize)
        {
            Some(m) => {
                m.value = m.value.wrapping_add(offset);
                status::OK
            }
            None => status::NOT_FOUND,
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |mut c: Ctx<'_>, id: i32, value: i64| match c.data_mut().metrics.get_mut(id as u32 as usize)
        {
            Some(m) => {
                m.value = value;
                status::OK
            }
            None => status::NOT_FOUND,
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut c: Ctx<'_>, id: i32, ret: i32| {
            let Some(value) = c.data().metrics.get(id as u32 as usize).map(|m| m.value) else {
                return status::NOT_FOUND;
            };
            write(&mut c, ret, &value.to_le_bytes()).map_or(status::BAD_ARGUMENT, |_| status::OK)
        },
    )?;

    crate::calls::define(linker)?;
    crate::shared::define(linker)?;
    crate::wasi::define(linker)
}
