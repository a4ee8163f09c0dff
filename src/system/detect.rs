//! `detect`: gathers the facts about the system dnsmasq (binary, unit over D-Bus, effective
//! configuration, port holders) and decides the mode. The JSON form is a stable schema
//! (`schema: 1`, documented in README.md).

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use super::decide::{decide, Conflict, Facts, Mode, UnitFacts};
use super::effective::EffectiveConfig;
use super::ports::PortHolder;
use super::version::DnsmasqVersion;
use crate::config::Config;
use crate::host::Host;
use crate::systemd::Systemd;
use crate::timing::phase;

/// The JSON schema version of [`Detection`].
pub const SCHEMA: u32 = 1;

/// Everything `detect` found, and the decision.
#[derive(Debug, Clone, Serialize)]
pub struct Detection {
    /// Schema version.
    pub schema: u32,
    /// The dnsmasq binary.
    pub dnsmasq: BinaryReport,
    /// The systemd unit.
    pub systemd: UnitFacts,
    /// The configuration the unit starts dnsmasq with.
    pub config: EffectiveConfig,
    /// Who holds the DHCP and DNS ports.
    pub ports: Ports,
    /// Bridges of the networks virtmasq serves (as far as libvirt could be read).
    pub managed_bridges: Vec<String>,
    /// Problems found.
    pub conflicts: Vec<Conflict>,
    /// The mode and why.
    pub decision: DecisionReport,
    /// The binary's version as read (for system mode's view of the host, not the schema).
    #[serde(skip)]
    pub version: Option<DnsmasqVersion>,
}

/// The binary.
#[derive(Debug, Clone, Serialize)]
pub struct BinaryReport {
    /// Whether it exists and answers `--version`.
    pub installed: bool,
    /// Its path.
    pub path: PathBuf,
    /// Its version, e.g. "2.90".
    pub version: Option<String>,
    /// Compile-time options.
    pub options: Vec<String>,
}

/// Port holders.
#[derive(Debug, Clone, Serialize)]
pub struct Ports {
    /// udp/67 (DHCP).
    pub udp67: Vec<PortHolder>,
    /// udp/53 (DNS).
    pub udp53: Vec<PortHolder>,
}

/// The decision.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionReport {
    /// `system` or `private`.
    pub mode: Mode,
    /// Why.
    pub reasons: Vec<String>,
}

/// Gathers the facts on this machine (`host` is [`Host::real`] except in tests) and decides. Returns the
/// systemd client too when systemd answered, for callers that go on to use it.
pub async fn detect(
    cfg: &Config,
    host: &Host,
    managed_bridges: Vec<String>,
) -> (Detection, Option<Systemd>) {
    // `dnsmasq --version` runs on the blocking pool while systemd is asked about the unit.
    let binary = cfg.paths.dnsmasq.clone();
    let version = tokio::task::spawn_blocking(move || {
        let _p = phase("detect-version");
        DnsmasqVersion::of(&binary)
    });
    let (unit, systemd) = {
        let _p = phase("detect-unit");
        unit_facts(&cfg.system.unit).await
    };
    let config = {
        let _p = phase("detect-config");
        EffectiveConfig::read(&host.root)
    };
    let version = version.await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "reading dnsmasq's version failed");
        None
    });
    let (udp67, udp53) = {
        let _p = phase("detect-ports");
        let mut both = host.udp_holders_of(&[67, 53]).into_iter();
        (
            both.next().unwrap_or_default(),
            both.next().unwrap_or_default(),
        )
    };
    let facts = Facts {
        binary: version.clone().map(|v| (cfg.paths.dnsmasq.clone(), v)),
        unit: unit.clone(),
        config: config.clone(),
        conf_dir: cfg.paths.conf_dir.clone(),
        udp67: udp67.clone(),
        managed_bridges: managed_bridges.clone(),
        forced: cfg.mode.forced(),
    };
    let decision = decide(&facts);
    let detection = Detection {
        schema: SCHEMA,
        dnsmasq: BinaryReport {
            installed: version.is_some(),
            path: cfg.paths.dnsmasq.clone(),
            version: version.as_ref().map(|v| v.version.clone()),
            options: version.clone().map(|v| v.options).unwrap_or_default(),
        },
        systemd: unit,
        config,
        ports: Ports { udp67, udp53 },
        managed_bridges,
        conflicts: decision.conflicts,
        decision: DecisionReport {
            mode: decision.mode,
            reasons: decision.reasons,
        },
        version,
    };
    (detection, systemd)
}

