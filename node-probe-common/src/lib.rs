//! Types shared by the kernel side (`node-probe-ebpf`) and the loader (`node-probe`).
//!
//! Everything is `#[repr(C)]` with explicit padding so both sides agree byte for byte on map
//! keys, map values and ring-buffer events. IPv4 addresses travel as IPv4-mapped IPv6
//! (`::ffff:a.b.c.d`) so one key type serves both families.
#![no_std]

/// A destination address in IPv6 form (IPv4 as `::ffff:a.b.c.d`), network byte order.
pub type Addr = [u8; 16];

/// Builds the IPv4-mapped form of an IPv4 address given as its four bytes in network order.
pub const fn mapped_v4(octets: [u8; 4]) -> Addr {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, octets[0], octets[1], octets[2], octets[3],
    ]
}

/// True when `addr` is IPv4-mapped, so it came from (or is routed as) IPv4.
pub const fn is_mapped_v4(addr: &Addr) -> bool {
    let mut i = 0;
    while i < 10 {
        if addr[i] != 0 {
            return false;
        }
        i += 1;
    }
    addr[10] == 0xff && addr[11] == 0xff
}

/// Key of the `MESH_DESTS` map: an address and port that count as "inside the mesh" (the
/// sidecar's capture listener, an egress gateway). Port 0 matches every port.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddrPort {
    pub addr: Addr,
    /// Host byte order.
    pub port: u16,
    pub _pad: [u8; 2],
}

impl AddrPort {
    pub const fn new(addr: Addr, port: u16) -> Self {
        Self {
            addr,
            port,
            _pad: [0; 2],
        }
    }
}

/// Bytes of a host name the resolver hook compares (NUL-padded; longer names never match).
pub const NAME_LEN: usize = 64;

/// Key of the `PROVIDER_NAMES` map: a lower-case host name, NUL-padded to [`NAME_LEN`].
pub type HostName = [u8; NAME_LEN];

/// Builds a [`HostName`] key; `None` when the name does not fit.
pub fn host_name(name: &str) -> Option<HostName> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= NAME_LEN {
        return None;
    }
    let mut key = [0u8; NAME_LEN];
    let mut i = 0;
    while i < bytes.len() {
        key[i] = bytes[i].to_ascii_lowercase();
        i += 1;
    }
    Some(key)
}

/// Index of the settings word in the `SETTINGS` array.
pub const SETTING_FLAGS: u32 = 0;
/// Settings flag: refuse bypass connections instead of only reporting them.
pub const FLAG_ENFORCE: u32 = 1;

/// `POD_STATE` value: the pod (parent cgroup) of this cgroup has a sidecar.
pub const POD_HAS_SIDECAR: u8 = 1;
/// `POD_STATE` value: the pod of this cgroup was scanned and has no sidecar.
pub const POD_NO_SIDECAR: u8 = 2;

/// How a provider connection left the node.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Opened by the sidecar, sent to an egress gateway, or redirected into the sidecar.
    Meshed = 1,
    /// Left straight from an application to the provider.
    Bypass = 2,
    /// Rewritten to something that is neither the provider nor the mesh.
    Unknown = 3,
}

impl Verdict {
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Meshed),
            2 => Some(Self::Bypass),
            3 => Some(Self::Unknown),
            _ => None,
        }
    }
}

/// Why the kernel reached its verdict, reported with the alert.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The connecting process is in a sidecar cgroup.
    SidecarCgroup = 1,
    /// The destination is a configured mesh address (egress gateway, mesh VIP).
    MeshDestination = 2,
    /// The first packet, after NAT, went to the sidecar's capture listener.
    RedirectedToSidecar = 3,
    /// The first packet, after NAT, still went to the provider.
    DirectEgress = 4,
    /// The pod has no sidecar at all, so nothing could capture the connection.
    NoSidecarInPod = 5,
    /// The first packet, after NAT, went elsewhere.
    RewrittenElsewhere = 6,
}

impl Reason {
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::SidecarCgroup),
            2 => Some(Self::MeshDestination),
            3 => Some(Self::RedirectedToSidecar),
            4 => Some(Self::DirectEgress),
            5 => Some(Self::NoSidecarInPod),
            6 => Some(Self::RewrittenElsewhere),
            _ => None,
        }
    }
}

/// Length of `comm`, as the kernel's `TASK_COMM_LEN`.
pub const COMM_LEN: usize = 16;

