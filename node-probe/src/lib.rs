//! Sluice node probe: eBPF that sees connections to AI providers that bypass the mesh sidecar,
//! reports them as ECS JSON lines and Prometheus metrics, and can refuse them.
//!
//! `config` parses the configuration, `cgroups` finds sidecars and pods, `probe` loads and
//! attaches the kernel programs, `libc_hooks` finds the resolvers to hook, `alert` formats events, `metrics` counts them, and `run`
//! ties them together until a signal arrives.

pub mod alert;
pub mod cgroups;
pub mod config;
pub mod libc_hooks;
pub mod metrics;
pub mod probe;
pub mod run;
