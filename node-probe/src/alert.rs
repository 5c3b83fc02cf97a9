//! Turns a kernel event into one Elastic Common Schema (ECS) JSON line.
//!
//! Bypass and unknown connections are `event.kind: alert`; meshed ones are plain `event`s so a
//! SIEM can count both. Fields outside ECS live under `sluice.*`.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use node_probe_common::{
    is_mapped_v4, Addr, ConnectEvent, Reason, TlsEvent, Verdict, TLS_QUERY_DROPPED,
};
use serde_json::{json, Value};
use sluice_text::nul_terminated;

use crate::cgroups::workload;

pub const ECS_VERSION: &str = "8.11.0";

/// An event decoded from the kernel's bytes, with its verdict checked.
#[derive(Debug, Clone)]
pub struct Connection {
    pub raw: ConnectEvent,
    pub verdict: Verdict,
    pub reason: Reason,
}

impl Connection {
    /// Decodes a ring-buffer record; `None` for a record of the wrong size or unknown codes.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != size_of::<ConnectEvent>() {
            return None;
        }
        // SAFETY: the length matches and `ConnectEvent` is plain data valid for any bytes;
        // `read_unaligned` because ring-buffer records are only 8-byte aligned by convention.
        let raw: ConnectEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        Some(Self {
            verdict: Verdict::from_u8(raw.verdict)?,
            reason: Reason::from_u8(raw.reason)?,
            raw,
        })
    }

    pub fn destination(&self) -> IpAddr {
        to_ip(&self.raw.daddr)
    }
}

/// A request line taken from OpenSSL, already masked by the kernel.
#[derive(Debug, Clone)]
pub struct TlsRequest {
    pub raw: TlsEvent,
    pub method: String,
    pub path: String,
    /// The request had a query string (left in the application by the kernel).
    pub query_dropped: bool,
}

impl TlsRequest {
    /// Decodes a ring-buffer record; `None` for another size or a line that does not parse.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != size_of::<TlsEvent>() {
            return None;
        }
        // SAFETY: as in `Connection::decode`: right length, plain data.
        let raw: TlsEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let len = (raw.len as usize).min(raw.line.len());
        let line = std::str::from_utf8(&raw.line[..len]).ok()?;
        let (method, path) = line.split_once(' ')?;
        Some(Self {
            method: method.to_owned(),
            path: path.to_owned(),
            query_dropped: raw.flags & TLS_QUERY_DROPPED != 0,
            raw,
        })
    }
}

/// ECS document for a TLS request line.
pub fn ecs_tls(req: &TlsRequest, cgroup: Option<&Path>, now: SystemTime) -> Value {
    let ev = &req.raw;
    let comm = nul_terminated(&ev.comm);
    let w = cgroup.map(workload).unwrap_or_default();
    let mut doc = json!({
        "@timestamp": rfc3339(now),
        "ecs": {"version": ECS_VERSION},
        "message": format!("{comm} sent {} {} over TLS", req.method, req.path),
        "event": {
            "kind": "event",
            "category": ["network", "web"],
            "type": ["info"],
            "action": "tls-request",
            "module": "sluice",
            "dataset": "sluice.node_probe",
        },
        "process": {"pid": ev.tgid, "thread": {"id": ev.pid}, "name": comm},
        "user": {"id": ev.uid.to_string()},
        "http": {"request": {"method": req.method}},
        "url": {"path": req.path},
        "sluice": {"cgroup": {"id": ev.cgroup_id}},
    });
    if req.query_dropped {
        doc["sluice"]["tls"] = json!({"query_dropped": true});
    }
    if let Some(path) = cgroup {
        doc["sluice"]["cgroup"]["path"] = json!(path.display().to_string());
    }
    if let Some(id) = w.container_id {
        doc["container"] = json!({"id": id});
    }
    if let Some(uid) = w.pod_uid {
        doc["orchestrator"] = json!({"type": "kubernetes", "resource": {"type": "pod", "id": uid}});
    }
    doc
}

