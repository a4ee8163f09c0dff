//! virtmasq's TOML configuration: every path the agent touches, how it reaches libvirt, and the
//! DHCP intent of networks whose libvirt version cannot keep it in `<metadata>`.
//!
//! Unknown keys are errors (a typo must not be silently ignored) and every error carries the
//! file name with the line and column that toml reports.

mod networks;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::filter::FilterConfig;
use crate::model::NetworkName;

pub use networks::{HostConfig, NetworkConfig, RangeConfig};

/// Where the configuration lives unless `--config` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/virtmasq/virtmasq.toml";

/// The whole configuration file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `auto` (decided by `virtmasq detect`'s rules), `system` or `private`.
    #[serde(default)]
    pub mode: ModeSetting,
    /// Files and programs the agent uses.
    #[serde(default)]
    pub paths: Paths,
    /// How networks are read from libvirt.
    #[serde(default)]
    pub libvirt: LibvirtConfig,
    /// How generated dnsmasq configuration behaves.
    #[serde(default)]
    pub dnsmasq: DnsmasqConfig,
    /// The system dnsmasq (system mode).
    #[serde(default)]
    pub system: SystemConfig,
    /// The PXE MAC filter.
    #[serde(default)]
    pub filter: FilterConfig,
    /// The daemon's HTTP endpoint for iPXE scripts.
    #[serde(default)]
    pub http: crate::http::HttpConfig,
    /// DHCP intent per libvirt network name (`[networks.<name>]`).
    #[serde(default)]
    pub networks: BTreeMap<NetworkName, NetworkConfig>,
}

/// Every path the agent reads or writes, so tests and demos never touch the real `/etc`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Paths {
    /// The dnsmasq binary.
    pub dnsmasq: PathBuf,
    /// Persistent state: lease files (kept across restarts and mode changes), filter policy.
    /// Like the other directories, it is written into dnsmasq lines, so it may not hold white
    /// space, `,`, `#`, quotes or `\`.
    #[serde(deserialize_with = "crate::model::deserialize_line_path")]
    pub state_dir: PathBuf,
    /// Runtime files: private instances' configuration, hosts files and pid files.
    #[serde(deserialize_with = "crate::model::deserialize_line_path")]
    pub run_dir: PathBuf,
    /// The system dnsmasq's configuration directory, where system-mode fragments go.
    #[serde(deserialize_with = "crate::model::deserialize_line_path")]
    pub conf_dir: PathBuf,
    /// The system dnsmasq's lease file, read (never written) when a network moves to private
    /// mode so its guests keep their addresses. Unset: what the system configuration says, else
    /// dnsmasq's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_lease_file: Option<PathBuf>,
}

impl Default for Paths {
    fn default() -> Self {
        Self {
            dnsmasq: "/usr/sbin/dnsmasq".into(),
            state_dir: "/var/lib/virtmasq".into(),
            run_dir: "/run/virtmasq".into(),
            conf_dir: "/etc/dnsmasq.d".into(),
            system_lease_file: None,
        }
    }
}

/// How the agent talks to libvirt.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LibvirtConfig {
    /// The libvirt connection URI (`--libvirt-uri` overrides it).
    pub uri: String,
    /// Seconds between two reads of libvirt's networks by the daemon, as a safety net beside
    /// hook events.
    pub poll_interval_secs: u64,
    /// Where libvirt's network driver reads each bridge's lease status file
    /// (`<bridge>.status`, for `virsh net-dhcp-leases` and `virsh domifaddr --source lease`).
    /// The daemon keeps the file of every network it serves current, when this directory
    /// exists (that is, when libvirt's network driver is installed).
    pub lease_status_dir: PathBuf,
}

impl Default for LibvirtConfig {
    fn default() -> Self {
        Self {
            uri: "qemu:///system".into(),
            poll_interval_secs: 30,
            lease_status_dir: "/var/lib/libvirt/dnsmasq".into(),
        }
    }
}

impl LibvirtConfig {
    /// The poll interval, at least one second.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_secs(self.poll_interval_secs.max(1))
    }
}

/// Behaviour of the dnsmasq configuration virtmasq generates.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsmasqConfig {
    /// Skip dnsmasq's ICMP check of an address before offering it (`no-ping`). The check
    /// delays each first offer by about three seconds.
    pub no_ping: bool,
    /// The account private instances run as (`nobody` if it does not exist). They start
    /// unprivileged with only their network capabilities, so they stay tied to the agent.
    pub user: String,
}

impl Default for DnsmasqConfig {
    fn default() -> Self {
        Self {
            no_ping: false,
            user: "dnsmasq".into(),
        }
    }
}

/// Which mode to run in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModeSetting {
    /// System mode where a usable system dnsmasq exists, private mode otherwise.
    #[default]
    Auto,
    /// Always system mode.
    System,
    /// Always private mode.
    Private,
}

impl ModeSetting {
    /// The forced mode, if any.
    pub fn forced(self) -> Option<crate::model::Mode> {
        use crate::model::Mode;
        match self {
            Self::Auto => None,
            Self::System => Some(Mode::System),
            Self::Private => Some(Mode::Private),
        }
    }
}

/// How virtmasq works with the system dnsmasq.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SystemConfig {
    /// The system dnsmasq's systemd unit.
    pub unit: String,
    /// Seconds a restart may take before it counts as failed (and is rolled back).
    pub restart_timeout_secs: u64,
    /// The debounce window in milliseconds: a change after this long a quiet time is applied
    /// at once; changes closer to each other than this are applied once they stop, so a
    /// burst of changes costs one more restart. A script's `virsh net-start` loop is about
    /// 300-750 ms a network: the default of 1 s covers it.
    pub debounce_ms: u64,
}

impl Default for SystemConfig {
    fn default() -> Self {
        Self {
            unit: "dnsmasq.service".into(),
            restart_timeout_secs: 20,
            debounce_ms: 1000,
        }
    }
}

impl SystemConfig {
    /// The restart timeout.
    pub fn restart_timeout(&self) -> Duration {
        Duration::from_secs(self.restart_timeout_secs.max(1))
    }

    /// The debounce window.
    pub fn debounce(&self) -> Duration {
        Duration::from_millis(self.debounce_ms)
    }
}

/// A configuration that could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (toml's message has line and column).
    #[error("configuration {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, with the line, column and a caret under the culprit.
        message: String,
    },
}

impl Config {
    /// Loads and validates the configuration from `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Loads `path` if it exists, or the built-in defaults if it does not and it is the default
    /// path (an explicit `--config` that does not exist is an error).
    pub fn load_or_default(path: &Path, explicit: bool) -> Result<Self, ConfigError> {
        if !explicit && !path.exists() {
            return Ok(Self::default());
        }
        Self::load(path)
    }

    /// Parses configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let cfg: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        // What serde cannot see: settings that only make sense together.
        cfg.filter
            .source
            .validate()
            .map_err(|m| ConfigError::Parse {
                path: origin.to_owned(),
                message: format!("[filter.source]: {m}"),
            })?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests;
