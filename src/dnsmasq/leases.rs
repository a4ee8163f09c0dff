//! dnsmasq lease files: carrying a network's leases over when it moves from the system
//! dnsmasq to a private instance, so a running guest keeps its address. The system's lease file
//! is only read (it is dnsmasq's, not virtmasq's); the private one is virtmasq's own.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use crate::fsutil;
use crate::model::{Ipv4Net, Ipv6Net};

/// Where dnsmasq keeps leases unless told otherwise (Debian's build).
pub const SYSTEM_DEFAULT: &str = "/var/lib/misc/dnsmasq.leases";

/// The IPv4 lease lines of `text` (`<expiry> <mac> <ip> <name> <client-id>`) whose address lies
/// in one of `subnets` and that have not expired at `now` (expiry 0 never does). Fields are
/// split the way dnsmasq reads them back (C's `isspace`); a line with other control characters
/// or non-ASCII text is not one dnsmasq wrote, and is not carried.
pub fn select(text: &str, subnets: &[Ipv4Net], now: u64) -> Vec<String> {
    live_lines(text, now, |ip| {
        ip.parse::<Ipv4Addr>()
            .is_ok_and(|ip| subnets.iter().any(|s| s.contains(ip)))
    })
}

/// The DHCPv6 leases of `text` (`<expiry> <iaid> <ip6> <name> <duid>`, after the server's
/// `duid` line) whose address lies in one of `subnets` and that have not expired, preceded by
/// that `duid` line: the private instance then answers as the same server, so a guest's
/// renewal is not refused for naming another one.
pub fn select6(text: &str, subnets: &[Ipv6Net], now: u64) -> Vec<String> {
    let leases = live_lines(text, now, |ip| {
        ip.parse::<Ipv6Addr>()
            .is_ok_and(|ip| subnets.iter().any(|s| s.contains(ip)))
    });
    let duid = text.lines().map(str::trim).find(|l| {
        l.strip_prefix("duid ")
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_hexdigit() || b == b':'))
    });
    match duid {
        Some(duid) if !leases.is_empty() => {
            std::iter::once(format!("{duid}\n")).chain(leases).collect()
        }
        _ => Vec::new(),
    }
}

/// The lease lines of five fields, unexpired at `now`, whose address `wanted` accepts.
fn live_lines(text: &str, now: u64, wanted: impl Fn(&str) -> bool) -> Vec<String> {
    let c_space = |c: char| c.is_ascii_whitespace() || c == '\x0b';
    text.lines()
        .filter(|line| line.chars().all(|c| c_space(c) || c.is_ascii_graphic()))
        .filter(|line| {
            let f: Vec<&str> = line.split(c_space).filter(|f| !f.is_empty()).collect();
            let [expiry, _mac, ip, _name, _id] = f[..] else {
                return false;
            };
            let Ok(expiry) = expiry.parse::<u64>() else {
                return false;
            };
            (expiry == 0 || expiry > now) && wanted(ip)
        })
        .map(|l| format!("{}\n", l.trim_matches(c_space)))
        .collect()
}

