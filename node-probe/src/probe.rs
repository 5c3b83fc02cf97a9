//! Loads the kernel programs, keeps their maps in step with the configuration and the cgroup
//! tree, and attaches them to the watched cgroup. Dropping a [`Probe`] detaches everything
//! (the attachments are bpf_links owned by the loaded object).

use std::{
    collections::HashSet,
    fs::File,
    net::IpAddr,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use aya::{
    include_bytes_aligned,
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::uprobe::UProbeScope,
    programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, UProbe},
    Ebpf,
};
use node_probe_common::{
    host_name, mapped_v4, Addr, AddrPort, HostName, FLAG_ENFORCE, POD_HAS_SIDECAR, POD_NO_SIDECAR,
    ROOT_ID, ROOT_LEVEL, SETTING_FLAGS,
};

use crate::{cgroups::Snapshot, config::Config};

/// Why the probe could not start or update its maps.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("the eBPF object has no {0}")]
    Missing(&'static str),
    #[error("opening cgroup {path}: {source}")]
    Cgroup {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The loaded and attached probe.
pub struct Probe {
    // Field order matters on drop: maps and programs go with `ebpf`, after the handles.
    providers: HashMap<MapData, Addr, u32>,
    sidecars: HashMap<MapData, u64, u8>,
    pod_state: HashMap<MapData, u64, u8>,
    lost: PerCpuArray<MapData, u64>,
    // Held so their fds stay open: the loaded programs refer to them.
    _settings: Array<MapData, u32>,
    _mesh: HashMap<MapData, AddrPort, u8>,
    _names: HashMap<MapData, HostName, u32>,
    root: Array<MapData, u64>,
    events: Option<RingBuf<MapData>>,
    known_cgroups: HashSet<u64>,
    known_sidecars: HashSet<u64>,
    ebpf: Ebpf,
}

/// The object built by build.rs from `node-probe-ebpf`.
static OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/node-probe-ebpf"));

const PROGRAMS_SOCK_ADDR: [&str; 2] = ["connect4", "connect6"];
const PROGRAM_EGRESS: &str = "egress";
const PROGRAMS_RESOLVER: [&str; 2] = ["getaddrinfo_enter", "getaddrinfo_exit"];
const PROGRAM_TLS: &str = "ssl_write";
/// OpenSSL's write calls; both take (ssl, buf, num) first, which is all the program reads.
const TLS_SYMBOLS: [&str; 2] = ["SSL_write", "SSL_write_ex"];

impl Probe {
    /// Loads (verifies) the programs and fills the static maps; nothing is attached yet.
    pub fn load(cfg: &Config) -> Result<Self, ProbeError> {
        let mut ebpf = Ebpf::load(OBJECT)?;
        for name in PROGRAMS_SOCK_ADDR {
            let prog: &mut CgroupSockAddr = program(&mut ebpf, name)?;
            prog.load()
                .map_err(|source| ProbeError::Program { name, source })?;
        }
        let prog: &mut CgroupSkb = program(&mut ebpf, PROGRAM_EGRESS)?;
        prog.load().map_err(|source| ProbeError::Program {
            name: PROGRAM_EGRESS,
            source,
        })?;
        for name in PROGRAMS_RESOLVER.into_iter().chain([PROGRAM_TLS]) {
            let prog: &mut UProbe = program(&mut ebpf, name)?;
            prog.load()
                .map_err(|source| ProbeError::Program { name, source })?;
        }

        let mut settings: Array<MapData, u32> = take(&mut ebpf, "SETTINGS")?;
        let flags = if cfg.enforce { FLAG_ENFORCE } else { 0 };
        settings
            .set(SETTING_FLAGS, flags, 0)
            .map_err(|source| ProbeError::Map {
                name: "SETTINGS",
                source,
            })?;

        let mut mesh: HashMap<MapData, AddrPort, u8> = take(&mut ebpf, "MESH_DESTS")?;
        for dest in &cfg.mesh_destinations {
            let key = AddrPort::new(to_addr(dest.ip()), dest.port());
            mesh.insert(key, 1, 0).map_err(|source| ProbeError::Map {
                name: "MESH_DESTS",
                source,
            })?;
        }

        // Exact names only: patterns (`*.openai.azure.com`) cannot be a hash key.
        let mut names: HashMap<MapData, HostName, u32> = take(&mut ebpf, "PROVIDER_NAMES")?;
        for (index, provider) in cfg.providers.iter().enumerate() {
            for key in provider.domains.iter().filter_map(|d| host_name(d)) {
                names
                    .insert(key, index as u32, 0)
                    .map_err(|source| ProbeError::Map {
                        name: "PROVIDER_NAMES",
                        source,
                    })?;
            }
        }

        let mut probe = Self {
            providers: take(&mut ebpf, "PROVIDERS")?,
            sidecars: take(&mut ebpf, "SIDECARS")?,
            pod_state: take(&mut ebpf, "POD_STATE")?,
            lost: take(&mut ebpf, "LOST")?,
            _settings: settings,
            _mesh: mesh,
            _names: names,
            root: take(&mut ebpf, "ROOT")?,
            events: Some(take(&mut ebpf, "EVENTS")?),
            known_cgroups: HashSet::new(),
            known_sidecars: HashSet::new(),
            ebpf,
        };
        for (index, provider) in cfg.providers.iter().enumerate() {
            for &ip in &provider.addresses {
                probe.add_provider_address(ip, index as u32)?;
            }
        }
        Ok(probe)
    }

    /// Attaches connect4/connect6 and the egress program to `cgroup` (and so to all below it).
    pub fn attach(&mut self, cgroup: &Path) -> Result<(), ProbeError> {
        let dir = File::open(cgroup).map_err(|source| ProbeError::Cgroup {
            path: cgroup.to_owned(),
            source,
        })?;
        for name in PROGRAMS_SOCK_ADDR {
            let prog: &mut CgroupSockAddr = program(&mut self.ebpf, name)?;
            prog.attach(&dir, CgroupAttachMode::Single)
                .map_err(|source| ProbeError::Program { name, source })?;
        }
        let name = PROGRAM_EGRESS;
        let prog: &mut CgroupSkb = program(&mut self.ebpf, name)?;
        prog.attach(&dir, CgroupSkbAttachType::Egress, CgroupAttachMode::Single)
            .map_err(|source| ProbeError::Program { name, source })?;
        Ok(())
    }

    /// Hooks `getaddrinfo` in the libc at `path`, for every process that uses that file.
    pub fn attach_resolver(&mut self, path: &Path) -> Result<(), ProbeError> {
        for name in PROGRAMS_RESOLVER {
            let prog: &mut UProbe = program(&mut self.ebpf, name)?;
            prog.attach("getaddrinfo", path, UProbeScope::AllProcesses)
                .map_err(|source| ProbeError::Program { name, source })?;
        }
        Ok(())
    }

    /// Hooks OpenSSL's write calls in the libssl at `path`. The program only reports processes
    /// under `cgroup` (by its level and id), so call [`Probe::watch_root`] first.
    pub fn attach_tls(&mut self, path: &Path) -> Result<(), ProbeError> {
        let name = PROGRAM_TLS;
        let prog: &mut UProbe = program(&mut self.ebpf, name)?;
        for symbol in TLS_SYMBOLS {
            prog.attach(symbol, path, UProbeScope::AllProcesses)
                .map_err(|source| ProbeError::Program { name, source })?;
        }
        Ok(())
    }

    /// Tells the TLS program which subtree it may report on.
    pub fn watch_root(&mut self, cgroup: &Path) -> Result<(), ProbeError> {
        let err = |source| ProbeError::Cgroup {
            path: cgroup.to_owned(),
            source,
        };
        let id = std::fs::metadata(cgroup).map_err(err)?.ino();
        let level = cgroup_level(cgroup).map_err(err)?;
        for (index, value) in [(ROOT_LEVEL, level), (ROOT_ID, id)] {
            self.root
                .set(index, value, 0)
                .map_err(|source| ProbeError::Map {
                    name: "ROOT",
                    source,
                })?;
        }
        Ok(())
    }

    /// Marks `ip` as belonging to provider number `index`. Returns whether it was new.
    pub fn add_provider_address(&mut self, ip: IpAddr, index: u32) -> Result<bool, ProbeError> {
        let key = to_addr(ip);
        if self.providers.get(&key, 0).is_ok() {
            return Ok(false);
        }
        self.providers
            .insert(key, index, 0)
            .map_err(|source| ProbeError::Map {
                name: "PROVIDERS",
                source,
            })?;
        Ok(true)
    }

    /// Brings `SIDECARS` and `POD_STATE` in line with a fresh scan of the cgroup tree.
    pub fn sync_cgroups(&mut self, snap: &Snapshot) -> Result<(), ProbeError> {
        for (&id, &meshed) in &snap.pod_has_sidecar {
            let state = if meshed {
                POD_HAS_SIDECAR
            } else {
                POD_NO_SIDECAR
            };
            if self.pod_state.get(&id, 0).ok() != Some(state) {
                self.pod_state
                    .insert(id, state, 0)
                    .map_err(|source| ProbeError::Map {
                        name: "POD_STATE",
                        source,
                    })?;
            }
        }
        for gone in self
            .known_cgroups
            .difference(&snap.paths.keys().copied().collect())
        {
            let _ = self.pod_state.remove(gone);
        }
        self.known_cgroups = snap.paths.keys().copied().collect();

        for &id in snap.sidecars.difference(&self.known_sidecars) {
            self.sidecars
                .insert(id, 1, 0)
                .map_err(|source| ProbeError::Map {
                    name: "SIDECARS",
                    source,
                })?;
        }
        for gone in self.known_sidecars.difference(&snap.sidecars) {
            let _ = self.sidecars.remove(gone);
        }
        self.known_sidecars = snap.sidecars.clone();
        Ok(())
    }

    /// Events the kernel could not queue since load, summed over CPUs.
    pub fn lost_total(&self) -> Result<u64, ProbeError> {
        let per_cpu = self.lost.get(&0, 0).map_err(|source| ProbeError::Map {
            name: "LOST",
            source,
        })?;
        Ok(per_cpu.iter().sum())
    }

    /// The ring buffer of classified connections (once: the reader owns it).
    pub fn take_events(&mut self) -> Option<RingBuf<MapData>> {
        self.events.take()
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, ProbeError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let prog = ebpf.program_mut(name).ok_or(ProbeError::Missing(name))?;
    prog.try_into()
        .map_err(|source| ProbeError::Program { name, source })
}

fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, ProbeError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(ProbeError::Missing(name))?;
    T::try_from(map).map_err(|source| ProbeError::Map { name, source })
}

/// Depth of `dir` below the cgroup v2 mount it lives on (the mount's root is level 0), as
/// `bpf_get_current_ancestor_cgroup_id` counts.
pub fn cgroup_level(dir: &Path) -> std::io::Result<u64> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mount = mountinfo
        .lines()
        .filter(|l| {
            l.split(" - ")
                .nth(1)
                .is_some_and(|t| t.starts_with("cgroup2 "))
        })
        .filter_map(|l| l.split(' ').nth(4).map(PathBuf::from))
        .filter(|m| dir.starts_with(m))
        .max_by_key(|m| m.as_os_str().len())
        .ok_or_else(|| std::io::Error::other("not on a cgroup v2 mount"))?;
    let below = dir.strip_prefix(&mount).map_err(std::io::Error::other)?;
    Ok(below.components().count() as u64)
}

/// The kernel's key form: IPv4 as IPv4-mapped IPv6.
pub fn to_addr(ip: IpAddr) -> Addr {
    match ip {
        IpAddr::V4(v4) => mapped_v4(v4.octets()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => mapped_v4(v4.octets()),
            None => v6.octets(),
        },
    }
}
