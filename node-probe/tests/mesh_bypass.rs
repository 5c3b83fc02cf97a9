//! The probe end to end, in this kernel: real programs attached to a test cgroup, real
//! connections between network namespaces, Istio's capture emulated with nft, names resolved by
//! an /etc/hosts file that `ip netns exec` mounts in a private mount namespace (no query leaves
//! the machine). Needs root; run by `make test-probe` (`-- --ignored --test-threads=1`).
//!
//! Layout: pod "meshed" (netns M: app + istio-proxy cgroups, nft redirect of TCP to :15001
//! except uid 1337), pod "plain" (netns U: app cgroup, no sidecar, no capture), and a provider
//! netns P listening on 198.18.0.10 / fd00:5:1::10 (providers) and 198.18.0.20 (not a provider).

use std::{
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

const PYTHON: &str = "/usr/bin/python3";
const CLIENT: &str = include_str!("lab/client.py");
const SERVER: &str = include_str!("lab/server.py");
const TLS_SERVER: &str = include_str!("lab/tls_server.py");
const TLS_CLIENT: &str = include_str!("lab/tls_client.py");
const HOSTS: &str = "127.0.0.1 localhost\n::1 localhost\n\
    198.18.0.10 api.openai.com\nfd00:5:1::10 api.anthropic.com\n198.18.0.20 internal.example.test\n";
/// Istio's outbound capture, reduced to what matters here (istio-iptables' ISTIO_OUTPUT),
/// plus one foreign DNAT (provider:8443 → 198.18.0.20:443) that is neither mesh nor provider.
const CAPTURE: &str = "table inet istio {
  chain output {
    type nat hook output priority -100; policy accept;
    meta l4proto != tcp return
    meta skuid 1337 return
    ip daddr 127.0.0.0/8 return
    ip6 daddr ::1 return
    ip daddr 198.18.0.10 tcp dport 8443 dnat ip to 198.18.0.20:443
    tcp dport != 15001 redirect to :15001
  }
}
";
/// How long to wait for an expected alert line before failing (a bound, not a measurement).
const WAIT: Duration = Duration::from_secs(10);

static NEXT: AtomicU32 = AtomicU32::new(0);

fn sh(cmd: &str) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Where a client runs.
#[derive(Clone, Copy)]
enum Pod {
    Meshed,
    Plain,
}

struct Lab {
    tag: String,
    /// Loopback address of the probe's Prometheus endpoint.
    metrics: std::net::SocketAddr,
    dir: PathBuf,
    cgroup: PathBuf,
    children: Vec<Child>,
    probe: Option<Child>,
    probe_log: Arc<Mutex<String>>,
    alerts: PathBuf,
}

