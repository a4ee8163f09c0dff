//! dnsmasq lease files carried into private mode. The first line of the input is the
//! network's subnets and the clock, `a.b.c.d/N ... @now`; the rest is the lease file. Every
//! line kept is one whole lease line of five fields, in a subnet and not expired, and keeping
//! again what was kept changes nothing.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use virtmasq::dnsmasq::leases::select;
use virtmasq::model::Ipv4Net;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (first, file) = text.split_once('\n').unwrap_or(("", text));
    let mut now = 1_700_000_000u64;
    let mut subnets: Vec<Ipv4Net> = Vec::new();
    for word in first.split(' ') {
        match word.strip_prefix('@') {
            Some(n) => now = n.parse().unwrap_or(now),
            None => subnets.extend(word.parse::<Ipv4Net>().ok()),
        }
    }
    let kept = select(file, &subnets, now);
    for line in &kept {
        let body = line
            .strip_suffix('\n')
            .expect("a kept line ends with a newline");
        assert!(!body.contains(['\n', '\0']), "{line:?}");
        // dnsmasq reads the file with C's isspace: its fields are ASCII-whitespace separated.
        let fields: Vec<&str> = body
            .split(|c: char| c.is_ascii_whitespace() || c == '\x0b')
            .filter(|f| !f.is_empty())
            .collect();
        assert_eq!(fields.len(), 5, "{line:?}");
        let expiry: u64 = fields[0].parse().expect("expiry");
        let ip: Ipv4Addr = fields[2].parse().expect("address");
        assert!(expiry == 0 || expiry > now);
        assert!(subnets.iter().any(|s| s.contains(ip)), "{line:?}");
    }
    let joined: String = kept.concat();
    assert_eq!(select(&joined, &subnets, now), kept);
});
