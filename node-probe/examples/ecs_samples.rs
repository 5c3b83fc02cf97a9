//! Prints one ECS JSON line per kind of probe event, built by the probe's own code path (kernel
//! record bytes -> `Connection::decode` / `TlsRequest::decode` -> `alert::ecs` / `ecs_tls`).
//! The detection-rule tests (tests/e2e/test_rules.py) evaluate the rules over these lines.

use std::{path::Path, time::SystemTime};

use node_probe_common::{mapped_v4, ConnectEvent, Reason, TlsEvent, Verdict};
use sluice_node_probe::alert::{ecs, ecs_tls, Connection, TlsRequest};

const POD: &str = "/sys/fs/cgroup/kubepods/pod1b2c3d4e-0000-4000-8000-aaaaaaaaaaaa/";
const CONTAINER: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Views a plain-data kernel record as the bytes the ring buffer hands to userspace.
fn bytes_of<T>(value: &T) -> &[u8] {
    // SAFETY: `T` is a `#[repr(C)]` plain-data record; reading its bytes is always valid.
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
}

fn main() {
    // A table reads better than rustfmt's one field per line.
    #[rustfmt::skip]
    let cases = [
        // (verdict, reason, blocked, uid, pid, comm, nat destination port)
        (Verdict::Meshed, Reason::RedirectedToSidecar, false, 1000, 4101, "python3", 15001),
        (Verdict::Meshed, Reason::SidecarCgroup, false, 1337, 4102, "envoy", 0),
        (Verdict::Bypass, Reason::NoSidecarInPod, false, 1000, 4103, "curl", 443),
        (Verdict::Bypass, Reason::DirectEgress, true, 1337, 4104, "python3", 0),
        (Verdict::Unknown, Reason::RewrittenElsewhere, false, 1000, 4105, "node", 8443),
    ];
    let now = SystemTime::now();
    let cgroup = Path::new(POD).join(CONTAINER);
    for (verdict, reason, blocked, uid, pid, comm, nat_dport) in cases {
        let mut raw = ConnectEvent::zeroed();
        raw.tgid = pid;
        raw.pid = pid;
        raw.uid = uid;
        raw.gid = uid;
        raw.cgroup_id = 7;
        raw.sock_cookie = u64::from(pid);
        raw.daddr = mapped_v4([198, 18, 0, 10]);
        raw.dport = 443;
        raw.family = 4;
        raw.verdict = verdict as u8;
        raw.reason = reason as u8;
        raw.blocked = u8::from(blocked);
        raw.comm[..comm.len()].copy_from_slice(comm.as_bytes());
        if nat_dport != 0 {
            raw.nat_daddr = mapped_v4([127, 0, 0, 1]);
            raw.nat_dport = nat_dport;
        }
        let conn = Connection::decode(bytes_of(&raw)).expect("a well-formed record decodes");
        println!("{}", ecs(&conn, "openai", Some(&cgroup), now));
    }

    let mut tls = TlsEvent {
        cgroup_id: 7,
        pid: 4106,
        tgid: 4106,
        uid: 1000,
        len: 0,
        flags: 0,
        comm: [0; 16],
        line: [0; 128],
    };
    let line = b"POST /v1/chat/completions";
    tls.line[..line.len()].copy_from_slice(line);
    tls.len = line.len() as u16;
    tls.comm[..7].copy_from_slice(b"python3");
    let req = TlsRequest::decode(bytes_of(&tls)).expect("a request line decodes");
    println!("{}", ecs_tls(&req, Some(&cgroup), now));
}