/// One classified connection to a provider address, sent on the `EVENTS` ring buffer.
///
/// Filled at `connect()` and, for connections decided after NAT, completed by the
/// `cgroup_skb` egress program from the record it kept under the socket cookie.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ConnectEvent {
    /// Kernel time of the `connect()` (`bpf_ktime_get_ns`).
    pub ts_ns: u64,
    pub cgroup_id: u64,
    pub netns_cookie: u64,
    pub sock_cookie: u64,
    /// Thread id (kernel pid).
    pub pid: u32,
    /// Process id (kernel tgid).
    pub tgid: u32,
    pub uid: u32,
    pub gid: u32,
    /// Provider index, as userspace numbered them in the `PROVIDERS` map.
    pub provider: u32,
    /// Destination the application asked for, before any NAT.
    pub daddr: Addr,
    /// Destination of the first packet after NAT (zero when decided at `connect()`).
    pub nat_daddr: Addr,
    /// Destination port, host byte order.
    pub dport: u16,
    /// Post-NAT destination port, host byte order.
    pub nat_dport: u16,
    /// 4 or 6, after normalising IPv4-mapped IPv6 to IPv4.
    pub family: u8,
    /// A [`Verdict`].
    pub verdict: u8,
    /// A [`Reason`].
    pub reason: u8,
    /// 1 when the kernel refused the connection (enforce mode).
    pub blocked: u8,
    pub comm: [u8; COMM_LEN],
    pub _pad: [u8; 4],
}

impl ConnectEvent {
    pub const fn zeroed() -> Self {
        Self {
            ts_ns: 0,
            cgroup_id: 0,
            netns_cookie: 0,
            sock_cookie: 0,
            pid: 0,
            tgid: 0,
            uid: 0,
            gid: 0,
            provider: 0,
            daddr: [0; 16],
            nat_daddr: [0; 16],
            dport: 0,
            nat_dport: 0,
            family: 0,
            verdict: 0,
            reason: 0,
            blocked: 0,
            comm: [0; COMM_LEN],
            _pad: [0; 4],
        }
    }
}

/// Bytes of a TLS request line kept (the rest of the line is cut).
pub const TLS_LINE_LEN: usize = 128;

/// Index of the watched root's cgroup level, then its id, in the `ROOT` array.
pub const ROOT_LEVEL: u32 = 0;
pub const ROOT_ID: u32 = 1;

/// `TlsEvent::flags`: the target had a query string, which the kernel left out.
pub const TLS_QUERY_DROPPED: u16 = 1;

/// The request line an application wrote into OpenSSL (`SSL_write`/`SSL_write_ex`), taken
/// in the kernel for processes under the watched cgroup only. Only the method and the path
/// are kept — nothing from the query string or the headers is copied — so `Authorization`,
/// `x-api-key` and `?key=` credentials never reach userspace.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TlsEvent {
    pub cgroup_id: u64,
    pub pid: u32,
    pub tgid: u32,
    pub uid: u32,
    /// Bytes of `line` in use.
    pub len: u16,
    /// `TLS_QUERY_DROPPED` when the request target had a query string (never copied).
    pub flags: u16,
    pub comm: [u8; COMM_LEN],
    pub line: [u8; TLS_LINE_LEN],
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data, `#[repr(C)]`, every bit pattern valid, no implicit padding.
    unsafe impl aya::Pod for super::AddrPort {}
    unsafe impl aya::Pod for super::ConnectEvent {}
    unsafe impl aya::Pod for super::TlsEvent {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(core::mem::size_of::<AddrPort>(), 20);
        // 4*8 + 5*4 + 2*16 + 2*2 + 4 + 16 + 4 explicit padding bytes.
        assert_eq!(core::mem::size_of::<ConnectEvent>(), 112);
        // Told apart from ConnectEvent on the ring buffer by size.
        assert_eq!(core::mem::size_of::<TlsEvent>(), 8 + 4 * 4 + 16 + 128);
    }

    #[test]
    fn host_names_are_lowercased_and_bounded() {
        let k = host_name("API.OpenAI.com").unwrap();
        assert_eq!(&k[..14], b"api.openai.com");
        assert!(k[14..].iter().all(|&b| b == 0));
        assert!(host_name("").is_none());
        assert!(host_name(&"a".repeat(NAME_LEN)).is_none());
    }

    #[test]
    fn mapped_v4_round_trips() {
        let a = mapped_v4([192, 0, 2, 7]);
        assert!(is_mapped_v4(&a));
        assert_eq!(&a[12..], &[192, 0, 2, 7]);
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        assert!(!is_mapped_v4(&v6));
    }
}
