use super::*;
use crate::agent::desired::managed;
use crate::config::Config;
use crate::model::{IntentSource, LeaseTime};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/libvirt");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap()
}

/// A libvirt-served network with everything virtmasq carries over, and other programs'
/// metadata that must survive both ways.
const FULL: &str = "<network>
  <name>vq-ad</name>
  <uuid>2bebdec4-3c33-4039-b9d5-f0dedd1d7aa6</uuid>
  <metadata>
    <other:thing xmlns:other=\"urn:other\" keep=\"yes\"/>
  </metadata>
  <forward mode='route'/>
  <bridge name='vqbr-ad' stp='on' delay='0'/>
  <mac address='52:54:00:7f:d0:44'/>
  <domain name='ad.example' localOnly='yes'/>
  <dns enable='yes'/>
  <ip address='10.82.0.1' prefix='24'>
    <dhcp>
      <range start='10.82.0.100' end='10.82.0.150'>
        <lease expiry='2' unit='hours'/>
      </range>
      <range start='10.82.0.200' end='10.82.0.210'/>
      <host mac='52:54:00:AA:00:01' name='n1' ip='10.82.0.10'/>
    </dhcp>
  </ip>
  <ip address='10.83.0.1' prefix='24'>
  </ip>
</network>
";

/// `virsh net-dumpxml --inactive` of a network defined from `adopt`'s output by libvirtd
/// 9.0.0 (Debian 12): pretty-printed again, double quotes inside `<metadata>`.
const DUMPED_ADOPTED: &str = r#"<network>
  <name>vq-md</name>
  <uuid>bc776c1e-9398-48c5-a942-e2d16563f1b8</uuid>
  <metadata>
    <virtmasq:dhcp xmlns:virtmasq="http://virtmasq.org/xmlns/network/1.0" dns="yes">
      <virtmasq:range start="10.83.0.100" end="10.83.0.150" lease="2h"/>
      <virtmasq:host mac="52:54:00:aa:00:01" ip="10.83.0.10" name="n1"/>
    </virtmasq:dhcp>
    <virtmasq-saved:libvirt xmlns:virtmasq-saved="http://virtmasq.org/xmlns/libvirt-saved/1.0">
      <ip address="10.83.0.1">
        <dhcp>
          <range start="10.83.0.100" end="10.83.0.150">
            <lease expiry="2" unit="hours"/>
          </range>
          <host mac="52:54:00:AA:00:01" ip="10.83.0.10" name="n1"/>
        </dhcp>
      </ip>
      <dns enable="yes"/>
    </virtmasq-saved:libvirt>
  </metadata>
  <bridge name='vqbr-md' stp='on' delay='0'/>
  <mac address='52:54:00:57:00:69'/>
  <dns enable='no'/>
  <ip address='10.83.0.1' prefix='24'>
  </ip>
</network>
"#;

fn assert_same(a: &str, b: &str) {
    if let Some(diff) = difference(a, b).unwrap() {
        panic!("{diff}\n--- expected\n{a}\n--- got\n{b}");
    }
}

#[test]
fn adopt_then_release_gives_back_the_original() {
    for xml in [fixture("test-driver-default.xml"), FULL.to_owned()] {
        let adopted = adopt(&xml).unwrap();
        let released = release(&adopted.xml).unwrap();
        assert_same(&xml, &released);
    }
}

