//! libvirt's view of a network's leases: the JSON status file its network driver reads for
//! `virsh net-dhcp-leases` and `virsh domifaddr --source lease`
//! (`/var/lib/libvirt/dnsmasq/<bridge>.status`). libvirt's own dnsmasq keeps it through
//! libvirt's leases helper (a `dhcp-script`); for a network virtmasq serves, virtmasq writes it
//! from the lease file of the dnsmasq that serves the network. Pure: lease text in, JSON out.
//!
//! The format is the helper's: an array of objects with `ip-address`, `mac-address` (IPv4),
//! `iaid` and `server-duid` (IPv6), `hostname` and `client-id` when known, and `expiry-time` in
//! seconds since the epoch. libvirt refuses the whole file if an entry lacks `ip-address` or
//! `expiry-time`, and lists no lease whose expiry time has passed.

use std::net::IpAddr;

use serde::Serialize;

/// The expiry written for a lease that never expires (dnsmasq writes 0): libvirt needs a time,
/// and drops leases whose time has passed. The last second of the year 9999.
pub const NEVER: u64 = 253_402_300_799;

/// One lease as libvirt's helper writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusLease {
    /// The IPv6 lease's identity association.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iaid: Option<String>,
    /// The address.
    #[serde(rename = "ip-address")]
    pub ip: IpAddr,
    /// The client's MAC address (IPv4 leases).
    #[serde(rename = "mac-address", skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The name the client gave.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The client identifier (IPv4) or DUID (IPv6).
    #[serde(rename = "client-id", skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The server's DUID (IPv6 leases).
    #[serde(rename = "server-duid", skip_serializing_if = "Option::is_none")]
    pub server_duid: Option<String>,
    /// When it expires, in seconds since the epoch.
    #[serde(rename = "expiry-time")]
    pub expiry: u64,
}

/// The leases of a dnsmasq lease file (`<expiry> <mac> <ip> <name> <client-id>` for IPv4; after a
/// `duid <server-duid>` line, `<expiry> <iaid> <ip> <name> <client-duid>` for IPv6) whose address
/// `belongs` to the network and that have not expired at `now`. `*` is dnsmasq's "unknown".
/// Lines that are not dnsmasq's are skipped.
pub fn leases(text: &str, belongs: impl Fn(IpAddr) -> bool, now: u64) -> Vec<StatusLease> {
    let known = |f: &str| (f != "*").then(|| f.to_owned());
    let mut server_duid: Option<String> = None;
    let mut out = Vec::new();
    for line in text.lines() {
        if !line
            .chars()
            .all(|c| c.is_ascii_graphic() || c == ' ' || c == '\t')
        {
            continue;
        }
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if let ["duid", duid] = f[..] {
            server_duid = Some(duid.to_owned());
            continue;
        }
        let [expiry, id, ip, name, client] = f[..] else {
            continue;
        };
        let (Ok(expiry), Ok(ip)) = (expiry.parse::<u64>(), ip.parse::<IpAddr>()) else {
            continue;
        };
        let expiry = if expiry == 0 { NEVER } else { expiry };
        if expiry <= now || !belongs(ip) {
            continue;
        }
        let v6 = ip.is_ipv6();
        out.push(StatusLease {
            iaid: v6.then(|| id.to_owned()),
            ip,
            mac: (!v6).then(|| id.to_owned()),
            hostname: known(name),
            client_id: known(client),
            server_duid: if v6 { server_duid.clone() } else { None },
            expiry,
        });
    }
    out
}

/// The status file's text for `leases`.
pub fn status_json(leases: &[StatusLease]) -> String {
    let mut text = serde_json::to_string_pretty(leases).unwrap_or_else(|_| "[]".into());
    text.push('\n');
    text
}

/// The status file libvirt reads for the network on `bridge`, under its dnsmasq state
/// directory.
pub fn file_name(bridge: &str) -> String {
    format!("{bridge}.status")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASES: &str = "\
1900000000 52:54:00:aa:00:01 10.9.0.101 guest1 01:52:54:00:aa:00:01
0 52:54:00:aa:00:02 10.9.0.102 * *
1000 52:54:00:aa:00:03 10.9.0.103 old *
1900000000 52:54:00:bb:00:01 10.8.0.5 elsewhere *
garbage line
duid 00:01:00:01:2c:00:00:01:52:54:00:00:00:01
1900000000 1234 fd00:9::10 v6guest 00:04:aa:bb
";

    fn ours(ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => a.octets()[..3] == [10, 9, 0],
            IpAddr::V6(a) => a.segments()[..2] == [0xfd00, 9],
        }
    }

    #[test]
    fn leases_of_the_network_that_have_not_expired() {
        let got = leases(LEASES, ours, 1_800_000_000);
        let ips: Vec<String> = got.iter().map(|l| l.ip.to_string()).collect();
        assert_eq!(ips, ["10.9.0.101", "10.9.0.102", "fd00:9::10"]);
        assert_eq!(got[0].hostname.as_deref(), Some("guest1"));
        assert_eq!(got[0].client_id.as_deref(), Some("01:52:54:00:aa:00:01"));
        assert_eq!(got[1].hostname, None, "* is unknown");
        assert_eq!(got[1].expiry, NEVER, "0 never expires");
        assert_eq!(got[2].iaid.as_deref(), Some("1234"));
        assert_eq!(got[2].mac, None);
        assert_eq!(
            got[2].server_duid.as_deref(),
            Some("00:01:00:01:2c:00:00:01:52:54:00:00:00:01")
        );
    }

    #[test]
    fn json_as_libvirts_helper_writes_it() {
        let got = leases(LEASES, ours, 1_800_000_000);
        let v: serde_json::Value = serde_json::from_str(&status_json(&got[..1])).unwrap();
        assert_eq!(
            v,
            serde_json::json!([{
                "ip-address": "10.9.0.101",
                "mac-address": "52:54:00:aa:00:01",
                "hostname": "guest1",
                "client-id": "01:52:54:00:aa:00:01",
                "expiry-time": 1_900_000_000u64,
            }])
        );
        assert_eq!(status_json(&[]), "[]\n");
        assert_eq!(file_name("virbr7"), "virbr7.status");
    }
}
