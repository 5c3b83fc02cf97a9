//! The `env::proxy_*` imports (proxy-wasm ABI 0.2.1) and the few WASI calls the Rust SDK's
//! modules make. Anything else is defined as a trap, so a filter using an unemulated host call
//! fails loudly in tests.

use std::time::{SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Extern, Linker, Memory};

use crate::state::{
    buffer_range, decode_map, decode_path, encode_map, replace_header, splice_buffer, status,
    GrpcCall, HttpCall, LocalReply, Metric, State,
};

type Ctx<'a> = Caller<'a, State>;

fn memory(caller: &mut Ctx<'_>) -> Option<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Some(m),
        _ => None,
    }
}

fn read(caller: &mut Ctx<'_>, ptr: i32, len: i32) -> Option<Vec<u8>> {
    let mem = memory(caller)?;
    let (start, len) = (ptr as u32 as usize, len as u32 as usize);
    mem.data(&caller)
        .get(start..start.checked_add(len)?)
        .map(<[u8]>::to_vec)
}

fn read_str(caller: &mut Ctx<'_>, ptr: i32, len: i32) -> Option<String> {
    read(caller, ptr, len).map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn write(caller: &mut Ctx<'_>, at: i32, bytes: &[u8]) -> Option<()> {
    let mem = memory(caller)?;
    let at = at as u32 as usize;
    mem.data_mut(caller)
        .get_mut(at..at.checked_add(bytes.len())?)?
        .copy_from_slice(bytes);
    Some(())
}

fn write_u32(caller: &mut Ctx<'_>, at: i32, value: u32) -> Option<()> {
    write(caller, at, &value.to_le_bytes())
}

/// Copies `data` into guest memory allocated by the guest, and stores its address and size.
fn give(caller: &mut Ctx<'_>, data: &[u8], ret_ptr: i32, ret_size: i32) -> i32 {
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

    // gRPC.
    linker.func_wrap(
        "env",
        "proxy_grpc_call",
        |mut c: Ctx<'_>,
         uptr: i32,
         ulen: i32,
         sptr: i32,
         slen: i32,
         mptr: i32,
         mlen: i32,
         md_ptr: i32,
         md_len: i32,
         msg_ptr: i32,
         msg_len: i32,
         timeout: i32,
         ret_token: i32| {
            let cluster = read_str(&mut c, uptr, ulen).unwrap_or_default();
            let service = read_str(&mut c, sptr, slen).unwrap_or_default();
            let method = read_str(&mut c, mptr, mlen).unwrap_or_default();
            let initial_metadata = read(&mut c, md_ptr, md_len)
                .and_then(|b| decode_map(&b))
                .unwrap_or_default();
            let message = read(&mut c, msg_ptr, msg_len).unwrap_or_default();
            let state = c.data_mut();
            if state
                .clusters
                .as_ref()
                .is_some_and(|known| !known.contains(&cluster))
            {
                // What Envoy 1.40 answers for a gRPC call to a cluster it does not know
                // (measured; proxy-wasm 0.2.5 panics on BadArgument here but maps this).
                return status::PARSE_FAILURE;
            }
            state.next_token += 1;
            let token = state.next_token;
            let context = state.current;
            state.grpc_calls.push(GrpcCall {
                token,
                context,
                cluster,
                service,
                method,
                initial_metadata,
                message,
                timeout_ms: timeout as u32,
                finished: false,
            });
            write_u32(&mut c, ret_token, token).map_or(status::BAD_ARGUMENT, |_| status::OK)
        },
    )?;
    // Cancel and close end a pending call without callbacks, as in Envoy.
    for name in ["proxy_grpc_cancel", "proxy_grpc_close"] {
        linker.func_wrap("env", name, |mut c: Ctx<'_>, token: i32| {
            let call = c
                .data_mut()
                .grpc_calls
                .iter_mut()
                .find(|call| call.token == token as u32 && !call.finished);
            match call {
                Some(call) => {
                    call.finished = true;
                    status::OK
                }
                None => status::NOT_FOUND,
            }
        })?;
    }
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: Ctx<'_>,
         uptr: i32,
         ulen: i32,
         hptr: i32,
         hlen: i32,
         bptr: i32,
         blen: i32,
         tptr: i32,
         tlen: i32,
         timeout: i32,
         ret_token: i32| {
            let cluster = read_str(&mut c, uptr, ulen).unwrap_or_default();
            let headers = read(&mut c, hptr, hlen).and_then(|b| decode_map(&b));
            let trailers = read(&mut c, tptr, tlen).and_then(|b| decode_map(&b));
            let body = read(&mut c, bptr, blen).unwrap_or_default();
            let (Some(headers), Some(trailers)) = (headers, trailers) else {
                return status::BAD_ARGUMENT;
            };
            let state = c.data_mut();
            if state
                .clusters
                .as_ref()
                .is_some_and(|known| !known.contains(&cluster))
            {
                return status::BAD_ARGUMENT;
            }
            state.next_token += 1;
            let token = state.next_token;
            let context = state.current;
            state.http_calls.push(HttpCall {
                token,
                context,
                cluster,
                headers,
                body,
                trailers,
                timeout_ms: timeout as u32,
            });
            write_u32(&mut c, ret_token, token).map_or(status::BAD_ARGUMENT, |_| status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_status",
        |mut c: Ctx<'_>, ret_code: i32, ret_ptr: i32, ret_size: i32| {
            let (code, message) = c.data().grpc_status.clone();
            if write_u32(&mut c, ret_code, code).is_none() {
                return status::BAD_ARGUMENT;
            }
            give(&mut c, message.as_bytes(), ret_ptr, ret_size)
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

    define_queues(linker)?;
    define_wasi(linker)
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

fn system_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The WASI calls Rust's std makes in a proxy-wasm reactor.
fn define_wasi(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    const WASI: &str = "wasi_snapshot_preview1";
    linker.func_wrap(
        WASI,
        "fd_write",
        |mut c: Ctx<'_>, _fd: i32, iovs: i32, count: i32, ret: i32| {
            // Captured as log lines: a filter writing to stdout/stderr is a bug worth seeing.
            let mut written = Vec::new();
            for i in 0..count {
                let Some(iov) = read(&mut c, iovs + i * 8, 8) else {
                    return 28; // EINVAL
                };
                let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                written.extend(read(&mut c, ptr, len).unwrap_or_default());
            }
            let n = written.len() as u32;
            c.data_mut()
                .logs
                .push((-1, String::from_utf8_lossy(&written).into_owned()));
            write_u32(&mut c, ret, n).map_or(28, |_| 0)
        },
    )?;
    linker.func_wrap(WASI, "random_get", |mut c: Ctx<'_>, ptr: i32, len: i32| {
        // Deterministic bytes: tests must not depend on chance.
        let bytes: Vec<u8> = (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        write(&mut c, ptr, &bytes).map_or(28, |_| 0)
    })?;
    linker.func_wrap(
        WASI,
        "clock_time_get",
        |mut c: Ctx<'_>, _id: i32, _precision: i64, ret: i32| {
            let now = c.data().now_nanos.unwrap_or_else(system_nanos);
            write(&mut c, ret, &now.to_le_bytes()).map_or(28, |_| 0)
        },
    )?;
    linker.func_wrap(
        WASI,
        "environ_sizes_get",
        |mut c: Ctx<'_>, count: i32, size: i32| {
            write_u32(&mut c, count, 0)
                .and_then(|_| write_u32(&mut c, size, 0))
                .map_or(28, |_| 0)
        },
    )?;
    linker.func_wrap(WASI, "environ_get", |_: Ctx<'_>, _a: i32, _b: i32| 0)?;
    linker.func_wrap(
        WASI,
        "proc_exit",
        |_: Ctx<'_>, code: i32| -> wasmtime::Result<()> {
            Err(wasmtime::Error::msg(format!(
                "the module exited with code {code}"
            )))
        },
    )?;
    Ok(())
}