pub fn to_ip(a: &Addr) -> IpAddr {
    if is_mapped_v4(a) {
        IpAddr::V4(Ipv4Addr::new(a[12], a[13], a[14], a[15]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*a))
    }
}

pub fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Meshed => "meshed",
        Verdict::Bypass => "bypass",
        Verdict::Unknown => "unknown",
    }
}

pub fn reason_name(r: Reason) -> &'static str {
    match r {
        Reason::SidecarCgroup => "sidecar-cgroup",
        Reason::MeshDestination => "mesh-destination",
        Reason::RedirectedToSidecar => "redirected-to-sidecar",
        Reason::DirectEgress => "direct-egress",
        Reason::NoSidecarInPod => "no-sidecar-in-pod",
        Reason::RewrittenElsewhere => "rewritten-elsewhere",
    }
}

/// Builds the ECS document. `cgroup` is the cgroup's path when the scanner knows it.
pub fn ecs(conn: &Connection, provider: &str, cgroup: Option<&Path>, now: SystemTime) -> Value {
    let ev = &conn.raw;
    let dest = conn.destination();
    let verdict = verdict_name(conn.verdict);
    let comm = nul_terminated(&ev.comm);
    let alert = conn.verdict != Verdict::Meshed;
    let blocked = ev.blocked != 0;
    let w = cgroup.map(workload).unwrap_or_default();

    let message = match conn.verdict {
        Verdict::Meshed => format!("{comm} reached {provider} ({dest}) through the mesh"),
        Verdict::Bypass if blocked => {
            format!("blocked {comm} connecting to {provider} ({dest}) around the mesh")
        }
        Verdict::Bypass => format!("{comm} connected to {provider} ({dest}) around the mesh"),
        Verdict::Unknown => format!("{comm} connected to {provider} ({dest}) via an unknown path"),
    };
    let mut doc = json!({
        "@timestamp": rfc3339(now),
        "ecs": {"version": ECS_VERSION},
        "message": message,
        "event": {
            "kind": if alert { "alert" } else { "event" },
            "category": ["network"],
            "type": if blocked { json!(["connection", "denied"]) } else { json!(["connection", "start"]) },
            "action": format!("mesh-{verdict}"),
            "outcome": if blocked { "failure" } else { "success" },
            "module": "sluice",
            "dataset": "sluice.node_probe",
        },
        "process": {"pid": ev.tgid, "thread": {"id": ev.pid}, "name": comm},
        "user": {"id": ev.uid.to_string()},
        "group": {"id": ev.gid.to_string()},
        "destination": {"ip": dest.to_string(), "port": ev.dport},
        "network": {
            "transport": "tcp",
            "type": if dest.is_ipv4() { "ipv4" } else { "ipv6" },
            "direction": "egress",
        },
        "sluice": {
            "verdict": verdict,
            "reason": reason_name(conn.reason),
            "provider": provider,
            "enforced": blocked,
            "cgroup": {"id": ev.cgroup_id},
            "netns_cookie": ev.netns_cookie,
            "socket_cookie": ev.sock_cookie,
        },
    });
    if let Some(path) = cgroup {
        doc["sluice"]["cgroup"]["path"] = json!(path.display().to_string());
    }
    if ev.nat_dport != 0 {
        doc["sluice"]["nat_destination"] =
            json!({"ip": to_ip(&ev.nat_daddr).to_string(), "port": ev.nat_dport});
    }
    if let Some(id) = w.container_id {
        doc["container"] = json!({"id": id});
    }
    if let Some(uid) = w.pod_uid {
        doc["orchestrator"] = json!({"type": "kubernetes", "resource": {"type": "pod", "id": uid}});
    }
    doc
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use node_probe_common::mapped_v4;

    use super::*;

    fn event(verdict: Verdict, reason: Reason, blocked: bool) -> Connection {
        let mut raw = ConnectEvent::zeroed();
        raw.tgid = 42;
        raw.pid = 43;
        raw.uid = 1337;
        raw.daddr = mapped_v4([198, 18, 0, 10]);
        raw.dport = 443;
        raw.verdict = verdict as u8;
        raw.reason = reason as u8;
        raw.blocked = blocked as u8;
        raw.comm[..4].copy_from_slice(b"curl");
        Connection {
            raw,
            verdict,
            reason,
        }
    }

    #[test]
    fn timestamps_are_utc_rfc3339() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_477_053_123);
        assert_eq!(rfc3339(t), "2026-11-23T23:37:33.123Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn decode_checks_size_and_codes() {
        let e = event(Verdict::Bypass, Reason::DirectEgress, false);
        // SAFETY: viewing plain data as bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&e.raw as *const ConnectEvent).cast::<u8>(),
                size_of::<ConnectEvent>(),
            )
        };
        let back = Connection::decode(bytes).unwrap();
        assert_eq!(back.verdict, Verdict::Bypass);
        assert_eq!(back.destination().to_string(), "198.18.0.10");
        assert!(Connection::decode(&bytes[1..]).is_none());
        let mut bad = bytes.to_vec();
        let off = std::mem::offset_of!(ConnectEvent, verdict);
        bad[off] = 9;
        assert!(Connection::decode(&bad).is_none());
    }

    #[test]
    fn ecs_document_for_a_blocked_bypass() {
        let path = Path::new("/sys/fs/cgroup/kubepods/pod1b2c3d4e-0000-4000-8000-aaaaaaaaaaaa/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
        let doc = ecs(
            &event(Verdict::Bypass, Reason::DirectEgress, true),
            "openai",
            Some(path),
            UNIX_EPOCH,
        );
        assert_eq!(doc["event"]["kind"], "alert");
        assert_eq!(doc["event"]["outcome"], "failure");
        assert_eq!(doc["sluice"]["verdict"], "bypass");
        assert_eq!(doc["sluice"]["enforced"], true);
        assert_eq!(doc["user"]["id"], "1337");
        assert_eq!(doc["process"]["name"], "curl");
        assert_eq!(doc["destination"]["port"], 443);
        assert_eq!(doc["network"]["type"], "ipv4");
        assert_eq!(
            doc["orchestrator"]["resource"]["id"],
            "1b2c3d4e-0000-4000-8000-aaaaaaaaaaaa"
        );
        assert!(doc["container"]["id"].is_string());
    }

    #[test]
    fn tls_request_lines_decode() {
        let mut raw = TlsEvent {
            cgroup_id: 7,
            pid: 1,
            tgid: 1,
            uid: 0,
            len: 0,
            flags: TLS_QUERY_DROPPED,
            comm: [0; 16],
            line: [0; 128],
        };
        let line = b"POST /v1beta/models/gemini-pro:generateContent";
        raw.line[..line.len()].copy_from_slice(line);
        raw.len = line.len() as u16;
        // SAFETY: viewing plain data as bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&raw as *const TlsEvent).cast::<u8>(),
                size_of::<TlsEvent>(),
            )
        };
        let req = TlsRequest::decode(bytes).unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/v1beta/models/gemini-pro:generateContent");
        assert!(req.query_dropped);
        let doc = ecs_tls(&req, None, UNIX_EPOCH);
        assert_eq!(doc["http"]["request"]["method"], "POST");
        assert_eq!(doc["event"]["action"], "tls-request");
        assert_eq!(doc["sluice"]["tls"]["query_dropped"], true);
        assert!(Connection::decode(bytes).is_none(), "told apart by size");
    }

    #[test]
    fn meshed_is_an_event_not_an_alert() {
        let doc = ecs(
            &event(Verdict::Meshed, Reason::SidecarCgroup, false),
            "anthropic",
            None,
            UNIX_EPOCH,
        );
        assert_eq!(doc["event"]["kind"], "event");
        assert_eq!(doc["event"]["action"], "mesh-meshed");
        assert!(doc.get("container").is_none());
    }
}
