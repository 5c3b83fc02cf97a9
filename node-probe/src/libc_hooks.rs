//! Finds the shared libraries processes really use — the node's, and each container's through
//! `/proc/PID/root` — and hooks them once per file (by device and inode), so a file shared by
//! many containers costs one attachment: libc for `getaddrinfo`, libssl for `SSL_write`.

use std::{
    collections::HashSet,
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use crate::{cgroups::Snapshot, probe::Probe};

/// Where distributions keep libc (glibc and musl); the hooks attach to each one that exists.
pub const LIBC_CANDIDATES: [&str; 6] = [
    "/lib/x86_64-linux-gnu/libc.so.6",
    "/usr/lib/x86_64-linux-gnu/libc.so.6",
    "/lib64/libc.so.6",
    "/usr/lib64/libc.so.6",
    "/lib/aarch64-linux-gnu/libc.so.6",
    "/lib/ld-musl-x86_64.so.1",
];

/// Where distributions keep OpenSSL 3's libssl.
pub const LIBSSL_CANDIDATES: [&str; 4] = [
    "/lib/x86_64-linux-gnu/libssl.so.3",
    "/usr/lib/x86_64-linux-gnu/libssl.so.3",
    "/lib64/libssl.so.3",
    "/usr/lib64/libssl.so.3",
];

/// Which programs a library gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    /// libc `getaddrinfo`.
    Resolver,
    /// OpenSSL `SSL_write` / `SSL_write_ex`.
    Tls,
}

/// The files hooked so far.
pub struct LibHooks {
    kind: HookKind,
    candidates: Vec<PathBuf>,
    /// (device, inode) of every file tried, hooked or not, so failures are not retried.
    seen: HashSet<(u64, u64)>,
    hooked: usize,
}

impl LibHooks {
    /// `paths` overrides the usual locations when not empty.
    pub fn new(kind: HookKind, paths: &[PathBuf]) -> Self {
        let defaults: &[&str] = match kind {
            HookKind::Resolver => &LIBC_CANDIDATES,
            HookKind::Tls => &LIBSSL_CANDIDATES,
        };
        let candidates = if paths.is_empty() {
            defaults.iter().map(PathBuf::from).collect()
        } else {
            paths.to_vec()
        };
        Self {
            kind,
            candidates,
            seen: HashSet::new(),
            hooked: 0,
        }
    }

    pub fn hooked(&self) -> usize {
        self.hooked
    }

    /// Hooks the node's own libc files.
    pub fn hook_host(&mut self, probe: &mut Probe) {
        for path in self.candidates.clone() {
            self.hook(probe, &path);
        }
    }

    /// Hooks the libc of each watched cgroup's first process, seen through its mount namespace.
    pub fn hook_containers(&mut self, probe: &mut Probe, snap: &Snapshot) {
        for dir in snap.paths.values() {
            let Some(pid) = fs::read_to_string(dir.join("cgroup.procs"))
                .ok()
                .and_then(|p| p.lines().next().map(str::to_owned))
            else {
                continue;
            };
            for candidate in self.candidates.clone() {
                let relative = candidate.strip_prefix("/").unwrap_or(&candidate);
                self.hook(
                    probe,
                    &Path::new("/proc").join(&pid).join("root").join(relative),
                );
            }
        }
    }

    fn hook(&mut self, probe: &mut Probe, path: &Path) {
        let Ok(meta) = fs::metadata(path) else { return };
        if !self.seen.insert((meta.dev(), meta.ino())) {
            return;
        }
        let result = match self.kind {
            HookKind::Resolver => probe.attach_resolver(path),
            HookKind::Tls => probe.attach_tls(path),
        };
        match result {
            Ok(()) => self.hooked += 1,
            Err(e) => eprintln!(
                "sluice-node-probe: {:?} hook on {}: {e}",
                self.kind,
                path.display()
            ),
        }
    }
}
