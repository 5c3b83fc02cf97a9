//! uprobe/uretprobe on libc `getaddrinfo`: when a process resolves a configured provider name,
//! the addresses it gets back go into `PROVIDERS` in the kernel, before its `connect()`.
//!
//! Only names in `PROVIDER_NAMES` are followed; everything else costs one string read and one
//! hash lookup. Nothing is reported: the data (a public name and its addresses) is the same for
//! every process, so learning it host-wide is harmless.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user, bpf_probe_read_user_str_bytes},
    macros::{map, uprobe, uretprobe},
    maps::HashMap,
    programs::{ProbeContext, RetProbeContext},
};
use node_probe_common::{mapped_v4, Addr, HostName, NAME_LEN};

use crate::probe::PROVIDERS;

/// Exact provider host names → provider index.
#[map]
static PROVIDER_NAMES: HashMap<HostName, u32> = HashMap::with_max_entries(1024, 0);

/// getaddrinfo calls in flight for provider names, by pid_tgid.
#[map]
static CALLS: HashMap<u64, Call> = HashMap::with_max_entries(4096, 0);

#[repr(C)]
#[derive(Clone, Copy)]
struct Call {
    /// `struct addrinfo **res`, as the caller passed it.
    res: u64,
    provider: u32,
    _pad: u32,
}

/// glibc's (and musl's) `struct addrinfo` on 64-bit Linux.
#[repr(C)]
#[derive(Clone, Copy)]
struct AddrInfo {
    ai_flags: i32,
    ai_family: i32,
    ai_socktype: i32,
    ai_protocol: i32,
    ai_addrlen: u32,
    ai_addr: *const u8,
    ai_canonname: *const u8,
    ai_next: *const AddrInfo,
}

const AF_INET: i32 = 2;
const AF_INET6: i32 = 10;
/// Bound on the result list walked (the verifier needs one; resolvers rarely return more).
const MAX_RESULTS: usize = 8;

#[uprobe]
pub fn getaddrinfo_enter(ctx: ProbeContext) -> u32 {
    let (Some(node), Some(res)) = (ctx.arg::<*const u8>(0), ctx.arg::<u64>(3)) else {
        return 0;
    };
    if node.is_null() {
        return 0;
    }
    let mut name: HostName = [0u8; NAME_LEN];
    // SAFETY: reads user memory through the helper, bounded by the buffer.
    if unsafe { bpf_probe_read_user_str_bytes(node, &mut name) }.is_err() {
        return 0;
    }
    lowercase(&mut name);
    // SAFETY: read-only lookup, value copied out.
    if let Some(provider) = unsafe { PROVIDER_NAMES.get(&name) } {
        let call = Call {
            res,
            provider: *provider,
            _pad: 0,
        };
        let _ = CALLS.insert(&bpf_get_current_pid_tgid(), &call, 0);
    }
    0
}

#[uretprobe]
pub fn getaddrinfo_exit(ctx: RetProbeContext) -> u32 {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: read-only lookup, value copied out before the removal.
    let call = match unsafe { CALLS.get(&key) } {
        Some(c) => *c,
        None => return 0,
    };
    let _ = CALLS.remove(&key);
    let rc: i32 = ctx.ret();
    if rc != 0 {
        return 0;
    }
    // SAFETY: user pointers are only ever read through bpf_probe_read_user.
    unsafe {
        let Ok(mut ai) = bpf_probe_read_user(call.res as *const *const AddrInfo) else {
            return 0;
        };
        for _ in 0..MAX_RESULTS {
            if ai.is_null() {
                break;
            }
            let Ok(entry) = bpf_probe_read_user(ai) else {
                break;
            };
            if let Some(addr) = address(&entry) {
                let _ = PROVIDERS.insert(&addr, &call.provider, 0);
            }
            ai = entry.ai_next;
        }
    }
    0
}

/// The address in one result, as a `PROVIDERS` key.
///
/// # Safety
/// `entry.ai_addr` is a user pointer; it is only read through the helper.
#[inline(always)]
unsafe fn address(entry: &AddrInfo) -> Option<Addr> {
    match entry.ai_family {
        // sockaddr_in: family (2), port (2), address (4).
        AF_INET => {
            let ip: [u8; 4] = unsafe { bpf_probe_read_user(entry.ai_addr.add(4).cast()) }.ok()?;
            Some(mapped_v4(ip))
        }
        // sockaddr_in6: family (2), port (2), flowinfo (4), address (16).
        AF_INET6 => {
            let ip: Addr = unsafe { bpf_probe_read_user(entry.ai_addr.add(8).cast()) }.ok()?;
            // A v4-mapped answer (AI_V4MAPPED) is stored as such already: the same key form.
            Some(ip)
        }
        _ => None,
    }
}

#[inline(always)]
fn lowercase(name: &mut HostName) {
    for b in name.iter_mut() {
        if b.is_ascii_uppercase() {
            *b += 32;
        }
    }
}
