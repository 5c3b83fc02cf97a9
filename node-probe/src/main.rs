//! `sluice-node-probe [--config FILE] [--enforce] [--output FILE]`: watch the node's cgroup v2
//! tree for connections to AI providers that bypass the mesh. Needs root (CAP_BPF, CAP_NET_ADMIN
//! and CAP_SYS_ADMIN for cgroup attachment).

use std::{path::PathBuf, process::ExitCode};

use sluice_node_probe::config::{Config, Output};

const USAGE: &str =
    "usage: sluice-node-probe [--config FILE] [--enforce] [--output FILE|-] [--cgroup DIR]";

fn main() -> ExitCode {
    let cfg = match parse_args(std::env::args().skip(1)) {
        Ok(cfg) => cfg,
        Err(msg) => {
            eprintln!("sluice-node-probe: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice-node-probe: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(sluice_node_probe::run::run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice-node-probe: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Config, String> {
    let mut config_path = None;
    let mut enforce = false;
    let mut output = None;
    let mut cgroup = None;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--config" => config_path = Some(PathBuf::from(value("--config")?)),
            "--enforce" => enforce = true,
            "--output" => output = Some(value("--output")?),
            "--cgroup" => cgroup = Some(PathBuf::from(value("--cgroup")?)),
            "-h" | "--help" => return Err("help".to_owned()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let mut cfg = match config_path {
        Some(path) => Config::from_file(&path).map_err(|e| e.to_string())?,
        None => Config::from_json("{}").map_err(|e| e.to_string())?,
    };
    cfg.enforce |= enforce;
    if let Some(out) = output {
        cfg.output = if out == "-" {
            Output::Stdout
        } else {
            Output::File(out.into())
        };
    }
    if let Some(dir) = cgroup {
        cfg.cgroup_root = dir;
    }
    Ok(cfg)
}
