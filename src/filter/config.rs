//! The `[filter]` section of the agent's configuration, and the dnsmasq lines it implies.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::entry::{DENY_TAG, SCOPE_TAG};
use crate::model::{IfName, NetworkName};

/// What dnsmasq does with a MAC that has no allow or deny entry.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum UnknownPolicy {
    /// Unknown hosts are served (no wildcard entry is needed).
    #[default]
    Allow,
    /// Unknown hosts are ignored, through a wildcard `*:*:*:*:*:*` entry.
    Deny,
}

/// How written filter files are made durable.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// One `syncfs` on the hostsdir's file system per batch: before the command returns, or,
    /// in the daemon, just after its reply (100 ms after the last change, at most 1 s). The
    /// rename already keeps dnsmasq from reading a half-written file; a crash before the
    /// `syncfs` can leave empty or stale files, which the start-up purge-and-rebuild (it
    /// compares contents, prompted by the policy's pending mark) repairs.
    #[default]
    Syncfs,
    /// One `fsync` per file before its rename, one on the directory per batch. Each file is
    /// durable on its own, at ~0.4 ms apiece on slow disks (about 20 s for 50,000 MACs).
    FsyncEach,
}

/// Settings of the PXE MAC filter, embedded as `[filter]` in the agent's configuration.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// Whether the filter is active. When false no `dhcp-hostsdir` is given to dnsmasq and the
    /// filter commands only edit the stored policy.
    pub enabled: bool,
    /// The `dhcp-hostsdir` virtmasq owns exclusively: one file per MAC, named after it with
    /// dashes. It must be readable by the user dnsmasq runs as; anything else placed here is
    /// reported and removed at the next start-up purge. Written into a dnsmasq line, so it may
    /// not hold white space, `,`, `#`, quotes or `\`.
    #[serde(deserialize_with = "crate::model::deserialize_line_path")]
    pub hostsdir: PathBuf,
    /// Policy for MACs without an entry of their own, until changed with `filter unknown`
    /// (which is stored in the state directory and overrides this value).
    pub unknown: UnknownPolicy,
    /// Networks the filter applies to; empty means every network virtmasq serves. Other
    /// interfaces of a shared system dnsmasq are never affected either way.
    pub networks: Vec<NetworkName>,
    /// How written files are made durable: `syncfs` (default) or `fsync-each`.
    pub durability: Durability,
    /// Number of file rewrites after which [`super::PxeFilter::needs_compaction`] asks for
    /// dnsmasq to re-read the hostsdir. dnsmasq prepends every re-read file and keeps the old
    /// entries until SIGHUP, so rewrites pile up in its memory and in the list it scans for
    /// each request and each inotify event. But a re-read is costly and blocking: measured with
    /// dnsmasq 2.90, 50,000 files take ~25 s to re-read, during which nothing is answered
    /// (the cost grows with the square of the file count). The default, 20,000, keeps the
    /// stale entries below the size of a large filter and compacts rarely (ironic-style
    /// churn is dozens of rewrites per sync).
    pub compact_after: u32,
    /// Where the policy comes from: `[filter.source]`, `local` (default) or `etcd`.
    pub source: super::source::SourceConfig,
}

impl Default for FilterConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            hostsdir: PathBuf::from("/var/lib/virtmasq/hostsdir"),
            unknown: UnknownPolicy::Allow,
            networks: Vec::new(),
            durability: Durability::Syncfs,
            compact_after: 20_000,
            source: super::source::SourceConfig::default(),
        }
    }
}

impl FilterConfig {
    /// Whether the filter applies to `network` (always when `networks` is empty).
    pub fn covers(&self, network: &NetworkName) -> bool {
        self.networks.is_empty() || self.networks.contains(network)
    }
}

/// The filter's lines for one dnsmasq, by where they belong: what a dnsmasq needs once (the
/// hostsdir, and in proxy mode the `dhcp-ignore` that silences denied PXE clients) and what
/// scopes the filter to each bridge it covers (`tag-if`). A system dnsmasq gets the first in a
/// shared fragment and the second in each network's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterLines {
    /// `dhcp-hostsdir=...`, None when the filter covers nothing here.
    pub hostsdir: Option<String>,
    /// One `tag-if=set:<scope tag>,tag:<bridge>` per covered bridge.
    pub scope: Vec<String>,
    /// `dhcp-ignore=tag:<deny tag>` where proxy DHCP is served.
    pub proxy_ignore: Option<String>,
}

