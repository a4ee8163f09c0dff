//! The decision, system or private mode, and the conflicts a person should know about. Pure:
//! facts gathered elsewhere go in; a decision with reasons a person can act on comes out.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::effective::{BindMode, EffectiveConfig};
use super::ports::PortHolder;
use super::version::DnsmasqVersion;

pub use crate::model::Mode;

/// What systemd says of the dnsmasq unit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitFacts {
    /// Whether systemd answered on the system bus.
    pub systemd_running: bool,
    /// The unit asked about.
    pub unit: String,
    /// Whether the unit is known (LoadState is not `not-found`).
    pub exists: bool,
    /// `enabled`, `disabled`, `masked`, ... (empty when unknown).
    pub unit_file_state: String,
    /// `active`, `inactive`, `failed`, ...
    pub active_state: String,
    /// The main process, 0 when none.
    pub main_pid: u32,
}

impl UnitFacts {
    fn enabled(&self) -> bool {
        matches!(
            self.unit_file_state.as_str(),
            "enabled" | "enabled-runtime" | "linked" | "linked-runtime" | "alias"
        )
    }
}

/// Everything the decision looks at.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The dnsmasq binary and its version, if installed.
    pub binary: Option<(PathBuf, DnsmasqVersion)>,
    /// The unit.
    pub unit: UnitFacts,
    /// The effective configuration.
    pub config: EffectiveConfig,
    /// The conf-dir virtmasq is configured to write to.
    pub conf_dir: PathBuf,
    /// Who holds udp/67.
    pub udp67: Vec<PortHolder>,
    /// Bridges of the networks virtmasq serves.
    pub managed_bridges: Vec<String>,
    /// A mode forced by configuration, if any.
    pub forced: Option<Mode>,
}

/// A named conflict: a stable code for scripts and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// Stable identifier (documented in README.md).
    pub code: String,
    /// What is wrong and what to do about it.
    pub message: String,
}

/// The outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The mode.
    pub mode: Mode,
    /// Why, in order.
    pub reasons: Vec<String>,
    /// Problems found, whatever the mode.
    pub conflicts: Vec<Conflict>,
}

fn conflict(code: &str, message: String) -> Conflict {
    Conflict {
        code: code.to_owned(),
        message,
    }
}

/// Decides the mode.
pub fn decide(f: &Facts) -> Decision {
    let conflicts = conflicts(f);
    let mut blockers = Vec::new();
    let mut reasons = Vec::new();
    match &f.binary {
        None => blockers.push("dnsmasq is not installed".to_owned()),
        Some((path, v)) if !v.has("DHCP") => blockers.push(format!(
            "{} {} was built without DHCP",
            path.display(),
            v.version
        )),
        Some((path, v)) => reasons.push(format!("{} {} is installed", path.display(), v.version)),
    }
    unit_facts(&f.unit, &mut blockers, &mut reasons);
    match f.config.conf_dir(&f.conf_dir) {
        None => blockers.push(format!(
            "the system dnsmasq does not read {} (add `conf-dir={}` to its configuration)",
            f.conf_dir.display(),
            f.conf_dir.display()
        )),
        Some(d) if !d.reads_virtmasq_files => blockers.push(format!(
            "the system dnsmasq's conf-dir {} would skip virtmasq-<network>.conf files",
            d.path.display()
        )),
        Some(d) => reasons.push(format!("it reads {}", d.path.display())),
    }
    let foreign67 = foreign_dhcp(f);
    if f.config.bind_mode == BindMode::Default && f.config.dhcp_ranges == 0 && !foreign67.is_empty()
    {
        blockers.push(format!(
            "{} already serve DHCP here; a default-mode system dnsmasq given a dhcp-range would \
             fail to bind udp/67 and take its DNS down with it",
            describe(&foreign67)
        ));
    }
    let mode = match f.forced {
        Some(m) => {
            reasons.insert(
                0,
                format!("mode {m:?} is forced by configuration").to_lowercase(),
            );
            m
        }
        None if blockers.is_empty() => Mode::System,
        None => Mode::Private,
    };
    if mode == Mode::Private {
        reasons.extend(
            blockers
                .into_iter()
                .map(|b| format!("not system mode: {b}")),
        );
    }
    Decision {
        mode,
        reasons,
        conflicts,
    }
}

/// What the unit's state says for or against system mode.
fn unit_facts(u: &UnitFacts, blockers: &mut Vec<String>, reasons: &mut Vec<String>) {
    if !u.systemd_running {
        blockers.push(
            "systemd is not running, so the system dnsmasq cannot be restarted over D-Bus".into(),
        );
    } else if !u.exists {
        blockers.push(format!(
            "there is no {} (only the dnsmasq binary is installed)",
            u.unit
        ));
    } else if !u.enabled() {
        blockers.push(format!(
            "{} is {} (enable it with `systemctl enable --now {}` to use system mode)",
            u.unit,
            if u.unit_file_state.is_empty() {
                "not enabled"
            } else {
                &u.unit_file_state
            },
            u.unit
        ));
    } else {
        reasons.push(format!(
            "{} is {} and {}",
            u.unit, u.unit_file_state, u.active_state
        ));
    }
}

/// Holders of udp/67 other than the system dnsmasq itself.
fn foreign_dhcp(f: &Facts) -> Vec<&PortHolder> {
    f.udp67
        .iter()
        .filter(|h| h.pid != f.unit.main_pid || f.unit.main_pid == 0)
        .collect()
}

fn describe(holders: &[&PortHolder]) -> String {
    holders
        .iter()
        .map(|h| format!("{} (pid {})", h.command, h.pid))
        .collect::<Vec<_>>()
        .join(", ")
}

fn conflicts(f: &Facts) -> Vec<Conflict> {
    let c = &f.config;
    let mut out = Vec::new();
    if let Some(p) = &c.libvirt_fragment {
        out.push(conflict(
            "libvirt-fragment",
            format!(
                "{} (from libvirt's packaging) forces the system dnsmasq into bind-interfaces and \
                 excludes only virbr0; other libvirt bridges still clash with it on a restart",
                p.display()
            ),
        ));
    }
    let system_active = f.unit.active_state == "active";
    if c.bind_mode == BindMode::Default && c.dhcp_ranges > 0 && system_active {
        out.push(conflict(
            "default-mode-dhcp",
            "the system dnsmasq serves DHCP in default (wildcard) mode and holds udp/67: a private \
             dnsmasq cannot bind DHCP beside it, so only system mode can serve networks"
                .into(),
        ));
    }
    if c.bind_mode == BindMode::BindInterfaces && c.restricts_interfaces() {
        out.push(conflict(
            "bind-interfaces-missing-bridge",
            "the system dnsmasq uses bind-interfaces with an interface list: an interface= for a \
             bridge that is absent at its start is fatal, so virtmasq adds a network's bridge \
             only while it exists, and a bridge created later needs a restart"
                .into(),
        ));
    }
    for b in &f.managed_bridges {
        if c.except_interfaces.iter().any(|e| e == b) {
            out.push(conflict(
                "except-interface",
                format!(
                    "the system dnsmasq's configuration excludes bridge {b} (except-interface)"
                ),
            ));
        }
    }
    let foreign = foreign_dhcp(f);
    if !foreign.is_empty() && system_active && c.dhcp_ranges > 0 && c.bind_mode == BindMode::Default
    {
        out.push(conflict(
            "udp67-shared",
            format!(
                "{} hold udp/67 beside a default-mode system dnsmasq",
                describe(&foreign)
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests;
