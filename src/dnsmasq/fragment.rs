//! System-mode fragments: one file per network in the system dnsmasq's conf-dir, scoped to the
//! network's bridge by the tag dnsmasq sets on every request (the name of the interface it
//! arrived on). Pure: validated types in, text out.
//!
//! What a fragment must never do to the system dnsmasq (see dnsmasq-facts): `dhcp-range=
//! interface:X` is dead syntax (a tag name that restricts nothing) and is never written; an
//! `interface=` line is written only where the system already restricts interfaces, because
//! the first one turns "serve everywhere" into "serve only here" and a `local-service` instance
//! into a wildcard DNS bind.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::render::{range6_lines, range_lines, settings_lines};
use crate::model::ManagedNetwork;

/// The first line of every fragment: how virtmasq recognises its own files.
pub const MARK: &str = crate::system::effective::FRAGMENT_MARK;

/// What the fragment may and must contain, decided from the system's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentContext {
    /// Add `interface=<bridge>`: only when the system config already restricts interfaces.
    pub add_interface: bool,
    /// The network's hosts file (`dhcp-hostsfile`, re-read on SIGHUP without a restart).
    pub hosts_file: PathBuf,
    /// Scope static hosts with `tag:<bridge>` (dnsmasq >= 2.81).
    pub tag_hosts: bool,
    /// Extra lines from other features (the PXE filter), already validated by their owner.
    pub extra_lines: Vec<String>,
}

/// The fragment's file name in a conf-dir: kept by every distribution's conf-dir filter.
pub fn file_name(net: &str) -> String {
    format!("virtmasq-{net}.conf")
}

/// The hosts file of a network in system mode.
pub fn hosts_file(state_dir: &Path, net: &str) -> PathBuf {
    state_dir.join("system").join(format!("{net}.hosts"))
}

/// Renders the fragment of one network.
pub fn render_fragment(net: &ManagedNetwork, ctx: &FragmentContext) -> String {
    let mut c = format!(
        "{MARK} for libvirt network '{}' (bridge {}).\n\
         # Do not edit: virtmasq rewrites this file whenever the network changes.\n\
         # Scoped to {}: its ranges and options match only requests that arrive there.\n",
        net.name, net.bridge, net.bridge
    );
    if ctx.add_interface {
        let _ = writeln!(c, "interface={}", net.bridge);
    }
    c.push_str(&range_lines(net, Some(&net.bridge)));
    // IPv6 ranges are scoped the same way; `enable-ra` among them is global, and
    // `system::placement` sends a network here only where it changes nothing elsewhere.
    c.push_str(&range6_lines(net, Some(&net.bridge)));
    c.push_str(&settings_lines(net, Some(&net.bridge)));
    let _ = writeln!(c, "dhcp-hostsfile={}", ctx.hosts_file.display());
    if !net.dns {
        // No DNS for this network: the names its clients send stay out of the host's DNS too
        // (the hosts file has none, see render_hosts).
        let _ = writeln!(c, "dhcp-ignore-names=tag:{}", net.bridge);
    } else if let Some(domain) = &net.domain {
        for subnet in &net.subnets {
            let _ = writeln!(
                c,
                "domain={domain},{}/{}",
                subnet.network(),
                subnet.prefix()
            );
        }
        for subnet in &net.subnets6 {
            let _ = writeln!(
                c,
                "domain={domain},{}/{}",
                subnet.network(),
                subnet.prefix()
            );
        }
        if net.settings.domain_local_only {
            let _ = writeln!(c, "local=/{domain}/");
        }
    }
    for line in &ctx.extra_lines {
        c.push_str(line);
        c.push('\n');
    }
    c
}