impl Lab {
    fn new() -> Self {
        assert!(
            fs::read_to_string("/proc/self/status")
                .unwrap()
                .lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")),
            "the probe tests need root (eBPF, netns, cgroups, nft): run them via `make test-probe` as root"
        );
        assert!(
            Path::new(PYTHON).exists(),
            "{PYTHON} is needed for the stand-in processes"
        );
        let tag = format!(
            "sp{}x{}",
            std::process::id() % 100_000,
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let dir = std::env::temp_dir().join(format!("sluice-{tag}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        // World-readable: the uid-1337 stand-ins read the scripts.
        sh(&format!("chmod 755 {}", dir.display()));
        fs::write(dir.join("client.py"), CLIENT).unwrap();
        fs::write(dir.join("server.py"), SERVER).unwrap();
        fs::write(dir.join("tls_server.py"), TLS_SERVER).unwrap();
        fs::write(dir.join("tls_client.py"), TLS_CLIENT).unwrap();

        let cgroup = sluice_node_probe::config::default_cgroup_root().join(format!("sluice-{tag}"));
        // A port free right now; the probe binds it a moment later.
        let metrics = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap();
        let mut lab = Lab {
            metrics,
            alerts: dir.join("alerts.jsonl"),
            tag,
            dir,
            cgroup,
            children: Vec::new(),
            probe: None,
            probe_log: Arc::default(),
        };
        lab.build_network();
        for sub in ["pod-meshed/app", "pod-meshed/istio-proxy", "pod-plain/app"] {
            fs::create_dir_all(lab.cgroup.join(sub)).unwrap();
        }
        lab.start_servers();
        lab
    }

    fn ns(&self, which: char) -> String {
        format!("{}{which}", self.tag)
    }

    fn build_network(&self) {
        let (m, u, p, t) = (self.ns('m'), self.ns('u'), self.ns('p'), &self.tag);
        for ns in [&m, &u, &p] {
            sh(&format!("ip netns add {ns} && ip -n {ns} link set lo up"));
            fs::create_dir_all(format!("/etc/netns/{ns}")).unwrap();
            fs::write(format!("/etc/netns/{ns}/hosts"), HOSTS).unwrap();
        }
        sh(&format!(
            "ip link add {t}a type veth peer name {t}b && ip link set {t}a netns {m} && ip link set {t}b netns {p} \
             && ip link add {t}c type veth peer name {t}d && ip link set {t}c netns {u} && ip link set {t}d netns {p} \
             && ip -n {m} addr add 198.18.0.1/24 dev {t}a && ip -n {m} addr add fd00:5:1::1/64 dev {t}a nodad \
             && ip -n {p} addr add 198.18.0.10/24 dev {t}b && ip -n {p} addr add 198.18.0.20/24 dev {t}b \
             && ip -n {p} addr add fd00:5:1::10/64 dev {t}b nodad \
             && ip -n {u} addr add 198.18.1.1/24 dev {t}c && ip -n {u} addr add fd00:5:2::1/64 dev {t}c nodad \
             && ip -n {p} addr add 198.18.1.10/24 dev {t}d && ip -n {p} addr add fd00:5:2::10/64 dev {t}d nodad \
             && ip -n {m} link set {t}a up && ip -n {p} link set {t}b up \
             && ip -n {u} link set {t}c up && ip -n {p} link set {t}d up \
             && ip -n {u} route add 198.18.0.0/24 via 198.18.1.10 \
             && ip -n {u} -6 route add fd00:5:1::/64 via fd00:5:2::10"
        ));
        let rules = self.dir.join("capture.nft");
        fs::write(&rules, CAPTURE).unwrap();
        sh(&format!("ip netns exec {m} nft -f {}", rules.display()));
    }

    /// Starts a process in `cgroup` and netns `ns`, optionally as uid 1337; the shell execs
    /// into it so the pid is the process's own.
    fn spawn_in(&self, cgroup: Option<&str>, ns: &str, uid_1337: bool, args: &str) -> Child {
        let join = cgroup.map_or(String::new(), |c| {
            format!(
                "echo $$ > {}/cgroup.procs && ",
                self.cgroup.join(c).display()
            )
        });
        let user = if uid_1337 {
            "setpriv --reuid=1337 --regid=1337 --clear-groups "
        } else {
            ""
        };
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{join}exec ip netns exec {ns} {user}{PYTHON} {args}"
            ))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn stand-in")
    }

    fn start_servers(&mut self) {
        let server = self.dir.join("server.py");
        let provider = self.spawn_in(
            None,
            &self.ns('p'),
            false,
            &format!(
                "{} 198.18.0.10:443 198.18.0.20:443 [fd00:5:1::10]:443",
                server.display()
            ),
        );
        self.wait_ready(provider);
        let sidecar = self.spawn_in(
            Some("pod-meshed/istio-proxy"),
            &self.ns('m'),
            true,
            &format!(
                "{} 127.0.0.1:15001 [::1]:15001 --forward 198.18.0.10:443 [fd00:5:1::10]:443",
                server.display()
            ),
        );
        self.wait_ready(sidecar);
    }

    fn wait_ready(&mut self, mut child: Child) {
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "stand-in server did not start");
        self.children.push(child);
    }

    fn start_probe(&mut self, enforce: bool) {
        self.start_probe_with(
            enforce,
            false,
            serde_json::json!([
                {"name": "openai", "domains": ["api.openai.com"], "addresses": ["198.18.0.10"]},
                {"name": "anthropic", "domains": ["api.anthropic.com"], "addresses": ["fd00:5:1::10"]},
            ]),
        );
    }

