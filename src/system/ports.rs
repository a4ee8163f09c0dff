//! Who holds a UDP port: sockets from /proc/net/udp{,6}, owners from /proc/<pid>/fd.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use serde::Serialize;

/// One process that holds a UDP socket on the port asked about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PortHolder {
    /// Its pid.
    pub pid: u32,
    /// Its command name (`/proc/<pid>/comm`).
    pub command: String,
    /// The local addresses it is bound to on that port (`0.0.0.0` is every address).
    pub addresses: Vec<String>,
}

/// The holders of UDP `port`, read from `proc` (normally `/proc`; the current network
/// namespace's sockets).
pub fn udp_holders(proc: &Path, port: u16) -> Vec<PortHolder> {
    udp_holders_of(proc, &[port]).pop().unwrap_or_default()
}

/// The holders of each of `ports`, in that order, with one read of the socket tables and one
/// of every process's descriptors for all of them.
pub fn udp_holders_of(proc: &Path, ports: &[u16]) -> Vec<Vec<PortHolder>> {
    let tables = udp_tables(proc);
    let sockets: Vec<BTreeMap<u64, BTreeSet<String>>> =
        ports.iter().map(|&p| sockets_in(&tables, p)).collect();
    let inodes: BTreeSet<u64> = sockets.iter().flat_map(|s| s.keys().copied()).collect();
    let owners = match inodes.is_empty() {
        true => BTreeMap::new(),
        false => socket_owners(proc, &inodes),
    };
    let command = |pid: u32| {
        fs::read_to_string(proc.join(pid.to_string()).join("comm"))
            .map(|c| c.trim().to_owned())
            .unwrap_or_default()
    };
    sockets
        .iter()
        .map(|by_inode| {
            let mut holders: BTreeMap<u32, PortHolder> = BTreeMap::new();
            for (inode, addrs) in by_inode {
                for &pid in owners.get(inode).into_iter().flatten() {
                    let holder = holders.entry(pid).or_insert_with(|| PortHolder {
                        pid,
                        command: command(pid),
                        addresses: Vec::new(),
                    });
                    for a in addrs {
                        if !holder.addresses.contains(a) {
                            holder.addresses.push(a.clone());
                        }
                    }
                }
            }
            holders.into_values().collect()
        })
        .collect()
}

/// Every socket on UDP `port` in the current network namespace: its inode, and the local
/// addresses it is bound to. Two reads of /proc/net/udp{,6}, each in one large buffer (the
/// kernel walks its whole UDP hash table for every read).
pub fn udp_sockets(proc: &Path, port: u16) -> BTreeMap<u64, BTreeSet<String>> {
    sockets_in(&udp_tables(proc), port)
}

/// /proc/net/udp and udp6 as read (each with whether it is the IPv6 one); a table that cannot
/// be read is left out.
fn udp_tables(proc: &Path) -> Vec<(String, bool)> {
    [("net/udp", false), ("net/udp6", true)]
        .into_iter()
        .filter_map(|(file, v6)| Some((read_table(&proc.join(file))?, v6)))
        .collect()
}

/// The sockets on `port` in `tables`: inode, and the local addresses it is bound to.
fn sockets_in(tables: &[(String, bool)], port: u16) -> BTreeMap<u64, BTreeSet<String>> {
    let mut by_inode: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for (text, v6) in tables {
        for (addr, inode) in parse_table(text, port, *v6) {
            by_inode.entry(inode).or_default().insert(addr);
        }
    }
    by_inode
}

/// A /proc table, read with a buffer large enough for most in one call.
fn read_table(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut text = String::with_capacity(64 << 10);
    fs::File::open(path).ok()?.read_to_string(&mut text).ok()?;
    Some(text)
}

/// The processes holding each of `inodes` (sockets), found by reading every process's
/// descriptors under `proc`: the costly part, which callers that ask often remember.
pub fn socket_owners(proc: &Path, inodes: &BTreeSet<u64>) -> BTreeMap<u64, BTreeSet<u32>> {
    let mut owners: BTreeMap<u64, BTreeSet<u32>> = BTreeMap::new();
    for entry in fs::read_dir(proc).into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        for fd in fs::read_dir(entry.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok())
            else {
                continue;
            };
            if inodes.contains(&inode) {
                owners.entry(inode).or_default().insert(pid);
            }
        }
    }
    owners
}

/// (local address, inode) of every socket on `port` in a /proc/net/udp table.
fn parse_table(text: &str, port: u16, v6: bool) -> Vec<(String, u64)> {
    let want = format!("{port:04X}");
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (addr, p) = cols.get(1)?.rsplit_once(':')?;
            if p != want {
                return None;
            }
            let inode = cols.get(9)?.parse().ok()?;
            Some((decode_addr(addr, v6)?, inode))
        })
        .collect()
}

/// /proc/net/udp prints addresses as host-order 32-bit hex words.
fn decode_addr(hex: &str, v6: bool) -> Option<String> {
    let words: Vec<u32> = (0..hex.len() / 8)
        .map(|i| u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16).ok())
        .collect::<Option<_>>()?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    if v6 {
        let b: [u8; 16] = bytes.try_into().ok()?;
        Some(std::net::Ipv6Addr::from(b).to_string())
    } else {
        let b: [u8; 4] = bytes.try_into().ok()?;
        Some(std::net::Ipv4Addr::from(b).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_udp() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
          1: 00000000:0043 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 12345 2 0 0\n\
          2: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 777 2 0 0\n";
        assert_eq!(
            parse_table(v4, 67, false),
            vec![("0.0.0.0".to_string(), 12345)]
        );
        assert_eq!(
            parse_table(v4, 53, false),
            vec![("127.0.0.1".to_string(), 777)]
        );
        let v6 = "  sl  local_address ...\n  3: 00000000000000000000000001000000:0035 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000   0 0 888 2 0 0\n";
        assert_eq!(parse_table(v6, 53, true), vec![("::1".to_string(), 888)]);
    }

    /// Two ports, one look at the descriptors: each port's holders, in the order asked.
    #[test]
    fn finds_the_holders_of_several_ports_at_once() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.3:0").unwrap();
        let (pa, pb) = (
            a.local_addr().unwrap().port(),
            b.local_addr().unwrap().port(),
        );
        let me = std::process::id();
        let both = udp_holders_of(Path::new("/proc"), &[pb, pa]);
        let mine = |holders: &[PortHolder]| {
            let h = holders.iter().find(|h| h.pid == me).expect("our socket");
            h.addresses.clone()
        };
        assert_eq!(mine(&both[0]), ["127.0.0.3"]);
        assert_eq!(mine(&both[1]), ["127.0.0.1"]);
    }

    #[test]
    fn finds_our_own_socket() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = sock.local_addr().unwrap().port();
        let holders = udp_holders(Path::new("/proc"), port);
        let me = std::process::id();
        let mine = holders.iter().find(|h| h.pid == me).expect("our socket");
        assert_eq!(mine.addresses, vec!["127.0.0.1".to_string()]);
    }
}
