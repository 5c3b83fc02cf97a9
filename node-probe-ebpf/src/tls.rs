//! uprobes on OpenSSL `SSL_write` / `SSL_write_ex`: the first line of each HTTP/1 request an
//! application sends, for the alert's method and path.
//!
//! Filtered in the kernel to processes under the watched cgroup (`ROOT`), sidecars excluded,
//! so the hook never reports host-wide. Only "METHOD /path" is copied into the event: query
//! strings (`?key=`) and headers (`Authorization`) are never copied out of the application.

use aya_ebpf::{
    helpers::{
        bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_current_comm,
        bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_probe_read_user_buf,
    },
    macros::{map, uprobe},
    maps::Array,
    programs::ProbeContext,
};
use node_probe_common::{TlsEvent, ROOT_ID, ROOT_LEVEL, TLS_LINE_LEN, TLS_QUERY_DROPPED};

use crate::probe::{count_lost, EVENTS, SIDECARS};

/// Level and id of the watched root cgroup.
#[map]
static ROOT: Array<u64> = Array::with_max_entries(2, 0);

#[uprobe]
pub fn ssl_write(ctx: ProbeContext) -> u32 {
    on_write(&ctx);
    0
}

#[inline(always)]
fn on_write(ctx: &ProbeContext) -> Option<()> {
    let level = *ROOT.get(ROOT_LEVEL)?;
    let root = *ROOT.get(ROOT_ID)?;
    // SAFETY: helper valid in uprobes.
    if root == 0 || unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) } != root {
        return None;
    }
    // SAFETY: helper valid in uprobes.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    // SAFETY: read-only lookup.
    if unsafe { SIDECARS.get(&cgroup_id) }.is_some() {
        return None;
    }
    let buf: *const u8 = ctx.arg(1)?;
    let num: u64 = ctx.arg(2)?;
    if buf.is_null() || num < 16 {
        return None;
    }
    let mut slot = match EVENTS.reserve::<TlsEvent>(0) {
        Some(s) => s,
        None => {
            count_lost();
            return None;
        }
    };
    let ev = slot.as_mut_ptr();
    let want = if num < TLS_LINE_LEN as u64 {
        num as usize
    } else {
        TLS_LINE_LEN
    };
    // SAFETY: `ev` points into the reserved record, written field by field before submit;
    // user memory is only read through the helper, into bounded slices of it.
    unsafe {
        let line = &mut (*ev).line;
        *line = [0u8; TLS_LINE_LEN];
        let read = match line.get_mut(..want) {
            Some(dst) => bpf_probe_read_user_buf(buf, dst).is_ok(),
            None => false,
        };
        if !read || !is_request(line) {
            slot.discard(0);
            return None;
        }
        let (cut, query) = cut_point(line);
        // Copy again only the method and path: what followed never sits in the record.
        *line = [0u8; TLS_LINE_LEN];
        // `get_mut`, not indexing: a panic path would not pass the verifier.
        let copied = match line.get_mut(..cut) {
            Some(dst) if cut > 0 => bpf_probe_read_user_buf(buf, dst).is_ok(),
            _ => false,
        };
        if !copied {
            slot.discard(0);
            return None;
        }
        (*ev).len = cut as u16;
        (*ev).flags = if query { TLS_QUERY_DROPPED } else { 0 };
        (*ev).cgroup_id = cgroup_id;
        let pid_tgid = bpf_get_current_pid_tgid();
        (*ev).pid = pid_tgid as u32;
        (*ev).tgid = (pid_tgid >> 32) as u32;
        (*ev).uid = bpf_get_current_uid_gid() as u32;
        (*ev).comm = bpf_get_current_comm().unwrap_or([0; 16]);
    }
    slot.submit(0);
    Some(())
}

/// Starts like an HTTP/1 request line.
#[inline(always)]
fn is_request(b: &[u8; TLS_LINE_LEN]) -> bool {
    (b[0] == b'P' && b[1] == b'O' && b[2] == b'S' && b[3] == b'T' && b[4] == b' ')
        || (b[0] == b'G' && b[1] == b'E' && b[2] == b'T' && b[3] == b' ')
        || (b[0] == b'P' && b[1] == b'U' && b[2] == b'T' && b[3] == b' ')
        || (b[0] == b'P' && b[1] == b'A' && b[2] == b'T' && b[3] == b'C' && b[4] == b'H')
        || (b[0] == b'D' && b[1] == b'E' && b[2] == b'L' && b[3] == b'E' && b[4] == b'T')
}

/// Where "METHOD /path" ends: at the query's `?`, the space before the HTTP version, or the
/// end of the line. Also says whether a query string was cut off.
#[inline(always)]
fn cut_point(b: &[u8; TLS_LINE_LEN]) -> (usize, bool) {
    let mut spaces = 0u32;
    for (i, &c) in b.iter().enumerate() {
        if c == b'?' {
            return (i, true);
        }
        if c == b'\r' || c == b'\n' || c == 0 {
            return (i, false);
        }
        if c == b' ' {
            spaces += 1;
            if spaces == 2 {
                return (i, false);
            }
        }
    }
    (TLS_LINE_LEN, false)
}