    fn start_probe_with(&mut self, enforce: bool, tls: bool, providers: Value) {
        let config = serde_json::json!({
            "cgroup_root": self.cgroup,
            // Never ask a real resolver: addresses come from the config or the getaddrinfo hook.
            "resolve_domains": false,
            "providers": providers,
            "sidecar_cgroups": ["pod-meshed/istio-proxy"],
            "enforce": enforce,
            "output": self.alerts,
            "rescan_interval_ms": 500,
            "metrics_listen": self.metrics.to_string(),
            "tls_capture": tls,
        });
        let path = self.dir.join("probe.json");
        fs::write(&path, config.to_string()).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-node-probe"))
            .arg("--config")
            .arg(&path)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the probe");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        stderr.read_line(&mut first).unwrap();
        if !first.contains("attached") {
            let _ = child.kill();
            panic!("the probe did not attach: {first}");
        }
        let log = Arc::clone(&self.probe_log);
        log.lock().unwrap().push_str(&first);
        thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        self.probe = Some(child);
    }

    /// Stops the probe with SIGTERM and returns whether it exited cleanly.
    fn stop_probe(&mut self) -> bool {
        let mut child = self.probe.take().expect("probe running");
        sh(&format!("kill -TERM {}", child.id()));
        let status = child.wait().unwrap();
        // Let the stderr reader catch the last line.
        thread::sleep(Duration::from_millis(100));
        status.success()
    }

    /// Runs the app stand-in and returns (pid, outcome).
    fn connect(&self, pod: Pod, uid_1337: bool, host: &str, timeout_s: u32) -> (u64, String) {
        self.connect_port(pod, uid_1337, host, 443, timeout_s)
    }