/// IPv6 comes along: the DHCPv6 range with its lease, the host by DUID and name, and the
/// whole network back as it was on release.
#[test]
fn adopt_carries_ipv6_over_and_release_gives_it_back() {
    let xml = fixture("libvirtd-ipv6.xml");
    let adopted = adopt(&xml).unwrap();
    let intent = &adopted.intent;
    assert_eq!(intent.ranges6.len(), 1, "{}", adopted.xml);
    assert_eq!(intent.ranges6[0].range.to_string(), "fd00::100-fd00::1ff");
    assert_eq!(intent.ranges6[0].lease, Some(LeaseTime::Seconds(3600)));
    let host = &intent.hosts6[0];
    assert_eq!(
        host.id.as_ref().unwrap().as_str(),
        "00:04:7e:7d:f0:7d:a8:bc:c5:d2:13:32:11:ed:16:ea:84:63"
    );
    assert_eq!(
        (host.ip.to_string(), host.name.as_ref().unwrap().as_str()),
        ("fd00::10".into(), "node6")
    );
    for line in [
        "<virtmasq:range start=\"fd00::100\" end=\"fd00::1ff\" lease=\"1h\"/>",
        "<virtmasq:host id=\"00:04:7e:7d:f0:7d:a8:bc:c5:d2:13:32:11:ed:16:ea:84:63\" ip=\"fd00::10\" name=\"node6\"/>",
    ] {
        assert!(adopted.xml.contains(line), "{line} missing:\n{}", adopted.xml);
    }
    let served = managed(&adopted.xml, &Config::default()).unwrap().network;
    assert_eq!(served.subnets6.len(), 1);
    assert!(served.has_dhcp6());
    assert_same(&xml, &release(&adopted.xml).unwrap());
    // Several IPv4 and IPv6 <ip>: a SLAAC-only IPv6 one beside, and a host with its own lease.
    let more = xml
        .replace(
            "<host id=",
            "<host name='byname' ip='fd00::11'><lease expiry='30' unit='minutes'/></host>\n      <host id=",
        )
        .replace(
            "</network>",
            "  <ip family='ipv6' address='fd00:1::1' prefix='64'>\n  </ip>\n</network>",
        );
    let adopted = adopt(&more).unwrap();
    let byname = &adopted.intent.hosts6[0];
    assert_eq!(byname.lease, Some(LeaseTime::Seconds(1800)));
    let served = managed(&adopted.xml, &Config::default()).unwrap().network;
    assert_eq!(served.subnets6.len(), 2);
    assert_same(&more, &release(&adopted.xml).unwrap());
}

#[test]
fn an_adopted_network_is_served_by_virtmasq_and_not_by_libvirt() {
    let adopted = adopt(FULL).unwrap();
    let net = NetworkXml::parse(&adopted.xml).unwrap();
    assert!(!net.served_by_libvirt(), "{}", adopted.xml);
    assert!(!net.dns_enabled);
    assert!(net.ips.iter().all(|ip| ip.dhcp.is_none()));
    assert_eq!(net.metadata.as_ref(), Some(&adopted.intent));
    let intent = &adopted.intent;
    assert!(intent.dns, "libvirt answered DNS, so virtmasq does");
    assert_eq!(intent.domain.as_ref().unwrap().as_str(), "ad.example");
    assert_eq!(intent.ranges.len(), 2);
    assert_eq!(intent.ranges[0].lease, Some(LeaseTime::Seconds(7200)));
    assert_eq!(intent.ranges[1].lease, None);
    assert_eq!(intent.hosts[0].mac.to_string(), "52:54:00:aa:00:01");
    let served = managed(&adopted.xml, &Config::default()).unwrap();
    assert_eq!(served.source, IntentSource::Metadata);
    assert_eq!(served.network.bridge.as_str(), "vqbr-ad");
    // Other programs' metadata, the forward mode and the domain stay where they were.
    for kept in ["<other:thing", "<forward mode='route'/>", "localOnly='yes'"] {
        assert!(adopted.xml.contains(kept), "{kept} lost:\n{}", adopted.xml);
    }
}

#[test]
fn a_network_without_dns_or_metadata_gets_both() {
    let adopted = adopt(&fixture("test-driver-default.xml")).unwrap();
    assert!(
        adopted.xml.contains("<dns enable='no'/>\n  <ip "),
        "{}",
        adopted.xml
    );
    let doc = roxmltree::Document::parse(&adopted.xml).unwrap();
    let meta = child(doc.root_element(), "metadata").unwrap();
    assert_eq!(meta.children().filter(|c| is_ours(c)).count(), 2);
}

