//! The programs and maps. Userspace fills `PROVIDERS`, `SIDECARS`, `POD_STATE`, `MESH_DESTS`
//! and `SETTINGS`; the kernel reports on `EVENTS` and counts what it could not report in `LOST`.
//!
//! A connection is only looked at when its destination is a provider address. It is decided
//! at `connect()` when that is certain (sidecar cgroup, mesh destination, pod known to have no
//! sidecar); otherwise it is parked in `PENDING` under its socket cookie and decided by
//! `egress` from the first packet after NAT, which is where Istio's capture shows.

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_uid_gid, bpf_ktime_get_ns,
        generated::{bpf_get_netns_cookie, bpf_get_socket_cookie},
    },
    macros::{cgroup_skb, cgroup_sock_addr, map},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::{SkBuffContext, SockAddrContext},
    EbpfContext,
};
use node_probe_common::{
    mapped_v4, Addr, AddrPort, ConnectEvent, Reason, Verdict, FLAG_ENFORCE, POD_NO_SIDECAR,
    SETTING_FLAGS,
};

/// `connect()` goes ahead.
const ALLOW: i32 = 1;
/// `connect()` fails with EPERM (sock_addr) or the packet is dropped (skb).
const DENY: i32 = 0;

const AF_INET6: u8 = 6;
const AF_INET: u8 = 4;
const SOCK_STREAM: u32 = 1;
const IPPROTO_TCP: u8 = 6;

/// Provider address → provider index (userspace's numbering).
#[map]
pub(crate) static PROVIDERS: HashMap<Addr, u32> = HashMap::with_max_entries(8192, 0);

/// Cgroup ids of sidecar containers (Istio's `istio-proxy`).
#[map]
pub(crate) static SIDECARS: HashMap<u64, u8> = HashMap::with_max_entries(4096, 0);

/// Cgroup id → whether its pod has a sidecar (`POD_HAS_SIDECAR` / `POD_NO_SIDECAR`).
/// Absent means "not scanned yet": then only the egress program decides.
#[map]
static POD_STATE: HashMap<u64, u8> = HashMap::with_max_entries(65536, 0);

/// Destinations inside the mesh: the sidecar's capture listener, egress gateways.
#[map]
static MESH_DESTS: HashMap<AddrPort, u8> = HashMap::with_max_entries(1024, 0);

#[map]
static SETTINGS: Array<u32> = Array::with_max_entries(1, 0);

/// Connections waiting for their first packet, by socket cookie. Blocked ones stay so that
/// retransmitted SYNs are dropped too; LRU eviction bounds the rest.
#[map]
static PENDING: LruHashMap<u64, ConnectEvent> = LruHashMap::with_max_entries(16384, 0);

#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

/// Events the ring buffer had no room for.
#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    // SAFETY: the verifier only accepts exact 4-byte loads of these context fields.
    let (ip, port, ty) = unsafe {
        (
            core::ptr::read_volatile(&(*sa).user_ip4),
            core::ptr::read_volatile(&(*sa).user_port),
            core::ptr::read_volatile(&(*sa).type_),
        )
    };
    on_connect(&ctx, mapped_v4(ip.to_ne_bytes()), port, ty)
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    // SAFETY: as in `connect4`, one 4-byte load per field.
    let (w, port, ty) = unsafe {
        (
            [
                core::ptr::read_volatile(&(*sa).user_ip6[0]),
                core::ptr::read_volatile(&(*sa).user_ip6[1]),
                core::ptr::read_volatile(&(*sa).user_ip6[2]),
                core::ptr::read_volatile(&(*sa).user_ip6[3]),
            ],
            core::ptr::read_volatile(&(*sa).user_port),
            core::ptr::read_volatile(&(*sa).type_),
        )
    };
    let mut addr = [0u8; 16];
    addr[0..4].copy_from_slice(&w[0].to_ne_bytes());
    addr[4..8].copy_from_slice(&w[1].to_ne_bytes());
    addr[8..12].copy_from_slice(&w[2].to_ne_bytes());
    addr[12..16].copy_from_slice(&w[3].to_ne_bytes());
    // A dual-stack socket reaching an IPv4 peer shows up here as ::ffff:a.b.c.d; the map
    // keys already use that form, so IPv4 and IPv6 callers meet the same entries.
    on_connect(&ctx, addr, port, ty)
}

