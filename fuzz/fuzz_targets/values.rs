//! Every validated type's `FromStr`: the first byte picks the type, the rest is the text. An
//! accepted value's text holds nothing that changes a dnsmasq line's meaning and parses back to
//! an equal value.
#![no_main]

use std::net::Ipv4Addr;

use fuzzcheck::{assert_ifname_safe, assert_line_safe, assert_round_trip};
use libfuzzer_sys::fuzz_target;
use virtmasq::model::{
    check_line_path, DnsName, IfName, Ipv4Net, Ipv4Range, LeaseTime, MacAddr, NetworkName,
    RESERVED_PREFIX,
};
use virtmasq::pxe::{BootFile, BootUrl, MachineUuid, PromptText, PxelinuxValue, ScriptUri};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(s) = std::str::from_utf8(rest) else {
        return;
    };
    match which % 15 {
        0 => {
            if let Ok(v) = s.parse::<MacAddr>() {
                assert_round_trip("MAC", &v);
                assert_line_safe("MAC", &v.dashed());
                assert_eq!(v.dashed().parse::<MacAddr>().ok(), Some(v));
            }
        }
        1 => {
            if let Ok(v) = s.parse::<IfName>() {
                assert_round_trip("interface name", &v);
                assert_ifname_safe(v.as_str());
                assert!(v.as_str().len() <= 15);
            }
        }
        2 => {
            if let Ok(v) = s.parse::<NetworkName>() {
                assert_round_trip("network name", &v);
                // It names files and directories, and tags in dnsmasq lines.
                assert!(!v.as_str().contains(['/', ' ', '=', '!', '"', '\'', '\\']));
                assert!(!matches!(v.as_str(), "." | ".."));
                assert!(!v.as_str().starts_with(RESERVED_PREFIX));
            }
        }
        3 => {
            if let Ok(v) = s.parse::<DnsName>() {
                assert_round_trip("DNS name", &v);
                assert!(!v.as_str().contains(['/', ' ', '=', '"', '\'', '\\']));
                assert!(v.as_str().len() <= 253);
            }
        }
        4 => {
            if let Ok(v) = s.parse::<Ipv4Net>() {
                assert_round_trip("IPv4 net", &v);
                assert!(v.contains(v.addr()) && v.contains(v.network()));
            }
        }
        5 => {
            if let Ok(v) = s.parse::<LeaseTime>() {
                assert_round_trip("lease time", &v);
                if let LeaseTime::Seconds(n) = v {
                    assert!((120..=i32::MAX as u64).contains(&n), "{n}");
                }
            }
        }
        6 => {
            if let Ok(v) = s.parse::<BootFile>() {
                assert_round_trip("boot file", &v);
                assert!(!v.as_str().contains([' ', '"', '\'', '\\']));
                assert_line_safe("boot file", &v.proxy_name());
            }
        }
        7 => {
            if let Ok(v) = s.parse::<BootUrl>() {
                assert_round_trip("boot URL", &v);
                assert!(!v.as_str().contains([' ', '"', '\'', '\\']));
            }
        }
        8 => {
            if let Ok(v) = s.parse::<ScriptUri>() {
                assert_round_trip("script URI", &v);
                assert!(!v.as_str().contains([' ', '"', '\'', '\\']));
            }
        }
        9 => {
            if let Ok(v) = s.parse::<PromptText>() {
                assert_round_trip("prompt", &v);
                assert!(!v.as_str().contains(['"', '\'', '\\']));
            }
        }
        10 => {
            if let Ok(v) = s.parse::<PxelinuxValue>() {
                assert_round_trip("pxelinux value", &v);
                assert!(!v.as_str().contains([' ', '"', '\'', '\\']));
            }
        }
        11 => {
            if let Ok(v) = s.parse::<MachineUuid>() {
                assert_round_trip("machine UUID", &v);
            }
        }
        12 => {
            // Ranges have no text form of their own: `start-end`.
            let Some((a, b)) = s.split_once('-') else {
                return;
            };
            let (Ok(a), Ok(b)) = (a.parse::<Ipv4Addr>(), b.parse::<Ipv4Addr>()) else {
                return;
            };
            if let Ok(r) = Ipv4Range::new(a, b) {
                assert!(r.start() <= r.end() && r.contains(a) && r.contains(b));
                assert_eq!(
                    r.len(),
                    u64::from(u32::from(b)) - u64::from(u32::from(a)) + 1
                );
            }
        }
        13 => {
            // A configured path that is written into dnsmasq lines (`dhcp-leasefile=`, ...).
            if check_line_path(s.as_ref()).is_ok() {
                fuzzcheck::assert_line_safe("path", s);
                assert!(!s.contains(|c: char| c.is_whitespace() || "\"'\\".contains(c)));
            }
        }
        _ => {
            // libvirt's `<lease expiry= unit=>`: `expiry unit`.
            let Some((n, unit)) = s.split_once(' ') else {
                return;
            };
            let Ok(n) = n.parse::<u64>() else {
                return;
            };
            if let Ok(v) = LeaseTime::from_libvirt(n, unit) {
                assert_round_trip("lease time", &v);
            }
        }
    }
});