/// The hosts file of a network in system mode: like the private one, each line scoped to the
/// bridge when dnsmasq supports tags on hosts, so an entry can never match elsewhere. With
/// `dns = "no"` it holds no names: dnsmasq would answer them to every client of the host.
pub fn render_hosts(net: &ManagedNetwork, tag: bool) -> String {
    let plain = if net.dns {
        super::render::hosts_file(net)
    } else {
        let mut nameless = net.clone();
        nameless.hosts.iter_mut().for_each(|h| h.name = None);
        // A DHCPv6 host known by its name alone keeps it (see render::host6_line).
        nameless
            .hosts6
            .iter_mut()
            .filter(|h| h.id.is_some() || h.mac.is_some())
            .for_each(|h| h.name = None);
        super::render::hosts_file(&nameless)
    };
    if !tag {
        return plain;
    }
    plain
        .lines()
        .map(|l| format!("tag:{},{l}\n", net.bridge))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DhcpIntent, DhcpRange, Ipv4Range, LeaseTime, StaticHost};

    fn net() -> ManagedNetwork {
        ManagedNetwork::new(
            "lab".parse().unwrap(),
            "virbr10".parse().unwrap(),
            vec!["192.168.100.1/24".parse().unwrap()],
            DhcpIntent {
                ranges6: Vec::new(),
                hosts6: Vec::new(),
                ranges: vec![DhcpRange {
                    range: Ipv4Range::new(
                        "192.168.100.100".parse().unwrap(),
                        "192.168.100.200".parse().unwrap(),
                    )
                    .unwrap(),
                    lease: Some(LeaseTime::Seconds(43_200)),
                }],
                hosts: vec![StaticHost {
                    mac: "52:54:00:00:00:01".parse().unwrap(),
                    ip: Some("192.168.100.10".parse().unwrap()),
                    name: Some("node1".parse().unwrap()),
                    lease: None,
                }],
                domain: Some("lab.example".parse().unwrap()),
                dns: true,
                pxe: None,
            },
        )
        .unwrap()
    }

    fn ctx(add_interface: bool) -> FragmentContext {
        FragmentContext {
            add_interface,
            hosts_file: "/var/lib/virtmasq/system/lab.hosts".into(),
            tag_hosts: true,
            extra_lines: vec![],
        }
    }

    #[test]
    fn fragment_for_an_unrestricted_system() {
        let text = render_fragment(&net(), &ctx(false));
        assert_eq!(
            text,
            "# Generated by virtmasq for libvirt network 'lab' (bridge virbr10).\n\
             # Do not edit: virtmasq rewrites this file whenever the network changes.\n\
             # Scoped to virbr10: its ranges and options match only requests that arrive there.\n\
             dhcp-range=tag:virbr10,192.168.100.100,192.168.100.200,255.255.255.0,43200\n\
             dhcp-hostsfile=/var/lib/virtmasq/system/lab.hosts\n\
             domain=lab.example,192.168.100.0/24\n\
             local=/lab.example/\n"
        );
        assert!(
            !text.contains("interface="),
            "never restrict an unrestricted system"
        );
        assert!(
            !text.contains("interface:"),
            "the removed dhcp-range syntax"
        );
    }

    #[test]
    fn fragment_for_a_restricting_system_names_the_bridge() {
        let text = render_fragment(&net(), &ctx(true));
        assert!(text.contains("\ninterface=virbr10\n"), "{text}");
    }

    /// `dns="no"` was never consulted: the fragment still made the host answer the domain
    /// and the hosts' names. Now nothing of the network reaches the host's DNS.
    #[test]
    fn dns_no_writes_no_dns_line_and_no_name() {
        let mut n = net();
        n.dns = false;
        let text = render_fragment(&n, &ctx(false));
        for line in ["domain=", "local=", "expand-hosts", "lab.example"] {
            assert!(!text.contains(line), "{line} in\n{text}");
        }
        assert!(text.contains("\ndhcp-ignore-names=tag:virbr10\n"), "{text}");
        assert_eq!(
            render_hosts(&n, true),
            "tag:virbr10,52:54:00:00:00:01,192.168.100.10\n"
        );
    }

    #[test]
    fn hosts_are_scoped_to_the_bridge() {
        assert_eq!(
            render_hosts(&net(), true),
            "tag:virbr10,52:54:00:00:00:01,192.168.100.10,node1\n"
        );
        assert_eq!(
            render_hosts(&net(), false),
            "52:54:00:00:00:01,192.168.100.10,node1\n"
        );
        assert_eq!(file_name("lab"), "virtmasq-lab.conf");
    }
}