#[inline(always)]
fn on_connect(ctx: &SockAddrContext, daddr: Addr, port: u32, ty: u32) -> i32 {
    if ty != SOCK_STREAM {
        return ALLOW;
    }
    // SAFETY: read-only lookup; the value is copied out at once.
    let provider = match unsafe { PROVIDERS.get(&daddr) } {
        Some(p) => *p,
        None => return ALLOW,
    };
    let dport = u16::from_be(port as u16);

    let mut ev = ConnectEvent::zeroed();
    // SAFETY: helpers valid in cgroup sock_addr programs.
    unsafe {
        ev.ts_ns = bpf_ktime_get_ns();
        ev.cgroup_id = bpf_get_current_cgroup_id();
        ev.netns_cookie = bpf_get_netns_cookie(ctx.as_ptr());
        ev.sock_cookie = bpf_get_socket_cookie(ctx.as_ptr());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    ev.pid = pid_tgid as u32;
    ev.tgid = (pid_tgid >> 32) as u32;
    let uid_gid = bpf_get_current_uid_gid();
    ev.uid = uid_gid as u32;
    ev.gid = (uid_gid >> 32) as u32;
    if let Ok(comm) = bpf_get_current_comm() {
        ev.comm = comm;
    }
    ev.provider = provider;
    ev.daddr = daddr;
    ev.dport = dport;
    ev.family = if is_mapped(&daddr) { AF_INET } else { AF_INET6 };

    // SAFETY: read-only lookups.
    let (is_sidecar, pod) = unsafe {
        (
            SIDECARS.get(&ev.cgroup_id).is_some(),
            POD_STATE.get(&ev.cgroup_id).copied(),
        )
    };
    if is_sidecar {
        return decide(&mut ev, Verdict::Meshed, Reason::SidecarCgroup);
    }
    if is_mesh_dest(&daddr, dport) {
        return decide(&mut ev, Verdict::Meshed, Reason::MeshDestination);
    }
    if pod == Some(POD_NO_SIDECAR) {
        return decide(&mut ev, Verdict::Bypass, Reason::NoSidecarInPod);
    }
    // Only the packet after NAT can tell: park it for `egress`. A full map evicts the oldest.
    if PENDING.insert(&ev.sock_cookie, &ev, 0).is_err() {
        count_lost();
    }
    ALLOW
}

/// Reports a verdict reached at `connect()` and returns what `connect()` should do.
#[inline(always)]
fn decide(ev: &mut ConnectEvent, verdict: Verdict, reason: Reason) -> i32 {
    ev.verdict = verdict as u8;
    ev.reason = reason as u8;
    let block = verdict == Verdict::Bypass && enforcing();
    ev.blocked = block as u8;
    emit(ev);
    if block {
        DENY
    } else {
        ALLOW
    }
}

/// `BPF_TCP_SYN_SENT`: the socket state while its SYN (and retransmits) go out.
const TCP_SYN_SENT: u32 = 2;

#[cgroup_skb(egress)]
pub fn egress(ctx: SkBuffContext) -> i32 {
    // Fast path for the packets of established connections (nearly all of them): only a
    // socket still connecting can be waiting for a verdict.
    // SAFETY: `sk` is a context field the verifier lets us read, and we check it for null
    // before the one 4-byte load of its `state`.
    unsafe {
        let sk = core::ptr::read_volatile(&(*ctx.skb.skb).__bindgen_anon_2.sk);
        if sk.is_null() || core::ptr::read_volatile(&(*sk).state) != TCP_SYN_SENT {
            return ALLOW;
        }
    }
    // SAFETY: helper valid in cgroup_skb programs; 0 when the skb has no socket.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let pending = match PENDING.get_ptr_mut(cookie) {
        Some(p) => p,
        None => return ALLOW,
    };
    // SAFETY: the pointer is into a map value of the right type, valid for this program run.
    let ev = unsafe { &mut *pending };
    if ev.verdict != 0 {
        // Already decided and kept only because it was blocked: keep dropping retransmits.
        return if ev.blocked != 0 { DENY } else { ALLOW };
    }
    let (nat_daddr, nat_dport) = match first_packet_destination(&ctx) {
        Some(d) => d,
        None => return ALLOW,
    };
    ev.nat_daddr = nat_daddr;
    ev.nat_dport = nat_dport;
    let (verdict, reason) = if is_mesh_dest(&nat_daddr, nat_dport) {
        (Verdict::Meshed, Reason::RedirectedToSidecar)
    } else if nat_daddr == ev.daddr {
        (Verdict::Bypass, Reason::DirectEgress)
    } else {
        (Verdict::Unknown, Reason::RewrittenElsewhere)
    };
    ev.verdict = verdict as u8;
    ev.reason = reason as u8;
    let block = verdict == Verdict::Bypass && enforcing();
    ev.blocked = block as u8;
    emit(ev);
    if block {
        DENY
    } else {
        let _ = PENDING.remove(&cookie);
        ALLOW
    }
}

