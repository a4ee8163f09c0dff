//! dnsmasq lease files: carrying a network's leases over when it moves from the system
//! dnsmasq to a private instance, so a running guest keeps its address. The system's lease file
//! is only read (it is dnsmasq's, not virtmasq's); the private one is virtmasq's own.

use std::net::Ipv4Addr;
use std::path::Path;

use crate::fsutil;
use crate::model::Ipv4Net;

/// Where dnsmasq keeps leases unless told otherwise (Debian's build).
pub const SYSTEM_DEFAULT: &str = "/var/lib/misc/dnsmasq.leases";

/// The IPv4 lease lines of `text` (`<expiry> <mac> <ip> <name> <client-id>`) whose address lies
/// in one of `subnets` and that have not expired at `now` (expiry 0 never does). Fields are
/// split the way dnsmasq reads them back (C's `isspace`); a line with other control characters
/// or non-ASCII text is not one dnsmasq wrote, and is not carried.
pub fn select(text: &str, subnets: &[Ipv4Net], now: u64) -> Vec<String> {
    let c_space = |c: char| c.is_ascii_whitespace() || c == '\x0b';
    text.lines()
        .filter(|line| line.chars().all(|c| c_space(c) || c.is_ascii_graphic()))
        .filter(|line| {
            let f: Vec<&str> = line.split(c_space).filter(|f| !f.is_empty()).collect();
            let [expiry, _mac, ip, _name, _id] = f[..] else {
                return false;
            };
            let (Ok(expiry), Ok(ip)) = (expiry.parse::<u64>(), ip.parse::<Ipv4Addr>()) else {
                return false;
            };
            (expiry == 0 || expiry > now) && subnets.iter().any(|s| s.contains(ip))
        })
        .map(|l| format!("{}\n", l.trim_matches(c_space)))
        .collect()
}

/// Starts the private lease file `dst` with the leases of `subnets` found in `src` (the
/// system dnsmasq's lease file), unless `dst` exists already. Returns how many were carried.
pub fn seed(src: &Path, dst: &Path, subnets: &[Ipv4Net]) -> std::io::Result<usize> {
    if dst.symlink_metadata().is_ok() {
        return Ok(0);
    }
    let Some(bytes) = fsutil::read_if_exists(src)? else {
        return Ok(0);
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let lines = select(&String::from_utf8_lossy(&bytes), subnets, now);
    if lines.is_empty() {
        return Ok(0);
    }
    fsutil::write_atomic(dst, lines.concat().as_bytes(), 0o644)?;
    Ok(lines.len())
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
        assert_eq!(seed(&src, &dst, &[net]).unwrap(), 1);
        std::fs::write(&src, "0 52:54:00:00:00:09 10.97.0.129 * *\n").unwrap();
        assert_eq!(
            seed(&src, &dst, &[net]).unwrap(),
            0,
            "an existing file is kept"
        );
        assert!(std::fs::read_to_string(&dst)
            .unwrap()
            .contains("10.97.0.122"));
        assert_eq!(
            seed(&dir.path().join("none"), &dir.path().join("x"), &[net]).unwrap(),
            0
        );
    }
}