    fn connect_port(
        &self,
        pod: Pod,
        uid_1337: bool,
        host: &str,
        port: u16,
        timeout_s: u32,
    ) -> (u64, String) {
        let (cg, ns) = match pod {
            Pod::Meshed => ("pod-meshed/app", self.ns('m')),
            Pod::Plain => ("pod-plain/app", self.ns('u')),
        };
        let args = format!(
            "{} {host} {port} {timeout_s}",
            self.dir.join("client.py").display()
        );
        let out = self
            .spawn_in(Some(cg), &ns, uid_1337, &args)
            .wait_with_output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut words = text.split_whitespace();
        let pid = words
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("client said {text:?}"));
        (pid, words.next().unwrap_or_default().to_owned())
    }

    fn scrape(&self) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.metrics).expect("metrics endpoint");
        s.write_all(b"GET /metrics HTTP/1.1\r\nhost: probe\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    }

    /// A provider speaking TLS on 198.18.0.10:4443 with a throwaway certificate; returns the
    /// CA file clients trust.
    fn start_tls_provider(&mut self) -> PathBuf {
        let (cert, key) = (self.dir.join("cert.pem"), self.dir.join("key.pem"));
        sh(&format!(
            "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=api.openai.com \
             -addext subjectAltName=DNS:api.openai.com -keyout {} -out {} 2>/dev/null \
             && chmod 644 {} {}",
            key.display(),
            cert.display(),
            key.display(),
            cert.display()
        ));
        let server = self.spawn_in(
            None,
            &self.ns('p'),
            false,
            &format!(
                "{} 198.18.0.10:4443 {} {}",
                self.dir.join("tls_server.py").display(),
                cert.display(),
                key.display()
            ),
        );
        self.wait_ready(server);
        cert
    }

    /// Runs the HTTPS client in the plain pod (`watched`) or outside the watched tree.
    fn https(&self, watched: bool, ca: &Path) -> (u64, String) {
        let cgroup = watched.then_some("pod-plain/app");
        let args = format!(
            "{} api.openai.com 4443 {}",
            self.dir.join("tls_client.py").display(),
            ca.display()
        );
        let out = self
            .spawn_in(cgroup, &self.ns('u'), false, &args)
            .wait_with_output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut words = text.split_whitespace();
        let pid = words
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("https client said {text:?}"));
        (pid, words.next().unwrap_or_default().to_owned())
    }

    fn alerts(&self) -> Vec<Value> {
        fs::read_to_string(&self.alerts)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("every output line is JSON"))
            .collect()
    }

    /// Waits for the first alert matching `pred`.
    fn wait_alert(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(a) = self.alerts().into_iter().find(&pred) {
                return a;
            }
            assert!(
                Instant::now() < deadline,
                "no alert for {what}; got {:#?}\nprobe log:\n{}",
                self.alerts(),
                self.probe_log.lock().unwrap()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn alert_for(&self, pid: u64) -> Value {
        self.wait_alert(&format!("pid {pid}"), |a| a["process"]["pid"] == pid)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut p) = self.probe.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for which in ['m', 'u', 'p'] {
            let ns = self.ns(which);
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
            let _ = fs::remove_dir_all(format!("/etc/netns/{ns}"));
        }
        for sub in [
            "pod-meshed/app",
            "pod-meshed/istio-proxy",
            "pod-plain/app",
            "pod-meshed",
            "pod-plain",
            "",
        ] {
            let _ = fs::remove_dir(self.cgroup.join(sub));
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn verdict(a: &Value) -> (&str, &str) {
    (
        a["sluice"]["verdict"].as_str().unwrap_or_default(),
        a["sluice"]["reason"].as_str().unwrap_or_default(),
    )
}

#[test]
#[ignore = "needs root; run by `make test-probe`"]
fn meshed_app_goes_through_the_sidecar() {
    let mut lab = Lab::new();
    lab.start_probe(false);

    let (pid, outcome) = lab.connect(Pod::Meshed, false, "api.openai.com", 3);
    assert_eq!(outcome, "connected");
    let app = lab.alert_for(pid);
    assert_eq!(verdict(&app), ("meshed", "redirected-to-sidecar"));
    assert_eq!(app["event"]["kind"], "event");
    assert_eq!(app["destination"]["ip"], "198.18.0.10");
    assert_eq!(app["sluice"]["provider"], "openai");
    assert_eq!(app["sluice"]["nat_destination"]["port"], 15001);
    assert!(app["sluice"]["cgroup"]["path"]
        .as_str()
        .unwrap()
        .ends_with("pod-meshed/app"));

    // The sidecar stand-in then opened its own upstream connection to the provider.
    let upstream = lab.wait_alert("the sidecar's upstream", |a| {
        a["sluice"]["reason"] == "sidecar-cgroup"
    });
    assert_eq!(verdict(&upstream), ("meshed", "sidecar-cgroup"));
    assert_eq!(upstream["user"]["id"], "1337");
    assert!(lab.stop_probe(), "the probe exits 0 on SIGTERM");
    assert!(lab.probe_log.lock().unwrap().contains("detached"));
}

#[test]
#[ignore = "needs root; run by `make test-probe`"]
fn app_in_a_pod_without_sidecar_is_bypass() {
    let mut lab = Lab::new();
    lab.start_probe(false);
    let (pid, outcome) = lab.connect(Pod::Plain, false, "api.openai.com", 3);
    assert_eq!(outcome, "connected", "report-only mode never blocks");
    let a = lab.alert_for(pid);
    assert_eq!(verdict(&a), ("bypass", "no-sidecar-in-pod"));
    assert_eq!(a["event"]["kind"], "alert");
    assert_eq!(a["sluice"]["enforced"], false);
    assert_eq!(a["destination"]["port"], 443);
    assert_eq!(a["network"]["type"], "ipv4");

    let metrics = lab.scrape();
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains(
            "sluice_probe_connections_total{verdict=\"bypass\",provider=\"openai\",blocked=\"false\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_probe_events_lost_total 0"),
        "{metrics}"
    );
}

#[test]
#[ignore = "needs root; run by `make test-probe`"]
fn uid_1337_app_in_a_meshed_pod_is_still_bypass() {
    // Istio's capture exempts uid 1337 (the proxy's uid); an app running as 1337 goes straight
    // out. Classifying by uid would call it the sidecar; the probe looks at the cgroup.
    let mut lab = Lab::new();
    lab.start_probe(false);
    let (pid, outcome) = lab.connect(Pod::Meshed, true, "api.openai.com", 3);
    assert_eq!(outcome, "connected");
    let a = lab.alert_for(pid);
    assert_eq!(verdict(&a), ("bypass", "direct-egress"));
    assert_eq!(a["user"]["id"], "1337");
    assert_eq!(a["sluice"]["nat_destination"]["ip"], "198.18.0.10");
    // The README's example alert comes from here (`-- --nocapture`).
    println!("{a:#}");
}

#[test]
#[ignore = "needs root; run by `make test-probe`"]
fn ipv6_connections_are_classified_too() {
    let mut lab = Lab::new();
    lab.start_probe(false);
    let (meshed, o1) = lab.connect(Pod::Meshed, false, "api.anthropic.com", 3);
    let (direct, o2) = lab.connect(Pod::Meshed, true, "api.anthropic.com", 3);
    let (plain, o3) = lab.connect(Pod::Plain, false, "api.anthropic.com", 3);
    assert_eq!(
        (o1.as_str(), o2.as_str(), o3.as_str()),
        ("connected", "connected", "connected")
    );
    let a = lab.alert_for(meshed);
    assert_eq!(verdict(&a), ("meshed", "redirected-to-sidecar"));
    assert_eq!(a["network"]["type"], "ipv6");
    assert_eq!(a["destination"]["ip"], "fd00:5:1::10");
    assert_eq!(a["sluice"]["nat_destination"]["ip"], "::1");
    assert_eq!(verdict(&lab.alert_for(direct)), ("bypass", "direct-egress"));
    let p = lab.alert_for(plain);
    assert_eq!(verdict(&p), ("bypass", "no-sidecar-in-pod"));
    assert_eq!(p["sluice"]["provider"], "anthropic");
}

#[test]
#[ignore = "needs root; run by `make test-probe`"]
fn other_destinations_are_not_reported() {
    let mut lab = Lab::new();
    lab.start_probe(false);
    let (quiet, outcome) = lab.connect(Pod::Plain, false, "internal.example.test", 3);
    assert_eq!(outcome, "connected");
    // Events arrive in order per CPU; a later provider connection's alert bounds the wait.
    let (marker, _) = lab.connect(Pod::Plain, false, "api.openai.com", 3);
    lab.alert_for(marker);
    assert!(
        lab.alerts().iter().all(|a| a["process"]["pid"] != quiet),
        "a non-provider connection was reported"
    );
}

#[test]
#[ignore = "needs root; run by `make test-probe`"]
fn enforce_refuses_bypass_and_keeps_the_mesh_open() {
    let mut lab = Lab::new();
    lab.start_probe(true);

    // Decided at connect(): the pod has no sidecar, so connect() fails with EPERM.
    let (plain, outcome) = lab.connect(Pod::Plain, false, "api.openai.com", 3);
    assert_eq!(outcome, "eperm");
    let a = lab.alert_for(plain);
    assert_eq!(verdict(&a), ("bypass", "no-sidecar-in-pod"));
    assert_eq!(a["sluice"]["enforced"], true);
    assert_eq!(a["event"]["outcome"], "failure");

    // Decided after NAT: the SYN is dropped at egress, so connect() times out.
    let (direct, outcome) = lab.connect(Pod::Meshed, true, "api.openai.com", 2);
    assert_eq!(outcome, "timeout");
    let d = lab.alert_for(direct);
    assert_eq!(verdict(&d), ("bypass", "direct-egress"));
    assert_eq!(d["sluice"]["enforced"], true);

    // Through the sidecar still works.
    let (meshed, outcome) = lab.connect(Pod::Meshed, false, "api.openai.com", 3);
    assert_eq!(outcome, "connected");
    assert_eq!(
        verdict(&lab.alert_for(meshed)),
        ("meshed", "redirected-to-sidecar")
    );

    // Clean detach: once the probe has stopped, nothing is refused any more.
    assert!(lab.stop_probe());
    let (_, outcome) = lab.connect(Pod::Plain, false, "api.openai.com", 3);
    assert_eq!(
        outcome, "connected",
        "programs still attached after the probe exited"
    );
}

#[test]
#[ignore = "needs root; run by `make test-probe`"]
fn getaddrinfo_hook_learns_provider_addresses_in_the_kernel() {
    // No addresses configured: the kernel learns them when the app resolves the name (here
    // from the pod's private /etc/hosts), before its connect().
    let mut lab = Lab::new();
    lab.start_probe_with(
        false,
        false,
        serde_json::json!([
            {"name": "openai", "domains": ["api.openai.com"]},
            {"name": "anthropic", "domains": ["API.Anthropic.com"]},
        ]),
    );
    assert!(
        lab.probe_log.lock().unwrap().contains("hooked in 1 libc"),
        "getaddrinfo hook not attached: {}",
        lab.probe_log.lock().unwrap()
    );
    let (before, outcome) = lab.connect(Pod::Plain, false, "198.18.0.10", 3);
    assert_eq!(outcome, "connected");
    let (v4, _) = lab.connect(Pod::Plain, false, "api.openai.com", 3);
    let a = lab.alert_for(v4);
    assert_eq!(verdict(&a), ("bypass", "no-sidecar-in-pod"));
    assert_eq!(a["sluice"]["provider"], "openai");
    let (v6, _) = lab.connect(Pod::Plain, false, "api.anthropic.com", 3);
    let b = lab.alert_for(v6);
    assert_eq!(b["sluice"]["provider"], "anthropic");
    assert_eq!(b["destination"]["ip"], "fd00:5:1::10");
    assert!(
        lab.alerts().iter().all(|a| a["process"]["pid"] != before),
        "an address nobody had resolved as a provider name was reported"
    );
}

#[test]
#[ignore = "needs root; run by `make test-probe`"]
fn nat_to_somewhere_else_is_unknown() {
    // Some other NAT (not the sidecar's capture) sends the provider connection elsewhere: the
    // probe cannot vouch for it either way.
    let mut lab = Lab::new();
    lab.start_probe(true);
    let (pid, outcome) = lab.connect_port(Pod::Meshed, false, "api.openai.com", 8443, 3);
    assert_eq!(outcome, "connected", "unknown is reported, never blocked");
    let a = lab.alert_for(pid);
    assert_eq!(verdict(&a), ("unknown", "rewritten-elsewhere"));
    assert_eq!(a["event"]["kind"], "alert");
    assert_eq!(a["destination"]["port"], 8443);
    assert_eq!(a["sluice"]["nat_destination"]["ip"], "198.18.0.20");
    assert_eq!(a["sluice"]["enforced"], false);
}

#[test]
#[ignore = "needs root; run by `make test-probe`"]
fn tls_request_lines_keep_no_credentials_and_stay_in_the_watched_tree() {
    let mut lab = Lab::new();
    let ca = lab.start_tls_provider();
    lab.start_probe_with(
        false,
        true,
        serde_json::json!([{"name": "openai", "addresses": ["198.18.0.10"]}]),
    );
    assert!(
        !lab.probe_log
            .lock()
            .unwrap()
            .contains("SSL_write in 0 libssl"),
        "SSL_write hook not attached: {}",
        lab.probe_log.lock().unwrap()
    );
    // Outside the watched cgroup first: the kernel must not report it.
    let (outside, status) = lab.https(false, &ca);
    assert_eq!(status, "HTTP/1.1_200_OK");
    let (inside, status) = lab.https(true, &ca);
    assert_eq!(status, "HTTP/1.1_200_OK");

    let tls = lab.wait_alert("the TLS request line", |a| {
        a["event"]["action"] == "tls-request" && a["process"]["pid"] == inside
    });
    assert_eq!(tls["http"]["request"]["method"], "POST");
    assert_eq!(tls["url"]["path"], "/v1/chat/completions");
    assert_eq!(tls["sluice"]["tls"]["query_dropped"], true);
    assert!(tls["url"].get("query").is_none());
    // The same process's connection is classified as usual.
    assert_eq!(
        verdict(&lab.alert_for(inside)),
        ("bypass", "no-sidecar-in-pod")
    );

    let all = fs::read_to_string(&lab.alerts).unwrap();
    assert!(
        !all.contains("SECRET"),
        "a credential left the kernel:\n{all}"
    );
    assert!(
        lab.alerts().iter().all(|a| a["process"]["pid"] != outside),
        "a process outside the watched cgroup was reported"
    );
}
