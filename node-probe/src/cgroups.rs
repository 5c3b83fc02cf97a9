//! The watched cgroup tree: which cgroups are sidecars, which pods have one, and what a cgroup
//! id means (path, container, pod) for alerts.
//!
//! A cgroup's id is its directory's inode number on cgroup v2, which is what the kernel side
//! gets from `bpf_get_current_cgroup_id`. A "pod" is the parent directory of a container's
//! cgroup, as in Kubernetes' layout, so an app and the sidecar of the same pod are siblings.

use std::{
    collections::{HashMap, HashSet},
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::Instant,
};

/// What one scan of the tree found.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When the scan ran.
    pub taken: Instant,
    /// Every cgroup below (and including) the root, by id.
    pub paths: HashMap<u64, PathBuf>,
    /// Sidecar cgroups.
    pub sidecars: HashSet<u64>,
    /// For every cgroup: does its pod (parent) have a sidecar?
    pub pod_has_sidecar: HashMap<u64, bool>,
}

impl Snapshot {
    pub fn age(&self) -> std::time::Duration {
        self.taken.elapsed()
    }
}

/// Rules that make a cgroup a sidecar.
#[derive(Debug, Clone, Default)]
pub struct SidecarRules {
    /// Absolute cgroup directories.
    pub cgroups: Vec<PathBuf>,
    /// Process names (`/proc/PID/comm`).
    pub comms: Vec<String>,
}

/// Walks `root` (bounded depth: Kubernetes nests about six levels).
pub fn scan(root: &Path, rules: &SidecarRules) -> std::io::Result<Snapshot> {
    const MAX_DEPTH: usize = 12;
    let mut snap = Snapshot {
        taken: Instant::now(),
        paths: HashMap::new(),
        sidecars: HashSet::new(),
        pod_has_sidecar: HashMap::new(),
    };
    let mut parent_of: HashMap<u64, u64> = HashMap::new();
    let root_id = fs::metadata(root)?.ino();
    snap.paths.insert(root_id, root.to_owned());
    let mut stack = vec![(root.to_owned(), root_id, 0usize)];
    let explicit: HashSet<&Path> = rules.cgroups.iter().map(PathBuf::as_path).collect();

    while let Some((dir, id, depth)) = stack.pop() {
        if explicit.contains(dir.as_path()) || runs_sidecar(&dir, &rules.comms) {
            snap.sidecars.insert(id);
        }
        if depth >= MAX_DEPTH {
            continue;
        }
        // A cgroup can vanish while we walk: skip it rather than fail the scan.
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_dir() {
                continue;
            }
            let child = entry.path();
            snap.paths.insert(meta.ino(), child.clone());
            parent_of.insert(meta.ino(), id);
            stack.push((child, meta.ino(), depth + 1));
        }
    }

    let pods_with_sidecar: HashSet<u64> = snap
        .sidecars
        .iter()
        .filter_map(|s| parent_of.get(s).copied())
        .collect();
    for &id in snap.paths.keys() {
        let pod = parent_of.get(&id).copied();
        let meshed = pod.is_some_and(|p| pods_with_sidecar.contains(&p))
            // A process placed directly in the pod cgroup shares the sidecar's pod too.
            || pods_with_sidecar.contains(&id);
        snap.pod_has_sidecar.insert(id, meshed);
    }
    Ok(snap)
}

fn runs_sidecar(dir: &Path, comms: &[String]) -> bool {
    if comms.is_empty() {
        return false;
    }
    let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) else {
        return false;
    };
    procs.lines().any(|pid| {
        fs::read_to_string(format!("/proc/{}/comm", pid.trim()))
            .is_ok_and(|c| comms.iter().any(|want| want == c.trim_end()))
    })
}

/// Container and pod named by a cgroup path in Kubernetes' layouts (cgroupfs and systemd
/// drivers, containerd, CRI-O, Docker).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workload {
    pub container_id: Option<String>,
    pub pod_uid: Option<String>,
}

