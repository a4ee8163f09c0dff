//! The two ways of serving networks behind one trait: private instances, or fragments in the
//! system dnsmasq. The daemon and `sync` drive either the same way.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::agent::desired::pxe_lines;
use crate::config::Config;
use crate::dnsmasq::render::RenderOptions;
use crate::host::Host;
use crate::model::{ManagedNetwork, NetworkName};
use crate::pxe::LinesFor;
use crate::system::effective::EffectiveConfig;
use crate::system::version::DnsmasqVersion;

/// What one reconcile did, for logs and `sync`'s output.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Lines for a person: what changed.
    pub changes: Vec<String>,
    /// Errors, one per network or per attempt; empty when all went well.
    pub errors: Vec<anyhow::Error>,
}

/// A way of serving networks.
pub trait Backend {
    /// Brings what is served in line with `nets`. Networks named in `keep` (their new
    /// definition is invalid) keep whatever serves them now, untouched.
    fn reconcile(
        &mut self,
        nets: &[ManagedNetwork],
        keep: &HashSet<NetworkName>,
        cfg: &Config,
    ) -> impl std::future::Future<Output = Outcome>;
    /// What serves `net` now, for people (a pid, a fragment).
    fn served_by(&self, net: &ManagedNetwork, cfg: &Config) -> String;
    /// The lease file of the dnsmasq that serves `net` now, if one does.
    fn lease_file(&self, net: &ManagedNetwork, cfg: &Config) -> Option<PathBuf>;
    /// Makes every dnsmasq re-read its hosts files and hostsdirs: SIGHUP, or a restart where
    /// SIGHUP is not safe ([`sighup_safe`]).
    fn reread(&mut self, cfg: &Config) -> impl std::future::Future<Output = anyhow::Result<()>>;
    /// The agent is stopping.
    fn shutdown(&mut self) -> impl std::future::Future<Output = ()>;
    /// Bridges beyond those served whose appearance needs a reconcile: those a stopped
    /// network's lines still wait on in the system dnsmasq ([`crate::system::linger`]).
    fn watched_bridges(&self, _cfg: &Config) -> Vec<String> {
        Vec::new()
    }
    /// Whether a reconcile may restart a dnsmasq that serves other networks too (the
    /// system's): then a burst of triggers is debounced into one reconcile. A private
    /// instance serves one network, so private mode applies each trigger at once.
    fn restarts_shared(&self) -> bool {
        false
    }
}

/// The PXE filter's lines for `net`'s dnsmasq, if the filter covers it.
fn filter_lines(cfg: &Config, net: &ManagedNetwork) -> crate::filter::FilterLines {
    let bridges = if cfg.filter.covers(&net.name) {
        vec![net.bridge.clone()]
    } else {
        Vec::new()
    };
    crate::filter::dnsmasq_lines(&cfg.filter, &bridges, net.is_proxy())
}

/// Whether the filter's deny lines must work for proxy DHCP (`set:` a tag that
/// `dhcp-ignore` matches): some covered network serves proxy DHCP.
pub fn filter_proxy(cfg: &Config, nets: &[ManagedNetwork]) -> bool {
    nets.iter()
        .any(|n| cfg.filter.covers(&n.name) && n.is_proxy())
}

/// Whether dnsmasq may be sent SIGHUP: dnsmasq up to 2.90 crashes on SIGHUP once a `set:`
/// entry of a hosts file has matched, and the filter's deny lines carry `set:` for proxy DHCP.
/// Where it is not safe, a restart does the same work.
pub fn sighup_safe(cfg: &Config) -> bool {
    sighup_safe_with(cfg, DnsmasqVersion::of(&cfg.paths.dnsmasq).as_ref())
}

/// As [`sighup_safe`], with dnsmasq's version already known.
pub fn sighup_safe_with(cfg: &Config, version: Option<&DnsmasqVersion>) -> bool {
    let tagged = cfg.filter.enabled
        && crate::filter::store::Store::new(&cfg.paths.state_dir)
            .deny_line()
            .is_ok_and(|line| line != crate::filter::entry::DenyLine::Plain);
    let version = version.map_or((0, 0), |v| v.numeric);
    crate::filter::ops::sighup_is_safe(version, tagged)
}

