//! uprobes on OpenSSL `SSL_write` / `SSL_write_ex`: the first line of each HTTP/1 request an
//! application sends, for the alert's method and path.
//!
//! Filtered in the kernel to processes under the watched cgroup (`ROOT`), sidecars excluded,
//! so the hook never reports host-wide. Only a request line is kept, cut at the first CR/LF,
//! with the query string overwritten by `*`: headers and `?key=` credentials stay in the kernel.

use aya_ebpf::{
    helpers::{
        bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_current_comm,
        bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_probe_read_user_buf,
    },
    macros::{map, uprobe},
    maps::Array,
    programs::ProbeContext,
};
use node_probe_common::{TlsEvent, ROOT_ID, ROOT_LEVEL, TLS_LINE_LEN};

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
    // SAFETY: `ev` points into the reserved record, written field by field before submit.
    unsafe {
        let line = &mut (*ev).line;
        let want = if num < TLS_LINE_LEN as u64 {
            num as usize
        } else {
            TLS_LINE_LEN
        };
        *line = [0u8; TLS_LINE_LEN];
        if bpf_probe_read_user_buf(buf, &mut line[..want]).is_err() || !is_request(line) {
            slot.discard(0);
            return None;
        }
        let len = mask(line);
        (*ev).len = len as u32;
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

/// Cuts at the first CR/LF and stars the query string; returns the kept length.
#[inline(always)]
fn mask(b: &mut [u8; TLS_LINE_LEN]) -> usize {
    let mut in_query = false;
    let mut spaces = 0u32;
    let mut end = TLS_LINE_LEN;
    for (i, c) in b.iter_mut().enumerate() {
        if end != TLS_LINE_LEN || *c == b'\r' || *c == b'\n' || *c == 0 {
            if end == TLS_LINE_LEN {
                end = i;
            }
            *c = 0;
            continue;
        }
        if *c == b' ' {
            spaces += 1;
            in_query = false;
        } else if *c == b'?' && spaces == 1 {
            in_query = true;
        } else if in_query {
            *c = b'*';
        }
    }
    end
}