pub fn workload(path: &Path) -> Workload {
    let mut w = Workload::default();
    for part in path.iter().filter_map(|p| p.to_str()) {
        let part = part.strip_suffix(".slice").unwrap_or(part);
        if let Some(idx) = part.rfind("pod") {
            let uid = &part[idx + 3..];
            if looks_like_uid(uid) {
                w.pod_uid = Some(uid.replace('_', "-"));
                continue;
            }
        }
        let scope = part.strip_suffix(".scope").unwrap_or(part);
        let id = ["cri-containerd-", "crio-", "docker-", "containerd-"]
            .iter()
            .find_map(|pre| scope.strip_prefix(pre))
            .unwrap_or(scope);
        if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            w.container_id = Some(id.to_owned());
        }
    }
    w
}

fn looks_like_uid(s: &str) -> bool {
    s.len() == 36
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_process_name_marks_its_cgroup_as_sidecar() {
        let tmp = std::env::temp_dir().join(format!("sluice-probe-comm-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(tmp.join("pod/proxy")).unwrap();
        fs::create_dir_all(tmp.join("pod/app")).unwrap();
        // A stand-in cgroup.procs listing this very process.
        fs::write(
            tmp.join("pod/proxy/cgroup.procs"),
            format!("{}\n", std::process::id()),
        )
        .unwrap();
        let me = fs::read_to_string("/proc/self/comm")
            .unwrap()
            .trim_end()
            .to_owned();
        let rules = SidecarRules {
            cgroups: vec![],
            comms: vec!["pilot-agent".to_owned(), me],
        };
        let snap = scan(&tmp, &rules).unwrap();
        let id = |p: &str| fs::metadata(tmp.join(p)).unwrap().ino();
        assert_eq!(
            snap.sidecars.iter().copied().collect::<Vec<_>>(),
            vec![id("pod/proxy")]
        );
        assert!(snap.pod_has_sidecar[&id("pod/app")]);
        fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn workload_from_kubernetes_paths() {
        let cases = [
            (
                format!("/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_0000_4000_8000_aaaaaaaaaaaa.slice/cri-containerd-{CID}.scope"),
                Some("1b2c3d4e-0000-4000-8000-aaaaaaaaaaaa"),
                Some(CID),
            ),
            (
                format!("/sys/fs/cgroup/kubepods/besteffort/pod1b2c3d4e-0000-4000-8000-aaaaaaaaaaaa/{CID}"),
                Some("1b2c3d4e-0000-4000-8000-aaaaaaaaaaaa"),
                Some(CID),
            ),
            ("/sys/fs/cgroup/system.slice/ssh.service".to_owned(), None, None),
        ];
        for (path, pod, cid) in cases {
            let w = workload(Path::new(&path));
            assert_eq!(w.pod_uid.as_deref(), pod, "{path}");
            assert_eq!(w.container_id.as_deref(), cid, "{path}");
        }
    }

    #[test]
    fn scan_marks_sidecar_siblings_as_meshed() {
        let tmp = std::env::temp_dir().join(format!("sluice-probe-scan-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        for d in ["pod-a/app", "pod-a/istio-proxy", "pod-b/app"] {
            fs::create_dir_all(tmp.join(d)).unwrap();
        }
        let rules = SidecarRules {
            cgroups: vec![tmp.join("pod-a/istio-proxy")],
            comms: vec![],
        };
        let snap = scan(&tmp, &rules).unwrap();
        let id = |p: &str| fs::metadata(tmp.join(p)).unwrap().ino();
        assert!(snap.sidecars.contains(&id("pod-a/istio-proxy")));
        assert_eq!(snap.sidecars.len(), 1);
        assert!(snap.pod_has_sidecar[&id("pod-a/app")]);
        assert!(snap.pod_has_sidecar[&id("pod-a")]);
        assert!(!snap.pod_has_sidecar[&id("pod-b/app")]);
        assert_eq!(snap.paths[&id("pod-b/app")], tmp.join("pod-b/app"));
        fs::remove_dir_all(&tmp).unwrap();
    }
}
