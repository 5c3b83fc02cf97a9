//! Probe configuration: a JSON file parsed once into typed values, with errors naming the field.
//!
//! Every field has a default, so `{}` is a valid configuration that watches the whole cgroup v2
//! tree, reports (never blocks), and knows the usual AI providers by domain.

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Json(#[from] serde_json::Error),
    #[error("`{field}`: {reason}")]
    Field { field: &'static str, reason: String },
}

/// One AI provider: the domains its API answers on and, optionally, fixed addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    pub name: String,
    /// Exact names, or patterns with `*` (for the resolver hooks; never resolved in userspace).
    pub domains: Vec<String>,
    pub addresses: Vec<IpAddr>,
}

/// Where alerts go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stdout,
    File(PathBuf),
}

/// The parsed configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// cgroup v2 directory the programs attach to; everything below it is watched.
    pub cgroup_root: PathBuf,
    pub providers: Vec<Provider>,
    /// Resolve provider domains with the node's resolver (a complement to the in-kernel hooks).
    pub resolve_domains: bool,
    /// libc files whose `getaddrinfo` is hooked; empty = every usual path that exists.
    pub libc_paths: Vec<PathBuf>,
    /// Learn provider addresses from `getaddrinfo` in the kernel.
    pub resolver_hook: bool,
    /// Report the (masked) request line applications under the root write into OpenSSL.
    pub tls_capture: bool,
    /// libssl files to hook; empty = every usual path that exists.
    pub libssl_paths: Vec<PathBuf>,
    /// Cgroups (absolute, or relative to `cgroup_root`) that are sidecars whatever runs there.
    pub sidecar_cgroups: Vec<PathBuf>,
    /// Process names that mark their cgroup as a sidecar (Istio's `pilot-agent` and `envoy`).
    pub sidecar_comms: Vec<String>,
    /// Addresses inside the mesh: capture listeners and egress gateways (port 0 = any port).
    pub mesh_destinations: Vec<SocketAddr>,
    /// Refuse bypass connections instead of only reporting them.
    pub enforce: bool,
    pub output: Output,
    /// Serve Prometheus metrics on this address (`GET /metrics`).
    pub metrics_listen: Option<SocketAddr>,
    /// How often the cgroup tree is rescanned for sidecars and pods.
    pub rescan_interval: Duration,
    /// How often provider domains are resolved again.
    pub resolve_interval: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: String,
    #[serde(default)]
    domains: Vec<String>,
    #[serde(default)]
    addresses: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    cgroup_root: Option<PathBuf>,
    providers: Option<Vec<RawProvider>>,
    /// Appended to `providers` (or to the defaults), to add addresses without restating domains.
    #[serde(default)]
    extra_providers: Vec<RawProvider>,
    resolve_domains: Option<bool>,
    #[serde(default)]
    libc_paths: Vec<PathBuf>,
    resolver_hook: Option<bool>,
    #[serde(default)]
    tls_capture: bool,
    #[serde(default)]
    libssl_paths: Vec<PathBuf>,
    #[serde(default)]
    sidecar_cgroups: Vec<PathBuf>,
    sidecar_comms: Option<Vec<String>>,
    mesh_destinations: Option<Vec<String>>,
    #[serde(default)]
    egress_gateways: Vec<String>,
    #[serde(default)]
    enforce: bool,
    output: Option<String>,
    metrics_listen: Option<String>,
    rescan_interval_ms: Option<u64>,
    resolve_interval_s: Option<u64>,
}

/// The providers known without configuration, by the domains their APIs use.
pub fn default_providers() -> Vec<Provider> {
    let p = |name: &str, domains: &[&str]| Provider {
        name: name.to_owned(),
        domains: domains.iter().map(|d| (*d).to_owned()).collect(),
        addresses: Vec::new(),
    };
    vec![
        p("openai", &["api.openai.com"]),
        p("azure-openai", &["*.openai.azure.com"]),
        p("anthropic", &["api.anthropic.com"]),
        p("google-gemini", &["generativelanguage.googleapis.com"]),
        p("cohere", &["api.cohere.com", "api.cohere.ai"]),
        p("mistral", &["api.mistral.ai"]),
        p("aws-bedrock", &["bedrock-runtime.*.amazonaws.com"]),
        p("groq", &["api.groq.com"]),
        p("deepseek", &["api.deepseek.com"]),
        p("together", &["api.together.xyz"]),
    ]
}

/// Istio's outbound capture listener, where its iptables rules redirect application traffic.
pub const ISTIO_OUTBOUND_PORT: u16 = 15001;

