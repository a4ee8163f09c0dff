//! System mode, pure part: which fragment and hosts files the conf-dir and state directory
//! should hold, compared with what they hold, gives the writes, removals and whether dnsmasq
//! needs a restart (ranges, interfaces, boot options) or only a SIGHUP (hosts).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::dnsmasq::fragment::{self, FragmentContext};
use crate::model::{ManagedNetwork, NetworkName};

use super::effective::{BindMode, EffectiveConfig};
use super::linger::{self, Linger};

/// What the files hold now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// virtmasq's fragments in the conf-dir, by path, with their contents.
    pub fragments: BTreeMap<PathBuf, Vec<u8>>,
    /// Files in the conf-dir named like a fragment that virtmasq did not write.
    pub foreign: BTreeSet<PathBuf>,
    /// Hosts files in the state directory, by path.
    pub hosts: BTreeMap<PathBuf, Vec<u8>>,
}

/// What the files should hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// Fragment path -> text.
    pub fragments: BTreeMap<PathBuf, String>,
    /// Hosts file path -> text.
    pub hosts: BTreeMap<PathBuf, String>,
    /// Networks left out for now, with why (a bridge absent under bind-interfaces).
    pub deferred: Vec<(NetworkName, String)>,
    /// Networks refused, with why (names the host's DNS would answer for everyone: see
    /// [`super::domains`]). Their fragments go: an old one may be what widens the host's DNS.
    pub refused: Vec<(NetworkName, String)>,
}

/// The changes, in the order they are applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Files to write (hosts files first, then fragments).
    pub writes: Vec<(PathBuf, String)>,
    /// Fragments to remove (their networks are gone).
    pub removals: Vec<PathBuf>,
    /// Hosts files to remove once dnsmasq no longer reads them.
    pub stale_hosts: Vec<PathBuf>,
    /// A fragment changed: dnsmasq must be validated and restarted.
    pub restart: bool,
    /// Only hosts changed: SIGHUP is enough.
    pub hangup: bool,
    /// Fragments that cannot be written because a file virtmasq did not write is in the way.
    pub refused: Vec<PathBuf>,
    /// The networks whose lines the running dnsmasq holds without a fragment once this plan
    /// is carried out ([`super::linger`]); empty after a restart.
    pub lingering: BTreeSet<Linger>,
    /// Whether [`Self::lingering`] differs from the record: it is to be stored.
    pub lingering_changed: bool,
}

impl Plan {
    /// Whether nothing is to be done.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
            && self.removals.is_empty()
            && self.stale_hosts.is_empty()
            && !self.restart
            && !self.lingering_changed
    }
}

/// What the running system dnsmasq holds beyond its files, and what may be left in it.
pub struct Loaded<'a> {
    /// The lingering record ([`super::linger::load`]).
    pub lingering: &'a BTreeSet<Linger>,
    /// Whether a removed fragment may linger: only where something follows link events and
    /// reconciles when a lingering bridge is created again (the daemon).
    pub may_linger: bool,
    /// Whether an interface of that name exists now.
    pub bridge_exists: &'a dyn Fn(&str) -> bool,
}

impl Loaded<'_> {
    /// Nothing lingers and nothing may: every removal restarts (the hook without a daemon,
    /// `sync`, tests of the rest).
    pub fn none() -> Loaded<'static> {
        static EMPTY: BTreeSet<Linger> = BTreeSet::new();
        Loaded {
            lingering: &EMPTY,
            may_linger: false,
            bridge_exists: &|_| true,
        }
    }
}

/// Everything about the system that shapes the fragments.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// The conf-dir fragments go to.
    pub conf_dir: &'a Path,
    /// virtmasq's state directory (hosts files).
    pub state_dir: &'a Path,
    /// The system's configuration.
    pub effective: &'a EffectiveConfig,
    /// dnsmasq supports `tag:` on hosts (>= 2.81).
    pub tag_hosts: bool,
    /// Lines needed once for all networks (the PXE filter's `dhcp-hostsdir`), written to
    /// their own fragment; none, no fragment.
    pub shared_lines: Vec<String>,
}