#[test]
fn release_reads_what_libvirt_dumps_of_an_adopted_network() {
    let released = release(DUMPED_ADOPTED).unwrap();
    let net = NetworkXml::parse(&released).unwrap();
    assert!(net.served_by_libvirt() && net.dns_enabled && net.metadata.is_none());
    assert!(!released.contains("<metadata"), "{released}");
    let dhcp = net.ips[0].dhcp.as_ref().unwrap();
    assert_eq!(dhcp.hosts[0].ip, Some("10.83.0.10".parse().unwrap()));
    assert_eq!(dhcp.ranges[0].lease, Some(LeaseTime::Seconds(7200)));
}

#[test]
fn release_puts_dhcp_into_a_self_closed_ip() {
    let xml = DUMPED_ADOPTED.replace(
        "<ip address='10.83.0.1' prefix='24'>\n  </ip>",
        "<ip address='10.83.0.1' prefix='24'/>",
    );
    let released = release(&xml).unwrap();
    assert!(
        NetworkXml::parse(&released).unwrap().ips[0].dhcp.is_some(),
        "{released}"
    );
}

#[test]
fn release_refuses_what_does_not_add_up() {
    let edited = DUMPED_ADOPTED.replace("lease=\"2h\"", "lease=\"3h\"");
    let readdressed = DUMPED_ADOPTED.replace("<ip address='10.83.0.1'", "<ip address='10.84.0.1'");
    let dhcp_again = DUMPED_ADOPTED.replace(
        "prefix='24'>\n",
        "prefix='24'>\n<dhcp><range start='10.83.0.2' end='10.83.0.3'/></dhcp>",
    );
    let cases: [(&str, &[&str]); 4] = [
        (FULL, &["was not adopted", "no saved libvirt settings"]),
        (
            &edited,
            &[
                "changed since it was adopted",
                "lease=\"3h\"",
                "lease=\"2h\"",
            ],
        ),
        (&readdressed, &["no longer has an <ip address='10.83.0.1'>"]),
        (&dhcp_again, &["libvirt serves it again"]),
    ];
    for (xml, needles) in cases {
        let err = release(xml).unwrap_err().to_string();
        for n in needles {
            assert!(err.contains(n), "{err}\nmissing {n:?}");
        }
    }
}

/// libvirt's NAT fixture uses nearly everything a network can give its dnsmasq (TFTP, boot
/// file, DNS records and forwarders, per-host leases, localPtr, MTU, raw options): it goes over
/// whole and comes back as it was.
#[test]
fn a_network_with_everything_goes_over_and_comes_back() {
    let xml = fixture("libvirtd-nat.xml");
    let adopted = adopt(&xml).unwrap_or_else(|e| panic!("{}", crate::error::chain(&e)));
    let net = crate::agent::desired::checked(
        &crate::libvirt::xml::NetworkXml::parse(&adopted.xml).unwrap(),
        &crate::config::Config::default(),
    )
    .unwrap()
    .network;
    let s = &net.settings;
    assert_eq!(
        s.tftp_root.as_deref(),
        Some(std::path::Path::new("/tmp/vqfix/tftp"))
    );
    assert_eq!(
        s.bootp.as_ref().map(|b| b.file.as_str()),
        Some("pxelinux.0")
    );
    assert_eq!(
        (s.dns.forwarders.len(), s.dns.srv.len(), s.dns.hosts.len()),
        (1, 1, 1)
    );
    assert_eq!(s.raw_options.len(), 1);
    assert_eq!(s.local_ptr.len(), 1);
    assert!(!crate::libvirt::xml::NetworkXml::parse(&adopted.xml)
        .unwrap()
        .served_by_libvirt());
    assert_same(&xml, &release(&adopted.xml).unwrap());
}

