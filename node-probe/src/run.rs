//! The probe's main loop: drain the ring buffer, rescan cgroups, re-resolve provider domains,
//! watch the lost-event counter, and stop cleanly on SIGINT or SIGTERM.

use std::{
    fs::OpenOptions,
    io::{BufWriter, Write},
    net::{IpAddr, ToSocketAddrs},
    sync::Arc,
    time::{Duration, SystemTime},
};

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, SignalKind},
    sync::mpsc,
};

use crate::{
    alert::{ecs, ecs_tls, verdict_name, Connection, TlsRequest},
    cgroups::{scan, SidecarRules, Snapshot},
    config::{Config, Output},
    libc_hooks::{HookKind, LibHooks},
    metrics::{self, Metrics},
    probe::Probe,
};

/// Errors that stop the probe.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Probe(#[from] crate::probe::ProbeError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let what = what.into();
    move |source| RunError::Io { what, source }
}

/// Loads, attaches and runs until a signal; detaches on return.
pub async fn run(cfg: Config) -> Result<(), RunError> {
    let rules = SidecarRules {
        cgroups: cfg
            .sidecar_cgroups
            .iter()
            .map(|p| {
                if p.is_absolute() {
                    p.clone()
                } else {
                    cfg.cgroup_root.join(p)
                }
            })
            .collect(),
        comms: cfg.sidecar_comms.clone(),
    };
    let mut out: Box<dyn Write + Send> = match &cfg.output {
        Output::Stdout => Box::new(BufWriter::new(std::io::stdout())),
        Output::File(path) => Box::new(BufWriter::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(io(format!("opening {}", path.display())))?,
        )),
    };

    let mut probe = Probe::load(&cfg)?;
    let mut snap = scan(&cfg.cgroup_root, &rules)
        .map_err(io(format!("scanning {}", cfg.cgroup_root.display())))?;
    probe.sync_cgroups(&snap)?;
    probe.attach(&cfg.cgroup_root)?;
    let mut libcs = LibHooks::new(HookKind::Resolver, &cfg.libc_paths);
    if cfg.resolver_hook {
        libcs.hook_host(&mut probe);
        libcs.hook_containers(&mut probe, &snap);
    }
    let mut libssls = LibHooks::new(HookKind::Tls, &cfg.libssl_paths);
    if cfg.tls_capture {
        probe.watch_root(&cfg.cgroup_root)?;
        libssls.hook_host(&mut probe);
        libssls.hook_containers(&mut probe, &snap);
    }
    let ring = probe
        .take_events()
        .ok_or_else(|| io("ring buffer")(std::io::ErrorKind::NotFound.into()))?;
    // SAFETY: the RingBuf owns its map fd and keeps it open, unchanged, until `ring` drops.
    let mut ring = unsafe { AsyncFd::register(ring) }
        .map_err(|e| io("polling the ring buffer")(e.into_parts().1))?;

    let metrics = Arc::new(Metrics::default());
    let _metrics_server = match cfg.metrics_listen {
        Some(addr) => {
            let m = Arc::clone(&metrics);
            Some(AbortOnDrop(tokio::spawn(async move {
                if let Err(e) = metrics::serve(addr, m).await {
                    eprintln!("sluice-node-probe: metrics endpoint {addr}: {e}");
                }
            })))
        }
        None => None,
    };

    let (resolved_tx, mut resolved_rx) = mpsc::channel::<(u32, Vec<IpAddr>)>(64);
    let mut resolve_tick = tokio::time::interval(cfg.resolve_interval);
    let mut rescan_tick = tokio::time::interval(cfg.rescan_interval);
    let mut lost_tick = tokio::time::interval(Duration::from_secs(1));
    let mut drain_tick = tokio::time::interval(DRAIN_INTERVAL);
    let mut sigterm = signal(SignalKind::terminate()).map_err(io("SIGTERM handler"))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(io("SIGINT handler"))?;

    eprintln!(
        "sluice-node-probe: attached to {} (enforce: {}, {} cgroups, {} sidecars, getaddrinfo hooked in {} libc, SSL_write in {} libssl)",
        cfg.cgroup_root.display(),
        cfg.enforce,
        snap.paths.len(),
        snap.sidecars.len(),
        libcs.hooked(),
        libssls.hooked()
    );

    loop {
        tokio::select! {
            // Woken when the kernel's buffer is a quarter full...
            guard = ring.readable_mut() => {
                let mut guard = guard.map_err(io("polling the ring buffer"))?;
                drain(guard.get_inner_mut(), &cfg, &mut snap, &rules, &metrics, &mut out)?;
                guard.clear_ready();
            }
            // ...and otherwise every DRAIN_INTERVAL: the kernel does not wake us per event.
            _ = drain_tick.tick() => {
                drain(ring.get_mut(), &cfg, &mut snap, &rules, &metrics, &mut out)?;
            }
            _ = rescan_tick.tick() => {
                if let Ok(fresh) = scan(&cfg.cgroup_root, &rules) {
                    snap = fresh;
                    probe.sync_cgroups(&snap)?;
                    if cfg.resolver_hook {
                        libcs.hook_containers(&mut probe, &snap);
                    }
                    if cfg.tls_capture {
                        libssls.hook_containers(&mut probe, &snap);
                    }
                }
            }
            _ = resolve_tick.tick(), if cfg.resolve_domains => {
                spawn_resolver(&cfg, resolved_tx.clone());
            }
            Some((index, ips)) = resolved_rx.recv() => {
                for ip in ips {
                    if let Err(e) = probe.add_provider_address(ip, index) {
                        eprintln!("sluice-node-probe: {e}");
                    }
                }
            }
            _ = lost_tick.tick() => {
                let total = probe.lost_total()?;
                if total > metrics.lost() {
                    eprintln!("sluice-node-probe: {} events lost so far (ring buffer full)", total);
                }
                metrics.set_lost(total);
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }
    drop(ring);
    drop(probe);
    eprintln!("sluice-node-probe: detached");
    Ok(())
}

const MISS_RESCAN_AFTER: Duration = Duration::from_secs(1);

/// Alerts are at most this late; the kernel batches wakeups to keep connect() cheap.
const DRAIN_INTERVAL: Duration = Duration::from_millis(50);

fn drain(
    ring: &mut RingBuf<MapData>,
    cfg: &Config,
    snap: &mut Snapshot,
    rules: &SidecarRules,
    metrics: &Metrics,
    out: &mut Box<dyn Write + Send>,
) -> Result<(), RunError> {
    while let Some(item) = ring.next() {
        if let Some(conn) = Connection::decode(&item) {
            report(&conn, cfg, snap, rules, metrics, out)?;
        } else if let Some(req) = TlsRequest::decode(&item) {
            let path = snap.paths.get(&req.raw.cgroup_id).map(|p| p.as_path());
            let doc = ecs_tls(&req, path, SystemTime::now());
            writeln!(out, "{doc}").map_err(io("writing an event"))?;
        } else {
            metrics.undecodable();
        }
    }
    // One write per batch, not per alert.
    out.flush().map_err(io("writing alerts"))
}

fn report(
    conn: &Connection,
    cfg: &Config,
    snap: &mut Snapshot,
    rules: &SidecarRules,
    metrics: &Metrics,
    out: &mut Box<dyn Write + Send>,
) -> Result<(), RunError> {
    let provider = cfg
        .providers
        .get(conn.raw.provider as usize)
        .map_or("unknown-provider", |p| p.name.as_str());
    if !snap.paths.contains_key(&conn.raw.cgroup_id) && snap.age() > MISS_RESCAN_AFTER {
        // A cgroup created since the last scan: look again so the alert can name it (at most
        // once per MISS_RESCAN_AFTER, so events from vanished cgroups cannot cause a storm).
        if let Ok(fresh) = scan(&cfg.cgroup_root, rules) {
            *snap = fresh;
        }
    }
    let path = snap.paths.get(&conn.raw.cgroup_id).map(|p| p.as_path());
    let doc = ecs(conn, provider, path, SystemTime::now());
    metrics.connection(verdict_name(conn.verdict), provider, conn.raw.blocked != 0);
    writeln!(out, "{doc}").map_err(io("writing an alert"))?;
    Ok(())
}

/// Resolves the providers' literal domains off the event loop (getaddrinfo blocks).
fn spawn_resolver(cfg: &Config, tx: mpsc::Sender<(u32, Vec<IpAddr>)>) {
    let jobs: Vec<(u32, String)> = cfg
        .providers
        .iter()
        .enumerate()
        .flat_map(|(i, p)| {
            p.domains
                .iter()
                .filter(|d| !d.contains('*'))
                .map(move |d| (i as u32, d.clone()))
        })
        .collect();
    tokio::task::spawn_blocking(move || {
        for (index, domain) in jobs {
            if let Ok(addrs) = (domain.as_str(), 443).to_socket_addrs() {
                let ips = addrs.map(|a| a.ip()).collect();
                if tx.blocking_send((index, ips)).is_err() {
                    return;
                }
            }
        }
    });
}

/// Stops a background task when the loop ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