/// The file with [`Target::shared_lines`]: without the dash of `virtmasq-<network>.conf`, so
/// no network's fragment can have its name.
pub const SHARED_FRAGMENT: &str = "virtmasq.conf";

/// The files for `nets`; `bridge_exists` answers whether an interface exists now.
pub fn desired(
    nets: &[ManagedNetwork],
    t: &Target,
    extra_lines: impl Fn(&ManagedNetwork) -> Vec<String>,
    bridge_exists: impl Fn(&str) -> bool,
) -> Desired {
    let add_interface = t.effective.restricts_interfaces();
    let mut d = Desired::default();
    if !t.shared_lines.is_empty() {
        let text = format!(
            "{} for settings shared by its networks.\n\
             # Do not edit: virtmasq rewrites this file whenever they change.\n{}\n",
            fragment::MARK,
            t.shared_lines.join("\n")
        );
        d.fragments.insert(t.conf_dir.join(SHARED_FRAGMENT), text);
    }
    for net in nets {
        if let Some(why) = dns_refusal(t.effective, net).or_else(|| ipv6_refusal(net, t.effective))
        {
            d.refused.push((net.name.clone(), why));
            continue;
        }
        if let Some(why) = excluded(t.effective, net.bridge.as_str()) {
            d.deferred.push((net.name.clone(), why));
            continue;
        }
        // With bind-interfaces, an interface= for a missing interface kills dnsmasq at start.
        if add_interface
            && t.effective.bind_mode == BindMode::BindInterfaces
            && !bridge_exists(net.bridge.as_str())
        {
            d.deferred.push((
                net.name.clone(),
                format!(
                    "bridge {} does not exist and the system dnsmasq uses bind-interfaces",
                    net.bridge
                ),
            ));
            continue;
        }
        let hosts_file = fragment::hosts_file(t.state_dir, net.name.as_str());
        let ctx = FragmentContext {
            add_interface,
            hosts_file: hosts_file.clone(),
            tag_hosts: t.tag_hosts,
            extra_lines: extra_lines(net),
        };
        d.fragments.insert(
            t.conf_dir.join(fragment::file_name(net.name.as_str())),
            fragment::render_fragment(net, &ctx),
        );
        d.hosts
            .insert(hosts_file, fragment::render_hosts(net, t.tag_hosts));
    }
    d
}

/// Why `net`'s names may not go into the system dnsmasq (see [`super::domains`]).
pub fn dns_refusal(effective: &EffectiveConfig, net: &ManagedNetwork) -> Option<String> {
    super::domains::refusal(
        net,
        &effective.dns_domains,
        effective.global_domain.as_deref(),
    )
}

/// Why `net`'s IPv6 lines cannot go into the system dnsmasq, if they cannot.
///
/// From dnsmasq's source (radv.c `add_prefixes`, dhcp6.c `complete_context6`, rfc3315.c): an
/// IPv6 range serves only an interface holding an address in its subnet, and the fragment's
/// `tag:<bridge>` keeps relayed requests from elsewhere off it too; a range in a mode of its
/// own (`ra-only`) advertises by itself on that interface alone. All of that is scoped. Not so
/// `enable-ra`, which DHCPv6 needs for the M and O flags: it is global, and turns on
/// advertisements for every IPv6 range in the system dnsmasq that has no mode of its own
/// (constructed ones included). Where the system already has `enable-ra`, or has no such range,
/// it adds nothing elsewhere; otherwise it would make the system advertise on interfaces
/// virtmasq does not own, so the network goes to a private instance.
pub fn ipv6_refusal(net: &ManagedNetwork, effective: &EffectiveConfig) -> Option<String> {
    // A DHCPv6 host known by its name alone keeps it in the hosts file (nothing else finds
    // it), and the system dnsmasq would answer that name to every client.
    if let Some(h) = net
        .hosts6
        .iter()
        .find(|h| !net.dns && h.id.is_none() && h.mac.is_none())
    {
        return Some(format!(
            "its DHCPv6 host {} is known by its name alone, which the system dnsmasq would \
             answer in DNS for every client although the network has dns = \"no\"",
            h.key()
        ));
    }
    if !net.has_dhcp6() || effective.enable_ra || effective.dhcp6_ranges_without_ra.is_empty() {
        return None;
    }
    Some(format!(
        "its DHCPv6 needs enable-ra, which would make the system dnsmasq send router \
         advertisements for its own IPv6 range ({}) too",
        effective.dhcp6_ranges_without_ra.join("; ")
    ))
}