/// Rendering options of `net`'s private instance: the filter's lines and the PXE profile's
/// (already checked when the network was accepted; a profile that broke since then, say a
/// boot file deleted, renders no PXE lines and is logged).
pub fn private_options(cfg: &Config, net: &ManagedNetwork) -> RenderOptions {
    let mut extra_lines = filter_lines(cfg, net).all();
    extra_lines.extend(pxe_or_log(net, cfg, LinesFor::Private));
    RenderOptions {
        no_ping: cfg.dnsmasq.no_ping,
        extra_lines,
        dns_taken: false,
    }
}

/// Who else holds udp/53 beside our own instances, remembered per socket. A socket's owner is
/// found by reading every descriptor of every process (about 3 ms on a bare VM of 70
/// processes, more on a host of many guests, on the daemon's loop); a socket keeps its inode
/// and its owner for its life, so that read is made only when a socket appears (one of ours
/// starting, another server starting), not at every reconcile.
#[derive(Debug, Default)]
pub struct DnsHolders {
    /// Sockets on the port seen so far: whether a process other than ours holds each.
    foreign: std::collections::BTreeMap<u64, bool>,
    /// How many times the descriptors were read (for tests).
    looked: usize,
}

impl DnsHolders {
    /// The addresses on which a process other than our own instances (whose command line
    /// names `run_dir`) holds udp/53.
    pub fn held_by_others(&mut self, run_dir: &Path, host: &Host) -> Vec<String> {
        self.held_on(53, run_dir, host)
    }

    fn held_on(&mut self, port: u16, run_dir: &Path, host: &Host) -> Vec<String> {
        let sockets = host.udp_sockets(port);
        self.foreign.retain(|inode, _| sockets.contains_key(inode));
        let new: std::collections::BTreeSet<u64> = (sockets.keys())
            .filter(|inode| !self.foreign.contains_key(inode))
            .copied()
            .collect();
        if !new.is_empty() {
            self.looked += 1;
            let run_dir = run_dir.to_string_lossy();
            let ours = |pid: &u32| {
                host.cmdline(*pid)
                    .is_some_and(|c| String::from_utf8_lossy(&c).contains(&*run_dir))
            };
            let owners = host.socket_owners(&new);
            for inode in new {
                // A socket whose owner is not found (gone, or in a pid namespace not seen) is
                // nobody's to step around.
                let foreign = owners
                    .get(&inode)
                    .is_some_and(|pids| pids.iter().any(|p| !ours(p)));
                self.foreign.insert(inode, foreign);
            }
        }
        (sockets.into_iter())
            .filter(|(inode, _)| self.foreign.get(inode) == Some(&true))
            .flat_map(|(_, addresses)| addresses)
            .collect()
    }
}

/// Whether another server already answers DNS on one of `net`'s bridge addresses (a system
/// dnsmasq with `bind-interfaces` that does not exclude the bridge): the private instance
/// could not bind its DNS socket there, so it serves DHCP only on that network.
pub fn dns_taken_on(net: &ManagedNetwork, held: &[String]) -> bool {
    let mine = net
        .subnets
        .iter()
        .map(|s| s.addr().to_string())
        .chain(net.subnets6.iter().map(|s| s.addr().to_string()));
    mine.into_iter().any(|a| held.contains(&a))
}

/// The system dnsmasq's lease file: as configured, else as its configuration says, else
/// dnsmasq's default.
pub fn system_lease_file(cfg: &Config, host: &Host) -> PathBuf {
    cfg.paths.system_lease_file.clone().unwrap_or_else(|| {
        EffectiveConfig::read(&host.root)
            .lease_file
            .unwrap_or_else(|| crate::dnsmasq::leases::SYSTEM_DEFAULT.into())
    })
}

fn pxe_or_log(net: &ManagedNetwork, cfg: &Config, mode: LinesFor) -> Vec<String> {
    pxe_lines(net, cfg, mode).unwrap_or_else(|e| {
        tracing::error!(network = %net.name, error = %crate::error::chain(&e), "PXE profile");
        Vec::new()
    })
}

