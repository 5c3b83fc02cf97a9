//! Calls out of the filter: unary gRPC calls (recorded, answered by the test through
//! `Vm::grpc_reply`), their cancellation and status, and HTTP calls (recorded only).

use wasmtime::Linker;

use crate::abi::{give, read, read_str, write_u32, Ctx};
use crate::state::{decode_map, status, GrpcCall, HttpCall, State};

pub fn define(linker: &mut Linker<State>) -> wasmtime::Result<()> {
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
    Ok(())
}