#[test]
fn adopt_refuses_what_virtmasq_would_not_serve() {
    let overlapping = FULL.replace("start='10.82.0.200'", "start='10.82.0.140'");
    let cases: [(String, &[&str]); 6] = [
        (
            fixture("libvirtd-ipv6.xml").replace("id='0:4:7e", "id='0004:7e"),
            &[
                "<ip address='fd00::1'>: <host> 0004:7e",
                "not a DUID of colon-separated bytes",
            ],
        ),
        (
            fixture("libvirtd-isolated-metadata.xml"),
            &["already adopted"],
        ),
        (
            fixture("libvirtd-bridge-inactive.xml"),
            &["not served by libvirt"],
        ),
        (
            fixture("libvirtd-classful.xml"),
            &["vq-classful", "refused"],
        ),
        (adopt(FULL).unwrap().xml, &["already adopted"]),
        (
            overlapping,
            &["vq-ad", "refused", "overlaps 10.82.0.100-10.82.0.150"],
        ),
    ];
    for (xml, needles) in cases {
        let err = adopt(&xml).unwrap_err();
        let text = crate::error::chain(&err);
        for n in needles {
            assert!(text.contains(n), "{text}\nmissing {n:?}");
        }
    }
}

#[test]
fn metadata_of_any_shape_receives_the_elements() {
    for (before, after) in [
        (
            "<metadata>\n    <other:thing xmlns:other=\"urn:other\" keep=\"yes\"/>\n  </metadata>",
            "<metadata/>",
        ),
        (
            "<metadata>\n    <other:thing xmlns:other=\"urn:other\" keep=\"yes\"/>\n  </metadata>",
            "",
        ),
    ] {
        let xml = FULL.replace(before, after);
        let adopted = adopt(&xml).unwrap();
        assert!(
            NetworkXml::parse(&adopted.xml).unwrap().metadata.is_some(),
            "{}",
            adopted.xml
        );
        assert_same(
            &xml.replace("<metadata/>", ""),
            &release(&adopted.xml).unwrap(),
        );
    }
}

/// Found by fuzzing: text beside `<dhcp>` inside `<ip>` came back on the other side of it, and
/// the released definition compared unequal although libvirt reads both the same.
#[test]
fn text_between_libvirt_elements_does_not_count() {
    let xml = FULL
        .replace("    <dhcp>", "  ! <dhcp>")
        .replace("    </dhcp>\n  </ip>", "    </dhcp>\n ( </ip>");
    assert_ne!(xml, FULL);
    let released = release(&adopt(&xml).unwrap().xml).unwrap();
    assert_same(&xml, &released);
    assert!(difference("<n><x>t</x></n>", "<n><x>u</x></n>")
        .unwrap()
        .is_some());
    assert!(difference(
        "<m:n xmlns:m='urn:m'>a<x/></m:n>",
        "<m:n xmlns:m='urn:m'><x/></m:n>"
    )
    .unwrap()
    .is_some());
}

/// Found by fuzzing: a `<metadata>` holding only text was removed by `release`, text and all.
#[test]
fn release_keeps_metadata_that_holds_text() {
    let other = "<other:thing xmlns:other=\"urn:other\" keep=\"yes\"/>";
    let xml = FULL.replace(other, "some note");
    assert_ne!(xml, FULL);
    let released = release(&adopt(&xml).unwrap().xml).unwrap();
    assert_same(&xml, &released);
    assert!(released.contains("some note"), "{released}");
}

/// Found by fuzzing: re-indenting the saved `<dhcp>` also changed the spaces of an attribute
/// value that spans lines, so the released definition had another value. libvirt never writes
/// one; adopt refuses it.
#[test]
fn adopt_refuses_line_breaks_that_are_content() {
    let xml = FULL.replace(
        "<range start='10.82.0.200' end='10.82.0.210'/>",
        "<other a='x\n\n          y'/>\n      <range start='10.82.0.200' end='10.82.0.210'/>",
    );
    assert_ne!(xml, FULL);
    let Err(AdoptError::Unsupported { reasons, .. }) = adopt(&xml) else {
        panic!("adopted a <dhcp> that its saved copy cannot keep");
    };
    assert!(
        reasons.iter().any(|r| r.contains("line break")),
        "{reasons:?}"
    );
}