/// Lines of `net`'s system fragment beyond its own: the filter's scope (`tag-if`). The lines
/// the filter needs once per dnsmasq go to the shared fragment ([`system_shared_lines`]).
pub fn system_extra_lines(
    cfg: &Config,
    net: &ManagedNetwork,
    effective: &EffectiveConfig,
) -> Vec<String> {
    let mut lines = filter_lines(cfg, net).scope;
    // A system that serves TFTP everywhere keeps doing so: no per-bridge enable-tftp.
    let mode = if effective.tftp_everywhere {
        LinesFor::SystemTftpEverywhere
    } else {
        LinesFor::System
    };
    lines.extend(pxe_or_log(net, cfg, mode));
    lines
}

/// Why a network cannot be a system-mode fragment, if it cannot: an isolated network with DNS
/// needs `no-resolv`, which applies to every interface of a dnsmasq; proxy DHCP's
/// `pxe-service` switches on dnsmasq's PXE handling for every interface, changing what the
/// system dnsmasq answers PXE clients elsewhere.
pub fn system_refusal(net: &ManagedNetwork) -> Option<String> {
    if net.settings.tftp_root.is_some() {
        return Some(format!(
            "network '{}' serves TFTP from its own root (<tftp>), which virtmasq gives it in a \
             private instance only; in the system dnsmasq, TFTP is a PXE profile's",
            net.name
        ));
    }
    if !net.settings.raw_options.is_empty() {
        return Some(format!(
            "network '{}' has raw options (<dnsmasq:options>), which would apply to every \
             interface of a shared dnsmasq",
            net.name
        ));
    }
    if net.dns && !(net.settings.dns.is_empty() && net.settings.local_ptr.is_empty()) {
        return Some(format!(
            "network '{}' has its own DNS records, forwarders (<dns>) or local reverse zones \
             (localPtr), which a shared dnsmasq would apply for every client of the host",
            net.name
        ));
    }
    if net.settings.isolated && net.dns {
        return Some(format!(
            "network '{}' is isolated (no <forward>): its guests' DNS queries must never be \
             forwarded upstream (libvirt's no-resolv), which the system dnsmasq does for every \
             interface",
            net.name
        ));
    }
    net.is_proxy().then(|| {
        format!(
            "network '{}': a proxy-DHCP PXE profile in the system dnsmasq would change its answers to PXE clients on every other interface; serve it in private mode (mode = \"private\") or use mode = \"dhcp\" in its profile",
            net.name
        )
    })
}

/// Lines needed once in the system dnsmasq for all of `nets` (the filter's hostsdir).
pub fn system_shared_lines(cfg: &Config, nets: &[ManagedNetwork]) -> Vec<String> {
    let mut shared: Vec<String> = Vec::new();
    for net in nets {
        for l in filter_lines(cfg, net).shared() {
            if !shared.contains(&l) {
                shared.push(l);
            }
        }
    }
    shared
}

mod private;
mod system;

pub use private::PrivateBackend;
pub use system::{system_files, SystemBackend, SystemView};

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    fn held(holders: &mut DnsHolders, port: u16, run_dir: &Path) -> Vec<String> {
        let mut held = holders.held_on(port, run_dir, &Host::real());
        held.sort();
        held
    }

    /// A socket's owner is looked up once, when the socket appears; a socket held by a process
    /// whose command line names the run directory is ours.
    #[test]
    fn each_socket_is_looked_up_once() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        let elsewhere = Path::new("/nonexistent/virtmasq-run");
        let mut holders = DnsHolders::default();
        assert_eq!(held(&mut holders, port, elsewhere), ["127.0.0.1"]);
        assert_eq!(holders.looked, 1);
        assert_eq!(held(&mut holders, port, elsewhere), ["127.0.0.1"]);
        assert_eq!(holders.looked, 1, "the same socket was looked up again");
        let b = UdpSocket::bind(("127.0.0.2", port)).unwrap();
        assert_eq!(
            held(&mut holders, port, elsewhere),
            ["127.0.0.1", "127.0.0.2"]
        );
        assert_eq!(holders.looked, 2, "a new socket was not looked up");
        drop(a);
        assert_eq!(held(&mut holders, port, elsewhere), ["127.0.0.2"]);
        assert_eq!(holders.looked, 2);
        // This test's own command line names its executable's directory: as an instance's
        // names the run directory.
        let exe = std::env::current_exe().unwrap();
        let mut mine = DnsHolders::default();
        assert!(held(&mut mine, port, exe.parent().unwrap()).is_empty());
        drop(b);
    }
}