/// Destination address and TCP port of an IP packet starting at offset 0 (cgroup_skb
/// programs see the network header first).
#[inline(always)]
fn first_packet_destination(ctx: &SkBuffContext) -> Option<(Addr, u16)> {
    let b0: u8 = ctx.load(0).ok()?;
    match b0 >> 4 {
        4 => {
            let proto: u8 = ctx.load(9).ok()?;
            if proto != IPPROTO_TCP {
                return None;
            }
            let ip: [u8; 4] = ctx.load(16).ok()?;
            let ihl = ((b0 & 0x0f) as usize) * 4;
            if ihl < 20 {
                return None;
            }
            let port: [u8; 2] = ctx.load(ihl + 2).ok()?;
            Some((mapped_v4(ip), u16::from_be_bytes(port)))
        }
        6 => {
            // The SYN of a TCP connection carries no extension headers in practice.
            let next: u8 = ctx.load(6).ok()?;
            if next != IPPROTO_TCP {
                return None;
            }
            let ip: [u8; 16] = ctx.load(24).ok()?;
            let port: [u8; 2] = ctx.load(42).ok()?;
            Some((ip, u16::from_be_bytes(port)))
        }
        _ => None,
    }
}

#[inline(always)]
fn is_mesh_dest(addr: &Addr, port: u16) -> bool {
    let exact = AddrPort::new(*addr, port);
    let any_port = AddrPort::new(*addr, 0);
    // SAFETY: read-only lookups.
    unsafe { MESH_DESTS.get(&exact).is_some() || MESH_DESTS.get(&any_port).is_some() }
}

#[inline(always)]
fn is_mapped(a: &Addr) -> bool {
    a[0] == 0
        && a[1] == 0
        && a[2] == 0
        && a[3] == 0
        && a[4] == 0
        && a[5] == 0
        && a[6] == 0
        && a[7] == 0
        && a[8] == 0
        && a[9] == 0
        && a[10] == 0xff
        && a[11] == 0xff
}

#[inline(always)]
fn enforcing() -> bool {
    SETTINGS
        .get(SETTING_FLAGS)
        .is_some_and(|f| *f & FLAG_ENFORCE != 0)
}

/// Ring-buffer size; userspace is woken only once a quarter of it is filled.
const RING_BYTES: u32 = 1 << 20;
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;

/// Queues an event without waking the reader for each one (a wakeup per connect() was the
/// main cost on a busy node): userspace drains on a short timer, and is woken early when the
/// buffer fills up so nothing is lost in a burst.
#[inline(always)]
fn emit(ev: &ConnectEvent) {
    match EVENTS.reserve::<ConnectEvent>(0) {
        Some(mut slot) => {
            slot.write(*ev);
            let wake = if EVENTS.query(BPF_RB_AVAIL_DATA) > u64::from(RING_BYTES / 4) {
                BPF_RB_FORCE_WAKEUP
            } else {
                BPF_RB_NO_WAKEUP
            };
            slot.submit(wake);
        }
        None => count_lost(),
    }
}

#[inline(always)]
pub(crate) fn count_lost() {
    if let Some(n) = LOST.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while the program runs.
        unsafe { *n += 1 };
    }
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
