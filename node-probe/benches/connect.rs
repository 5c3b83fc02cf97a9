//! connect() cost with the probe attached vs detached, measured in the same run, plus a paced
//! 20,000 connects/s phase that checks every event arrives (`make bench-probe`, as root).
//!
//! The bench moves itself into an "app" cgroup whose pod has a sidecar, so each provider
//! connection takes the longest path: connect4 parks it, the egress program decides it after
//! NAT and emits the event. Traffic stays on loopback (127.0.0.2 plays the provider).

use std::{
    fs,
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use sluice_node_probe::config::default_cgroup_root;

const PROVIDER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const OTHER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
/// Short interleaved rounds, so both conditions see the same background load.
const ROUNDS: usize = 10;
const CONNECTS_PER_ROUND: usize = 1000;
const STATS_CONNECTS: usize = 5000;
const RATE: u64 = 20_000;
const RATE_SECONDS: u64 = 2;
const PACERS: u64 = 4;

/// Closes with RST so tens of thousands of connects leave no TIME_WAIT behind.
fn linger_zero(fd: i32) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid socket fd and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fn listen(ip: Ipv4Addr) -> SocketAddr {
    let l = TcpListener::bind((ip, 0)).expect("bind loopback listener");
    let addr = l.local_addr().expect("listener address");
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            linger_zero(s.as_raw_fd());
        }
    });
    addr
}

/// One connect() and its duration; `None` when loopback refused or reset it (counted apart).
fn one_connect(to: SocketAddr) -> Option<Duration> {
    let t = Instant::now();
    let s = TcpStream::connect(to).ok()?;
    let took = t.elapsed();
    linger_zero(s.as_raw_fd());
    Some(took)
}

#[derive(Default, Clone, Copy)]
struct Stats {
    median_ns: f64,
    mean_ns: f64,
}

fn measure(to: SocketAddr, n: usize) -> Vec<Duration> {
    (0..n).filter_map(|_| one_connect(to)).collect()
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let ns = |d: &Duration| d.as_nanos() as f64;
    Stats {
        median_ns: ns(&samples[samples.len() / 2]),
        mean_ns: samples.iter().map(ns).sum::<f64>() / samples.len() as f64,
    }
}

struct Lab {
    root: std::path::PathBuf,
    dir: std::path::PathBuf,
}