impl Config {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json(&text)
    }

    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = serde_json::from_str(text)?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: RawConfig) -> Result<Self, ConfigError> {
        let mut providers = match raw.providers {
            Some(list) => list
                .into_iter()
                .map(parse_provider)
                .collect::<Result<Vec<_>, _>>()?,
            None => default_providers(),
        };
        for extra in raw.extra_providers {
            let extra = parse_provider(extra)?;
            match providers.iter_mut().find(|p| p.name == extra.name) {
                Some(p) => {
                    p.domains.extend(extra.domains);
                    p.addresses.extend(extra.addresses);
                }
                None => providers.push(extra),
            }
        }
        if providers.len() > u32::MAX as usize {
            return Err(field("providers", "too many providers"));
        }

        let mut mesh_destinations = match raw.mesh_destinations {
            Some(list) => list
                .iter()
                .map(|s| parse_socket_addr("mesh_destinations", s))
                .collect::<Result<Vec<_>, _>>()?,
            None => vec![
                SocketAddr::from(([127, 0, 0, 1], ISTIO_OUTBOUND_PORT)),
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, ISTIO_OUTBOUND_PORT)),
            ],
        };
        for gw in &raw.egress_gateways {
            mesh_destinations.push(parse_socket_addr("egress_gateways", gw)?);
        }

        let output = match raw.output.as_deref() {
            None | Some("-") | Some("stdout") => Output::Stdout,
            Some("") => return Err(field("output", "empty path")),
            Some(path) => Output::File(PathBuf::from(path)),
        };
        let metrics_listen = raw
            .metrics_listen
            .map(|s| {
                s.parse::<SocketAddr>()
                    .map_err(|e| field("metrics_listen", format!("{s:?}: {e}")))
            })
            .transpose()?;
        let rescan_interval = Duration::from_millis(raw.rescan_interval_ms.unwrap_or(2000));
        if rescan_interval.is_zero() {
            return Err(field("rescan_interval_ms", "must be positive"));
        }
        let resolve_interval = Duration::from_secs(raw.resolve_interval_s.unwrap_or(60));
        if resolve_interval.is_zero() {
            return Err(field("resolve_interval_s", "must be positive"));
        }

        Ok(Self {
            cgroup_root: raw.cgroup_root.unwrap_or_else(default_cgroup_root),
            providers,
            resolve_domains: raw.resolve_domains.unwrap_or(true),
            libc_paths: raw.libc_paths,
            resolver_hook: raw.resolver_hook.unwrap_or(true),
            tls_capture: raw.tls_capture,
            libssl_paths: raw.libssl_paths,
            sidecar_cgroups: raw.sidecar_cgroups,
            sidecar_comms: raw
                .sidecar_comms
                .unwrap_or_else(|| vec!["pilot-agent".to_owned(), "envoy".to_owned()]),
            mesh_destinations,
            enforce: raw.enforce,
            output,
            metrics_listen,
            rescan_interval,
            resolve_interval,
        })
    }
}

/// The cgroup v2 mount: `/sys/fs/cgroup/unified` on hybrid hosts, else `/sys/fs/cgroup`.
pub fn default_cgroup_root() -> PathBuf {
    let hybrid = PathBuf::from("/sys/fs/cgroup/unified");
    if hybrid.join("cgroup.procs").exists() {
        hybrid
    } else {
        PathBuf::from("/sys/fs/cgroup")
    }
}

fn parse_provider(raw: RawProvider) -> Result<Provider, ConfigError> {
    if raw.name.is_empty() {
        return Err(field("providers", "a provider has an empty name"));
    }
    let addresses = raw
        .addresses
        .iter()
        .map(|a| {
            a.parse::<IpAddr>()
                .map_err(|e| field("providers", format!("{}: address {a:?}: {e}", raw.name)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(d) = raw
        .domains
        .iter()
        .find(|d| d.trim_matches(['*', '.']).is_empty())
    {
        return Err(field("providers", format!("{}: domain {d:?}", raw.name)));
    }
    Ok(Provider {
        name: raw.name,
        domains: raw.domains,
        addresses,
    })
}

/// Accepts `ip:port`, `[v6]:port`, or a bare address meaning every port.
fn parse_socket_addr(name: &'static str, s: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(sa);
    }
    s.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 0))
        .map_err(|e| field(name, format!("{s:?}: {e}")))
}

fn field(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        field,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_uses_defaults() {
        let c = Config::from_json("{}").unwrap();
        assert!(!c.enforce);
        assert!(c.resolve_domains);
        assert_eq!(c.output, Output::Stdout);
        assert!(c.providers.iter().any(|p| p.name == "openai"));
        assert_eq!(c.mesh_destinations.len(), 2);
    }

    #[test]
    fn extra_providers_merge_by_name() {
        let c = Config::from_json(
            r#"{"extra_providers":[{"name":"openai","addresses":["192.0.2.1","2001:db8::1"]}]}"#,
        )
        .unwrap();
        let openai = c.providers.iter().find(|p| p.name == "openai").unwrap();
        assert_eq!(openai.addresses.len(), 2);
        assert_eq!(openai.domains, vec!["api.openai.com".to_owned()]);
    }

    #[test]
    fn gateways_accept_bare_addresses() {
        let c =
            Config::from_json(r#"{"egress_gateways":["10.1.2.3","[2001:db8::5]:443"]}"#).unwrap();
        assert!(c.mesh_destinations.contains(&"10.1.2.3:0".parse().unwrap()));
        assert!(c
            .mesh_destinations
            .contains(&"[2001:db8::5]:443".parse().unwrap()));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{"metrics_listen":"nope"}"#, "metrics_listen"),
            (
                r#"{"providers":[{"name":"x","addresses":["1.2.3"]}]}"#,
                "providers",
            ),
            (r#"{"rescan_interval_ms":0}"#, "rescan_interval_ms"),
            (r#"{"output":""}"#, "output"),
        ];
        for (json, name) in cases {
            let err = Config::from_json(json).unwrap_err().to_string();
            assert!(err.contains(name), "{json}: {err}");
        }
        assert!(Config::from_json(r#"{"enforse":true}"#).is_err());
    }

    #[test]
    fn daemonset_config_parses() {
        let manifest = include_str!("../../istio/node-probe/daemonset.yaml");
        let start = manifest
            .find("config.json: |")
            .expect("config in the manifest");
        let json: String = manifest[start..]
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("    "))
            .collect::<Vec<_>>()
            .join("\n");
        let c = Config::from_json(&json).unwrap();
        assert!(!c.enforce, "the shipped manifest only reports");
        assert_eq!(c.cgroup_root, PathBuf::from("/host/sys/fs/cgroup"));
        assert!(c.metrics_listen.is_some());
    }
}