/// Starts the private lease file `dst` with the leases of `subnets` and `subnets6` found in
/// `src` (the system dnsmasq's lease file), unless `dst` exists already. Returns how many were
/// carried.
pub fn seed(
    src: &Path,
    dst: &Path,
    subnets: &[Ipv4Net],
    subnets6: &[Ipv6Net],
) -> std::io::Result<usize> {
    if dst.symlink_metadata().is_ok() {
        return Ok(0);
    }
    let Some(bytes) = fsutil::read_if_exists(src)? else {
        return Ok(0);
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let text = String::from_utf8_lossy(&bytes);
    let v4 = select(&text, subnets, now);
    let v6 = select6(&text, subnets6, now);
    let carried = v4.len() + v6.len().saturating_sub(1);
    if carried == 0 {
        return Ok(0);
    }
    fsutil::write_atomic(dst, [v4, v6].concat().concat().as_bytes(), 0o644)?;
    Ok(carried)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_live_leases_of_the_subnet_only() {
        let text = "\
2000 52:54:00:00:00:01 10.97.0.120 guest1 01:52:54:00:00:01
500 52:54:00:00:00:02 10.97.0.121 * *
0 52:54:00:00:00:03 10.97.0.122 * *
2000 52:54:00:00:00:04 10.98.0.120 other *
duid 00:01:00:01:2c:1f:aa:bb:52:54:00:00:00:05
2000 1234 fd00::10 * 00:01
garbage
";
        let net: Ipv4Net = "10.97.0.1/24".parse().unwrap();
        let got = select(text, &[net], 1000);
        assert_eq!(
            got,
            vec![
                "2000 52:54:00:00:00:01 10.97.0.120 guest1 01:52:54:00:00:01\n".to_string(),
                "0 52:54:00:00:00:03 10.97.0.122 * *\n".to_string(),
            ]
        );
    }

    /// DHCPv6 leases come along with the server's DUID, so the private dnsmasq answers a
    /// guest's renewal as the same server.
    #[test]
    fn keeps_live_ipv6_leases_of_the_subnet_with_the_server_duid() {
        let text = "\
2000 52:54:00:00:00:01 10.97.0.120 guest1 01:52:54:00:00:01
duid 00:01:00:01:2c:1f:aa:bb:52:54:00:00:00:05
2000 1234 fd00:97::10 guest6 00:03:00:01:52:54:00:00:00:01
500 1235 fd00:97::11 * 00:03:00:01:52:54:00:00:00:02
2000 1236 fd00:98::10 * 00:03:00:01:52:54:00:00:00:03
";
        let net6: Ipv6Net = "fd00:97::1/64".parse().unwrap();
        assert_eq!(
            select6(text, &[net6], 1000),
            [
                "duid 00:01:00:01:2c:1f:aa:bb:52:54:00:00:00:05\n",
                "2000 1234 fd00:97::10 guest6 00:03:00:01:52:54:00:00:00:01\n",
            ]
        );
        let other: Ipv6Net = "fd00:99::1/64".parse().unwrap();
        assert!(
            select6(text, &[other], 1000).is_empty(),
            "no lease, no duid line"
        );
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("system"), dir.path().join("lab"));
        // Leases that never expire, since seed reads the real clock.
        std::fs::write(&src, text.replace("2000 ", "0 ")).unwrap();
        let net: Ipv4Net = "10.97.0.1/24".parse().unwrap();
        assert_eq!(seed(&src, &dst, &[net], &[net6]).unwrap(), 2);
        let seeded = std::fs::read_to_string(&dst).unwrap();
        assert!(seeded.starts_with("0 52:54:00:00:00:01") && seeded.contains("\nduid 00:01"));
    }

    /// Found by fuzzing: a line with a NUL (or a field split by a non-ASCII space, which
    /// dnsmasq does not split on) was carried into the private lease file.
    #[test]
    fn lines_dnsmasq_would_read_otherwise_are_not_carried() {
        let net: Ipv4Net = "10.97.0.1/24".parse().unwrap();
        for line in [
            "0 52:54:00\0:00:00:03 10.97.0.122 * *",
            "0 52:54:00:00:00:03 10.97.0.122 *\u{a0}x *",
            "0 52:54:00:00:00:03\u{2003}10.97.0.122 * * x",
            "0 52:54:00:00:00:03 10.97.0.122 n\u{e9} *",
        ] {
            assert_eq!(select(line, &[net], 1000), Vec::<String>::new(), "{line:?}");
        }
        let tabs = "0\t52:54:00:00:00:03\x0b10.97.0.122 * *\r\n";
        assert_eq!(select(tabs, &[net], 1000).len(), 1);
    }

    #[test]
    fn seeds_only_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("system.leases");
        let dst = dir.path().join("lab.leases");
        std::fs::write(&src, "0 52:54:00:00:00:03 10.97.0.122 * *\n").unwrap();
        let net: Ipv4Net = "10.97.0.1/24".parse().unwrap();
        assert_eq!(seed(&src, &dst, &[net], &[]).unwrap(), 1);
        std::fs::write(&src, "0 52:54:00:00:00:09 10.97.0.129 * *\n").unwrap();
        assert_eq!(
            seed(&src, &dst, &[net], &[]).unwrap(),
            0,
            "an existing file is kept"
        );
        assert!(std::fs::read_to_string(&dst)
            .unwrap()
            .contains("10.97.0.122"));
        assert_eq!(
            seed(&dir.path().join("none"), &dir.path().join("x"), &[net], &[]).unwrap(),
            0
        );
    }
}