impl Lab {
    fn probe(&self, metrics: SocketAddr) -> Probe {
        let config = serde_json::json!({
            "cgroup_root": self.root,
            "resolve_domains": false,
            "providers": [{"name": "bench", "addresses": [PROVIDER.to_string()]}],
            "sidecar_cgroups": ["pod/sidecar"],
            "output": self.dir.join("alerts.jsonl"),
            "metrics_listen": metrics.to_string(),
        });
        let path = self.dir.join("probe.json");
        fs::write(&path, config.to_string()).expect("write config");
        let _ = fs::remove_file(self.dir.join("alerts.jsonl"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-node-probe"))
            .arg("--config")
            .arg(&path)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the probe");
        let mut buf = [0u8; 256];
        let mut seen = String::new();
        let mut err = child.stderr.take().expect("stderr");
        while !seen.contains("attached") {
            let n = err.read(&mut buf).expect("probe stderr");
            assert!(n > 0, "probe exited: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        // Keep draining so the probe never blocks on a full pipe.
        thread::spawn(move || while matches!(err.read(&mut buf), Ok(n) if n > 0) {});
        Probe(child)
    }

    fn alerts(&self) -> usize {
        fs::read_to_string(self.dir.join("alerts.jsonl"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }
}

/// Time the kernel spent in the probe's cgroup programs (sock_addr = 18, skb = 8), from the
/// probe process's fdinfo; needs BPF run-time stats on.
fn kernel_ns(probe: &Probe) -> (u64, u64) {
    let dir = format!("/proc/{}/fdinfo", probe.0.id());
    let (mut total, mut runs) = (0, 0);
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(info) = fs::read_to_string(entry.path()) else {
            continue;
        };
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if matches!(field("prog_type:"), Some(8 | 18)) {
            total += field("run_time_ns:").unwrap_or(0);
            runs += field("run_cnt:").unwrap_or(0);
        }
    }
    (total, runs)
}

/// The running probe; stopped with SIGTERM (a clean detach) when dropped, panics included.
struct Probe(Child);

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn stop(probe: Probe) {
    drop(probe);
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Leave the bench cgroups so they can be removed.
        let _ = fs::write(
            default_cgroup_root().join("cgroup.procs"),
            std::process::id().to_string(),
        );
        for sub in ["pod/app", "pod/sidecar", "pod", ""] {
            let _ = fs::remove_dir(self.root.join(sub));
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn scrape(addr: SocketAddr, metric: &str) -> Option<u64> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.lines()
        .find(|l| l.starts_with(metric))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The listeners run in a child process left in the parent cgroup, as a remote server would
/// be: only the client's side of each connection passes the probe's programs.
fn serve() -> ! {
    let provider = listen(PROVIDER);
    let other = listen(OTHER);
    println!("{provider} {other}");
    let _ = std::io::stdout().flush();
    loop {
        thread::park();
    }
}

fn spawn_server() -> (Child, SocketAddr, SocketAddr) {
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .arg("--serve")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the listener process");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("listener addresses");
    let mut addrs = line.split_whitespace().map(|a| a.parse().expect("address"));
    let (p, o) = (
        addrs.next().expect("provider"),
        addrs.next().expect("other"),
    );
    (child, p, o)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if std::env::args().any(|a| a == "--serve") {
        serve();
    }
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("bench-probe needs root (eBPF and cgroups); skipped");
        return;
    }
    let tag = format!("sluice-bench-{}", std::process::id());
    let root = default_cgroup_root().join(&tag);
    for sub in ["pod/app", "pod/sidecar"] {
        fs::create_dir_all(root.join(sub)).expect("create bench cgroups");
    }
    let dir = std::env::temp_dir().join(&tag);
    fs::create_dir_all(&dir).expect("temp dir");
    let lab = Lab {
        root: root.clone(),
        dir,
    };
    let (mut server, provider, other) = spawn_server();
    fs::write(
        root.join("pod/app/cgroup.procs"),
        std::process::id().to_string(),
    )
    .expect("join the app cgroup");

    let metrics = listen_free_port();

    // Warm up the loopback path and page in everything.
    measure(provider, 500);
    let mut detached = (Vec::new(), Vec::new());
    let mut attached = (Vec::new(), Vec::new());
    // Per-round differences of medians: robust to load that drifts between rounds.
    let mut deltas = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let d = (
            measure(provider, CONNECTS_PER_ROUND),
            measure(other, CONNECTS_PER_ROUND),
        );
        let probe = lab.probe(metrics);
        let a = (
            measure(provider, CONNECTS_PER_ROUND),
            measure(other, CONNECTS_PER_ROUND),
        );
        stop(probe);
        deltas
            .0
            .push(stats(a.0.clone()).median_ns - stats(d.0.clone()).median_ns);
        deltas
            .1
            .push(stats(a.1.clone()).median_ns - stats(d.1.clone()).median_ns);
        detached.0.extend(d.0);
        detached.1.extend(d.1);
        attached.0.extend(a.0);
        attached.1.extend(a.1);
    }
    let (dp, dother) = (stats(detached.0), stats(detached.1));
    let (ap, aother) = (stats(attached.0), stats(attached.1));
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (delta_p, delta_other) = (median(deltas.0), median(deltas.1));

    // Per-program run time, the cost that does not drown in scheduling noise. BPF run-time
    // stats add two clock reads per program run, so they stay off during the rounds above.
    let stats_on = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("enable BPF stats");
    let probe = lab.probe(metrics);
    let k0 = kernel_ns(&probe);
    let n_provider = measure(provider, STATS_CONNECTS).len() as f64;
    let k1 = kernel_ns(&probe);
    let n_other = measure(other, STATS_CONNECTS).len() as f64;
    let k2 = kernel_ns(&probe);
    stop(probe);
    drop(stats_on);
    let in_kernel = (
        (k1.0 - k0.0) as f64 / n_provider,
        (k2.0 - k1.0) as f64 / n_other,
    );
    let runs = (
        (k1.1 - k0.1) as f64 / n_provider,
        (k2.1 - k1.1) as f64 / n_other,
    );

    // Paced phase: RATE connects/s for RATE_SECONDS, then every one must come out as an event.
    let probe = lab.probe(metrics);
    let total = RATE * RATE_SECONDS;
    // Several pacers, as a node has many clients; each keeps RATE / PACERS per second.
    let start = Instant::now();
    let per = total / PACERS;
    let failed: u64 = thread::scope(|scope| {
        let pacers: Vec<_> = (0..PACERS)
            .map(|_| {
                scope.spawn(move || {
                    let mut failed = 0u64;
                    for i in 0..per {
                        let due = start + Duration::from_nanos(i * 1_000_000_000 * PACERS / RATE);
                        let now = Instant::now();
                        if now < due {
                            thread::sleep(due - now);
                        }
                        if one_connect(provider).is_none() {
                            failed += 1;
                        }
                    }
                    failed
                })
            })
            .collect();
        pacers.into_iter().map(|p| p.join().unwrap_or(per)).sum()
    });
    let achieved = total as f64 / start.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(10);
    while lab.alerts() < total as usize && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    let events = lab.alerts();
    let lost = scrape(metrics, "sluice_probe_events_lost_total");
    stop(probe);
    let _ = server.kill();
    let _ = server.wait();
    drop(lab);

    let us = |ns: f64| ns / 1000.0;
    println!("connect() on loopback, {ROUNDS} rounds x {CONNECTS_PER_ROUND} per case, detached/attached interleaved:");
    println!(
        "  case                   detached median/mean   attached median/mean   added: median of per-round deltas (ratio of medians)"
    );
    for (name, d, a, delta) in [
        ("provider (full path)", dp, ap, delta_p),
        ("other destination", dother, aother, delta_other),
    ] {
        println!(
            "  {name:<21}  {:>7.2} / {:>7.2} us     {:>7.2} / {:>7.2} us     {:+.2} us ({:.3}x)",
            us(d.median_ns),
            us(d.mean_ns),
            us(a.median_ns),
            us(a.mean_ns),
            us(delta),
            a.median_ns / d.median_ns
        );
    }
    println!(
        "in-kernel time of the probe's programs per connect() (all packets of the connection): \
         provider {:.2} us ({:.1} runs), other destination {:.2} us ({:.1} runs)",
        us(in_kernel.0),
        runs.0,
        us(in_kernel.1),
        runs.1
    );
    println!(
        "paced: {total} provider connects ({failed} failed) at {achieved:.0}/s (target {RATE}/s): \
         {events} events, lost {}",
        lost.map_or("unknown".to_owned(), |l| l.to_string())
    );
}

/// A loopback port for the metrics endpoint, free at the time of asking.
fn listen_free_port() -> SocketAddr {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    l.local_addr().expect("address")
}
