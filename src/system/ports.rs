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
    let mut by_inode: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for (file, v6) in [("net/udp", false), ("net/udp6", true)] {
        let Ok(text) = fs::read_to_string(proc.join(file)) else {
            continue;
        };
        for (addr, inode) in parse_table(&text, port, v6) {
            by_inode.entry(inode).or_default().insert(addr);
        }
    }
    if by_inode.is_empty() {
        return Vec::new();
    }
    let mut holders: BTreeMap<u32, PortHolder> = BTreeMap::new();
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
            if let Some(addrs) = by_inode.get(&inode) {
                let holder = holders.entry(pid).or_insert_with(|| PortHolder {
                    pid,
                    command: fs::read_to_string(entry.path().join("comm"))
                        .map(|c| c.trim().to_owned())
                        .unwrap_or_default(),
                    addresses: Vec::new(),
                });
                for a in addrs {
                    if !holder.addresses.contains(a) {
                        holder.addresses.push(a.clone());
                    }
                }
            }
        }
    }
    holders.into_values().collect()
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
