use super::*;
use crate::libvirt::xml::{HookData, NetworkXml};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/libvirt");

fn probe(body: &str) -> Probe {
    Probe::network(&format!("<network><name>n</name>{body}</network>")).unwrap()
}

#[test]
fn libvirt_serves_follows_its_own_rule() {
    // (forward mode, has <ip>, DNS enabled, DHCP or TFTP, libvirt starts a dnsmasq)
    let cases = [
        (None, true, true, false, true),
        (None, true, false, false, false),
        (None, true, false, true, true),
        (None, false, true, true, false),
        (Some("nat"), true, true, false, true),
        (Some("route"), true, false, true, true),
        (Some("open"), true, true, false, true),
        (Some("bridge"), true, true, true, false),
        (Some("passthrough"), true, true, true, false),
    ];
    for (mode, ip, dns, dhcp, want) in cases {
        assert_eq!(
            libvirt_serves(mode, ip, dns, dhcp),
            want,
            "{mode:?} {ip} {dns} {dhcp}"
        );
    }
}

#[test]
fn the_probe_reads_only_what_decides_ownership() {
    let p = probe("<bridge name='br0'/><dns enable='no'/><ip address='10.0.0.1' prefix='24'/>");
    assert!(!p.served_by_libvirt && p.has_bridge && !p.has_intent);
    assert!(!p.claimed(false) && p.claimed(true));
    // An empty <dhcp/> starts nothing; a range or a host does, and so does a TFTP root.
    let p = probe("<bridge name='b'/><dns enable='no'/><ip address='10.0.0.1'><dhcp/></ip>");
    assert!(!p.served_by_libvirt);
    let p = probe("<dns enable='no'/><ip address='10.0.0.1'><dhcp><host mac='x'/></dhcp></ip>");
    assert!(p.served_by_libvirt && !p.has_bridge);
    let p = probe("<dns enable='no'/><ip address='10.0.0.1'><tftp root='/a b'/></ip>");
    assert!(p.served_by_libvirt);
    // A bare <forward/> is nat; values are not checked.
    let p = probe("<forward/><ip address='not an address'/>");
    assert!(p.served_by_libvirt);
    let p = probe(
        "<bridge name='b'/><dns enable='no'/><ip address='10.0.0.1'/><metadata>\
         <x:dhcp xmlns:x='http://virtmasq.org/xmlns/network/1.0' bogus='1'/></metadata>",
    );
    assert!(p.has_intent && p.claimed(false));
    let p = probe("<metadata><other xmlns='urn:x'/></metadata>");
    assert!(!p.has_intent);
}

#[test]
fn names_are_taken_as_libvirt_gives_them() {
    let p = Probe::network("<network><name>a b,\n#c</name></network>").unwrap();
    assert_eq!(p.name, "a b,\n#c");
    let p = Probe::hook_data("<hookData><network><name>x y</name></network></hookData>");
    assert_eq!(p.unwrap().name, "x y");
    let err = Probe::hook_data("<hookData/>").unwrap_err().to_string();
    assert!(err.contains("it has no <network>"), "{err}");
    let err = Probe::network("<hookData/>").unwrap_err().to_string();
    assert!(err.contains("expected a <network> document"), "{err}");
}

/// Every real libvirt document in the fixtures: the probe and the full parser agree on
/// whether libvirt serves the network.
#[test]
fn the_probe_agrees_with_the_full_parser_on_the_fixtures() {
    let mut seen = 0;
    for entry in std::fs::read_dir(FIXTURES).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let (probe, full) = if text.trim_start().starts_with("<hookData") {
            let full = HookData::parse(&text).map(|h| h.network);
            (Probe::hook_data(&text), full)
        } else {
            (Probe::network(&text), NetworkXml::parse(&text))
        };
        let (Ok(probe), Ok(full)) = (probe, full) else {
            continue;
        };
        seen += 1;
        assert_eq!(
            probe.served_by_libvirt,
            full.served_by_libvirt(),
            "{}",
            path.display()
        );
        assert_eq!(probe.name, full.name.as_str());
        assert_eq!(
            probe.has_intent,
            full.metadata.is_some(),
            "{}",
            path.display()
        );
    }
    assert!(seen >= 5, "only {seen} fixtures parsed");
}