/// Found by fuzzing: two `<ip>` of one address were adopted, and release then refused to give
/// their `<dhcp>` back.
#[test]
fn adopt_refuses_one_address_twice() {
    let ip = "  <ip address='10.83.0.1' prefix='24'>\n  </ip>\n";
    let dhcp = "  <ip address='10.82.0.1' prefix='24'>\n    <dhcp>\n      \
                <range start='10.82.0.20' end='10.82.0.30'/>\n    </dhcp>\n  </ip>\n";
    let xml = FULL.replace(ip, dhcp);
    assert_ne!(xml, FULL);
    let Err(AdoptError::Unsupported { reasons, .. }) = adopt(&xml) else {
        panic!("adopted one address twice");
    };
    assert!(reasons[0].contains("twice"), "{reasons:?}");
}

#[test]
fn difference_ignores_formatting_and_finds_changes() {
    let a = "<n a='1' b=\"2\"><x>t</x>\n</n>";
    assert_eq!(
        difference(a, "<n b='2'  a='1'>\n  <x> t </x></n>").unwrap(),
        None
    );
    let diff = difference(a, "<n a='1' b='3'><x>t</x></n>")
        .unwrap()
        .unwrap();
    assert!(diff.contains("b=\\\"3\\\""), "{diff}");
    assert!(difference(a, "<n a='1' b='2'><x>t</x><y/></n>")
        .unwrap()
        .is_some());
    assert!(difference(a, "<n a='1' b='2'/>").unwrap().is_some());
}

/// Saved metadata with two copies of one `<ip address>` made two edits of the same self-closed
/// `<ip/>`: the splice panicked (a `debug_assert`, and a slice out of order without it).
#[test]
fn release_refuses_a_saved_ip_twice_instead_of_panicking() {
    let saved_ip = "      <ip address=\"10.83.0.1\">\n        <dhcp>\n          \
        <range start=\"10.83.0.100\" end=\"10.83.0.150\">\n            \
        <lease expiry=\"2\" unit=\"hours\"/>\n          </range>\n          \
        <host mac=\"52:54:00:AA:00:01\" ip=\"10.83.0.10\" name=\"n1\"/>\n        \
        </dhcp>\n      </ip>\n";
    assert!(DUMPED_ADOPTED.contains(saved_ip));
    let twice = DUMPED_ADOPTED.replace(saved_ip, &saved_ip.repeat(2));
    for xml in [
        twice.replace(
            "<ip address='10.83.0.1' prefix='24'>\n  </ip>",
            "<ip address='10.83.0.1' prefix='24'/>",
        ),
        twice.clone(),
    ] {
        let err = release(&xml).unwrap_err().to_string();
        assert!(
            err.contains("<ip address='10.83.0.1'>") && err.contains("twice"),
            "{err}"
        );
    }
}

/// roxmltree overflows the stack on deep nesting; every transform refuses it first.
#[test]
fn deeply_nested_xml_is_refused_by_adopt_and_release() {
    let deep = format!(
        "<network><name>x</name><metadata>{}{}</metadata></network>",
        "<a>".repeat(100_000),
        "</a>".repeat(100_000)
    );
    for err in [adopt(&deep).unwrap_err(), release(&deep).unwrap_err()] {
        let text = crate::error::chain(&err);
        assert!(text.contains("nested deeper than 256"), "{text}");
    }
    assert!(difference(&deep, "<a/>").is_err());
}

/// Found by fuzzing: an `<ip>` with two `<dhcp>` was adopted with only the first removed, so
/// libvirt went on serving the network.
#[test]
fn adopt_refuses_an_ip_with_two_dhcp() {
    let xml = "<network><name>lab</name><bridge name='vqbr-lab'/>\
               <ip address='10.82.0.1' prefix='24'>\
               <dhcp><range start='10.82.0.100' end='10.82.0.150'/></dhcp>\
               <dhcp><range start='10.82.0.160' end='10.82.0.170'/></dhcp></ip></network>";
    let Err(AdoptError::Unsupported { reasons, .. }) = adopt(xml) else {
        panic!("adopted an <ip> with two <dhcp>");
    };
    assert!(
        reasons.iter().any(|r| r.contains("more than one <dhcp>")),
        "{reasons:?}"
    );
}
