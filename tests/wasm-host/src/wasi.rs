//! The few WASI calls Rust's std makes in a proxy-wasm reactor: output is captured as log
//! lines, randomness is deterministic, the clock is the host's (or the test's fixed one).

use std::time::{SystemTime, UNIX_EPOCH};

use wasmtime::Linker;

use crate::abi::{read, write, write_u32, Ctx};
use crate::state::State;

pub fn define(linker: &mut Linker<State>) -> wasmtime::Result<()> {
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

pub(crate) fn system_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