async fn unit_facts(unit: &str) -> (UnitFacts, Option<Systemd>) {
    let mut facts = UnitFacts {
        unit: unit.to_owned(),
        ..UnitFacts::default()
    };
    let systemd = match Systemd::system().await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "systemd not reachable");
            return (facts, None);
        }
    };
    facts.systemd_running = true;
    match systemd.unit_status(unit).await {
        Ok(st) => {
            facts.exists = st.exists;
            facts.unit_file_state = st.unit_file_state.unwrap_or_default();
            facts.active_state = st.active_state;
            facts.main_pid = st.main_pid.unwrap_or(0);
        }
        Err(e) => tracing::warn!(error = %e, unit, "unit status"),
    }
    (facts, Some(systemd))
}

impl Detection {
    /// The report for people.
    pub fn to_text(&self) -> String {
        let mut o = self.binary_and_unit_text();
        o.push_str(&self.config_text());
        o.push_str(&self.ports_text());
        for c in &self.conflicts {
            let _ = writeln!(o, "conflict:  [{}] {}", c.code, c.message);
        }
        let mode = match self.decision.mode {
            Mode::System => "system",
            Mode::Private => "private",
        };
        let _ = writeln!(o, "decision:  {mode} mode");
        for r in &self.decision.reasons {
            let _ = writeln!(o, "           - {r}");
        }
        o
    }

    fn binary_and_unit_text(&self) -> String {
        let mut o = String::new();
        let d = &self.dnsmasq;
        match &d.version {
            Some(v) => {
                let _ = writeln!(
                    o,
                    "dnsmasq:   {} {v} ({})",
                    d.path.display(),
                    d.options.join(" ")
                );
            }
            None => {
                let _ = writeln!(o, "dnsmasq:   not installed at {}", d.path.display());
            }
        }
        let u = &self.systemd;
        if !u.systemd_running {
            let _ = writeln!(o, "unit:      systemd is not running");
        } else if !u.exists {
            let _ = writeln!(o, "unit:      {} does not exist", u.unit);
        } else {
            let pid = if u.main_pid > 0 {
                format!(", pid {}", u.main_pid)
            } else {
                String::new()
            };
            let _ = writeln!(
                o,
                "unit:      {} {}, {}{pid}",
                u.unit, u.unit_file_state, u.active_state
            );
        }
        o
    }

    fn config_text(&self) -> String {
        let mut o = String::new();
        let c = &self.config;
        let list = |v: &[String]| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                v.join(", ")
            }
        };
        let _ = writeln!(
            o,
            "config:    {:?} flavor, started with: {}",
            c.flavor,
            c.args.join(" ")
        );
        for f in &c.files {
            let _ = writeln!(o, "           reads {}", f.display());
        }
        for dir in &c.conf_dirs {
            let _ = writeln!(
                o,
                "           conf-dir {} ({})",
                dir.path.display(),
                if dir.reads_virtmasq_files {
                    "reads virtmasq-*.conf"
                } else {
                    "skips virtmasq-*.conf"
                }
            );
        }
        let _ = writeln!(
            o,
            "           interface: {}; listen-address: {}; except-interface: {}\n           bind mode: {:?}; local-service: {}; port: {}; dhcp-range lines: {} (+{} of virtmasq)",
            list(&c.interfaces),
            list(&c.listen_addresses),
            list(&c.except_interfaces),
            c.bind_mode,
            if c.local_service { "yes" } else { "no" },
            c.port,
            c.dhcp_ranges,
            c.virtmasq_dhcp_ranges
        );
        o
    }

    fn ports_text(&self) -> String {
        let mut o = String::new();
        for (name, holders) in [("udp/67", &self.ports.udp67), ("udp/53", &self.ports.udp53)] {
            let held: Vec<String> = holders
                .iter()
                .map(|h| format!("{} (pid {}) on {}", h.command, h.pid, h.addresses.join(" ")))
                .collect();
            let _ = writeln!(
                o,
                "{name}:    {}",
                if held.is_empty() {
                    "free".into()
                } else {
                    held.join("; ")
                }
            );
        }
        o
    }
}