/// Why the system dnsmasq would not serve DHCP on `bridge` whatever a fragment says: an
/// `except-interface` or `no-dhcp-interface` of its own configuration names it (dnsmasq's `*`
/// wildcard at the end of a name included).
pub fn excluded(effective: &EffectiveConfig, bridge: &str) -> Option<String> {
    let matches = |pattern: &String| match pattern.strip_suffix('*') {
        Some(prefix) => bridge.starts_with(prefix),
        None => pattern == bridge,
    };
    for (option, list) in [
        ("except-interface", &effective.except_interfaces),
        ("no-dhcp-interface", &effective.no_dhcp_interfaces),
    ] {
        if let Some(p) = list.iter().find(|p| matches(p)) {
            return Some(format!(
                "the system dnsmasq's configuration has {option}={p}, so it does not serve \
                 bridge {bridge}"
            ));
        }
    }
    None
}

/// The changes from `observed` to `desired`, given what the running dnsmasq holds beyond
/// its files (`loaded`).
pub fn plan(observed: &Observed, desired: &Desired, loaded: &Loaded) -> Plan {
    let mut p = Plan::default();
    for (path, text) in &desired.hosts {
        if observed.hosts.get(path).map(Vec::as_slice) != Some(text.as_bytes()) {
            p.writes.push((path.clone(), text.clone()));
            p.hangup = true;
        }
    }
    for (path, text) in &desired.fragments {
        if observed.foreign.contains(path) {
            p.refused.push(path.clone());
            continue;
        }
        if observed.fragments.get(path).map(Vec::as_slice) != Some(text.as_bytes()) {
            p.writes.push((path.clone(), text.clone()));
            p.restart = true;
        }
    }
    let mut lingering = loaded.lingering.clone();
    for (path, text) in &observed.fragments {
        if desired.fragments.contains_key(path) {
            continue;
        }
        p.removals.push(path.clone());
        match lingers(text, observed, loaded) {
            Some(l) => {
                lingering.insert(l);
            }
            None => p.restart = true,
        }
    }
    // A bridge created again must not meet the lines still loaded for it.
    if (loaded.lingering.iter()).any(|l| (loaded.bridge_exists)(&l.bridge)) {
        p.restart = true;
    }
    if p.restart {
        lingering.clear();
    }
    for path in observed.hosts.keys() {
        let still_read = lingering.iter().any(|l| l.hosts.as_ref() == Some(path));
        if !desired.hosts.contains_key(path) && !still_read {
            p.stale_hosts.push(path.clone());
        }
    }
    p.lingering_changed = lingering != *loaded.lingering;
    p.lingering = lingering;
    if p.restart {
        p.hangup = false;
    }
    p
}

/// How a removed fragment's lines may stay in the running dnsmasq, if they may: all inert
/// ([`linger::inert`]), its bridge gone, its hosts file scoped to it.
fn lingers(text: &[u8], observed: &Observed, loaded: &Loaded) -> Option<Linger> {
    if !loaded.may_linger {
        return None;
    }
    let l = linger::inert(std::str::from_utf8(text).ok()?)?;
    if (loaded.bridge_exists)(&l.bridge) {
        return None;
    }
    if let Some(hosts) = &l.hosts {
        let text = observed.hosts.get(hosts)?;
        if !linger::hosts_scoped(text, &l.bridge) {
            return None;
        }
    }
    Some(l)
}

#[cfg(test)]
mod tests;