impl FilterLines {
    /// What a dnsmasq needs once, whatever the number of its bridges.
    pub fn shared(&self) -> Vec<String> {
        self.hostsdir
            .iter()
            .chain(&self.proxy_ignore)
            .cloned()
            .collect()
    }

    /// Every line, for a dnsmasq of its own (a private instance).
    pub fn all(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.hostsdir.iter().cloned().collect();
        lines.extend(self.scope.iter().cloned());
        lines.extend(self.proxy_ignore.iter().cloned());
        lines
    }
}

/// The configuration lines a dnsmasq needs for the filter, given the bridges it covers on
/// this dnsmasq (the caller resolves [`FilterConfig::networks`] to bridges) and whether any of
/// them serves proxy DHCP. Empty when the filter is disabled or covers none of the bridges.
///
/// Each covered bridge gets `tag-if=set:virtmasq-filter,tag:<bridge>`: dnsmasq tags a request
/// with its arrival interface, `tag-if` results are visible when `dhcp-host` entries are
/// matched, and every filter file requires `virtmasq-filter`. The files therefore do not
/// depend on the scope, and a change of scope is a configuration change (restart), never a
/// rewrite of thousands of files. Needs dnsmasq >= 2.81 (`tag:` on `dhcp-host`).
pub fn dnsmasq_lines(cfg: &FilterConfig, bridges_in_scope: &[IfName], proxy: bool) -> FilterLines {
    // An IfName cannot start with '!' (which would read as "not this tag"), so every bridge
    // can be scoped.
    if !cfg.enabled || bridges_in_scope.is_empty() {
        return FilterLines::default();
    }
    FilterLines {
        hostsdir: Some(format!("dhcp-hostsdir={}", cfg.hostsdir.display())),
        scope: (bridges_in_scope.iter())
            .map(|b| format!("tag-if=set:{SCOPE_TAG},tag:{b}"))
            .collect(),
        // Deny lines also set DENY_TAG; in proxy mode only dhcp-ignore silences the PXE reply.
        proxy_ignore: proxy.then(|| format!("dhcp-ignore=tag:{DENY_TAG}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ifs(names: &[&str]) -> Vec<IfName> {
        names.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn lines() {
        let on = FilterConfig {
            enabled: true,
            hostsdir: "/srv/hd".into(),
            ..FilterConfig::default()
        };
        let off = FilterConfig::default();
        let cases: [(&FilterConfig, &[&str], bool, &[&str]); 4] = [
            (&off, &["br1"], true, &[]),
            (&on, &[], true, &[]),
            (
                &on,
                &["br1"],
                false,
                &[
                    "dhcp-hostsdir=/srv/hd",
                    "tag-if=set:virtmasq-filter,tag:br1",
                ],
            ),
            (
                &on,
                &["br1", "br2"],
                true,
                &[
                    "dhcp-hostsdir=/srv/hd",
                    "tag-if=set:virtmasq-filter,tag:br1",
                    "tag-if=set:virtmasq-filter,tag:br2",
                    "dhcp-ignore=tag:virtmasq-deny",
                ],
            ),
        ];
        for (cfg, bridges, proxy, want) in cases {
            assert_eq!(
                dnsmasq_lines(cfg, &ifs(bridges), proxy).all(),
                want,
                "{bridges:?} {proxy}"
            );
        }
    }

    #[test]
    fn toml_section() {
        let cases = [
            ("", Some(FilterConfig::default())),
            (
                "enabled = true\nunknown = \"deny\"\ndurability = \"fsync-each\"\nnetworks = [\"pxe\"]\ncompact_after = 10",
                Some(FilterConfig {
                    enabled: true,
                    unknown: UnknownPolicy::Deny,
                    durability: Durability::FsyncEach,
                    networks: vec!["pxe".parse().unwrap()],
                    compact_after: 10,
                    ..FilterConfig::default()
                }),
            ),
            ("unknown = \"maybe\"", None),
            ("hostdir = \"/x\"", None),
            ("networks = [\"a,b\"]", None),
        ];
        for (text, want) in cases {
            let got: Result<FilterConfig, _> = toml::from_str(text);
            assert_eq!(got.ok(), want, "{text}");
        }
        let cfg = FilterConfig {
            networks: vec!["pxe".parse().unwrap()],
            ..FilterConfig::default()
        };
        assert!(cfg.covers(&"pxe".parse().unwrap()));
        assert!(!cfg.covers(&"other".parse().unwrap()));
        assert!(FilterConfig::default().covers(&"other".parse().unwrap()));
    }
}
