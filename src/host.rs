//! The parts of this machine the agent reads beside libvirt and its own configuration: the
//! tree the system dnsmasq's configuration is read from, sysfs for interfaces and procfs for
//! sockets and processes. `/`, `/sys` and `/proc` on a host; a test hands the daemon trees of
//! its own ([`crate::agent::daemon::DaemonOptions`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::system::ports::{socket_owners, udp_holders_of, udp_sockets, PortHolder};

/// Where the host's file trees are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The root the system dnsmasq's configuration files are read under.
    pub root: PathBuf,
    /// sysfs (`/sys`): which network interfaces exist.
    pub sysfs: PathBuf,
    /// procfs (`/proc`): who holds a port, and what a process is.
    pub procfs: PathBuf,
}

impl Host {
    /// This machine.
    pub fn real() -> Self {
        Self {
            root: "/".into(),
            sysfs: "/sys".into(),
            procfs: "/proc".into(),
        }
    }

    /// Whether a network interface called `name` exists now.
    pub fn interface_exists(&self, name: &str) -> bool {
        self.sysfs.join("class/net").join(name).exists()
    }

    /// The processes holding each of `ports` (UDP), with the addresses they hold it on, from
    /// one look at every process's descriptors.
    pub fn udp_holders_of(&self, ports: &[u16]) -> Vec<Vec<PortHolder>> {
        udp_holders_of(&self.procfs, ports)
    }

    /// The sockets on UDP `port`: inode, and the addresses it is bound to.
    pub fn udp_sockets(&self, port: u16) -> BTreeMap<u64, BTreeSet<String>> {
        udp_sockets(&self.procfs, port)
    }

    /// The processes holding each of these sockets (a read of every process's descriptors).
    pub fn socket_owners(&self, inodes: &BTreeSet<u64>) -> BTreeMap<u64, BTreeSet<u32>> {
        socket_owners(&self.procfs, inodes)
    }

    /// The command line of process `pid`, NUL-separated as the kernel gives it.
    pub fn cmdline(&self, pid: u32) -> Option<Vec<u8>> {
        std::fs::read(self.procfs.join(pid.to_string()).join("cmdline")).ok()
    }
}

impl Default for Host {
    fn default() -> Self {
        Self::real()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_are_taken_from_the_host_given() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host {
            root: dir.path().into(),
            sysfs: dir.path().join("sys"),
            procfs: dir.path().join("proc"),
        };
        assert!(!host.interface_exists("lo"), "not this machine's sysfs");
        std::fs::create_dir_all(dir.path().join("sys/class/net/br-x")).unwrap();
        assert!(host.interface_exists("br-x"));
        assert!(Host::real().interface_exists("lo"));
        assert!(host.udp_holders_of(&[53])[0].is_empty());
    }
}
