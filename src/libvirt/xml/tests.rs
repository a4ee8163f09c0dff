use std::error::Error as _;
use std::fmt::Write as _;

use super::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/libvirt");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap()
}

/// The message with its sources, as the binary prints it.
fn chain(err: &XmlError) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        write!(out, ": {s}").unwrap();
        source = s.source();
    }
    out
}

/// Every fixture against its parse result in `<fixture>.parsed`, which spells out each
/// field; `VIRTMASQ_BLESS=1` rewrites them after a deliberate change (review the diff).
#[test]
fn fixtures_parse_to_their_snapshots() {
    let mut names: Vec<String> = std::fs::read_dir(FIXTURES)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".xml") && !n.ends_with(".input.xml"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 11, "{names:?}");
    for name in names {
        let xml = fixture(&name);
        let parsed = match name.starts_with("hook-") {
            true => format!("{:#?}\n", HookData::parse(&xml).unwrap()),
            false => format!("{:#?}\n", NetworkXml::parse(&xml).unwrap()),
        };
        let snapshot = format!("{FIXTURES}/{}.parsed", name.trim_end_matches(".xml"));
        if std::env::var_os("VIRTMASQ_BLESS").is_some() {
            std::fs::write(&snapshot, &parsed).unwrap();
        }
        let expected = std::fs::read_to_string(&snapshot).unwrap_or_default();
        assert_eq!(parsed, expected, "{name} no longer parses to {snapshot}");
    }
}

#[test]
fn what_virtmasq_decides_from_each_fixture() {
    // (fixture, served by libvirt, IPv4 subnets, has virtmasq metadata)
    let cases: [(&str, bool, &[&str], bool); 7] = [
        (
            "test-driver-default.xml",
            true,
            &["192.168.122.1/24"],
            false,
        ),
        ("libvirtd-nat.xml", true, &["10.77.0.1/24"], false),
        (
            "libvirtd-isolated-metadata.xml",
            false,
            &["10.78.0.1/24"],
            true,
        ),
        ("libvirtd-ipv6.xml", true, &["10.79.0.1/24"], false),
        ("libvirtd-classful.xml", true, &["172.20.0.1/16"], false),
        ("libvirtd-bridge-inactive.xml", false, &[], false),
        ("libvirtd-metadata-one-per-namespace.xml", false, &[], true),
    ];
    for (name, served, subnets, meta) in cases {
        let net = NetworkXml::parse(&fixture(name)).unwrap();
        assert_eq!(net.served_by_libvirt(), served, "{name}");
        let shown: Vec<String> = net.ipv4_subnets().iter().map(|n| n.to_string()).collect();
        assert_eq!(shown, subnets, "{name}");
        assert_eq!(net.metadata.is_some(), meta, "{name}");
    }
    // libvirt kept the first element of our namespace and dropped the second; we refuse.
    let input = fixture("libvirtd-metadata-one-per-namespace.input.xml");
    let err = NetworkXml::parse(&input).unwrap_err().to_string();
    assert!(
        err.contains("<virtmasq:dhcp>: there is more than one"),
        "{err}"
    );
    let port = HookData::parse(&fixture("hook-isolated-port-created.xml")).unwrap();
    assert_eq!(port.port_mac, Some("52:54:00:aa:bb:cc".parse().unwrap()));
    let started = HookData::parse(&fixture("hook-isolated-started.xml")).unwrap();
    assert_eq!(started.port_mac, None);
    let dumped = NetworkXml::parse(&fixture("libvirtd-isolated-metadata.xml")).unwrap();
    assert_eq!(started.network, dumped);
}

fn net(body: &str) -> String {
    format!("<network><name>lab</name><bridge name='vqbr0'/>{body}</network>")
}

fn ip(attributes: &str) -> String {
    net(&format!("<ip {attributes}/>"))
}

fn tftp(root: &str) -> String {
    net(&format!(
        "<ip address='10.0.0.1'><tftp root='{root}'/></ip>"
    ))
}

fn lease(attributes: &str) -> String {
    dhcp(&format!(
        "<host mac='52:54:00:00:00:01'><lease {attributes}/></host>"
    ))
}

fn dhcp(inner: &str) -> String {
    net(&format!(
        "<ip address='10.0.0.1' prefix='24'><dhcp>{inner}</dhcp></ip>"
    ))
}

#[test]
fn libvirt_elements_virtmasq_does_not_use_are_ignored() {
    let xml = net(concat!(
        "<mtu size='9000'/><portgroup name='a'><virtualport type='openvswitch'/></portgroup>",
        "<bandwidth><inbound average='1'/></bandwidth><port isolated='yes'/>",
        "<route address='192.0.2.0' prefix='24' gateway='10.0.0.2'/><future x='y'/>",
        "<forward mode='nat'><nat><port start='1024' end='65535'/></nat></forward>",
        "<dnsmasq:options xmlns:dnsmasq='http://libvirt.org/schemas/network/dnsmasq/1.0'>",
        "<dnsmasq:option value='dhcp-range=1,2'/></dnsmasq:options>",
        "<ip address='10.0.0.1' prefix='24'><dhcp><future/></dhcp></ip>",
    ));
    let parsed = NetworkXml::parse(&xml).unwrap();
    assert_eq!(parsed.forward_mode.as_deref(), Some("nat"));
    assert_eq!(parsed.ips[0].dhcp, Some(DhcpXml::default()));
    assert!(parsed.served_by_libvirt(), "DNS is on");
    let v6 = net("<dns enable='no'/><ip address='fd00::1'><dhcp/></ip>");
    let isolated = NetworkXml::parse(&v6).unwrap();
    assert_eq!(
        (isolated.ips[0].family, isolated.ips[0].prefix),
        (IpFamily::V6, 64)
    );
    assert!(
        !isolated.served_by_libvirt(),
        "an empty <dhcp/> starts no dnsmasq"
    );
}

/// (document, texts its error chain must contain): one line each, to read as a table.
#[rustfmt::skip]
fn hostile_cases() -> Vec<(String, &'static [&'static str])> {
    const LONG: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    let bridge = format!("<network><name>lab</name><bridge name='{LONG}'/></network>");
    let meta = "<metadata><v:dhcp xmlns:v='http://virtmasq.org/xmlns/network/1.0'><v:hots/>";
    let meta = net(&format!("{meta}</v:dhcp></metadata>"));
    let huge = net(&format!("<domain name='{}'/>", "x".repeat(5000)));
    vec![
        ("<network><name>lab\nx</name></network>".into(), &["network: <name>lab\\nx</name>"]),
        ("<network><name>a,b</name></network>".into(), &["<name>a,b</name>", "','"]),
        ("<network><uuid>x</uuid></network>".into(), &["it has no <name>"]),
        (bridge, &[LONG, "40 bytes", "at most 15"]),
        (dhcp("<host mac='zz:00:00:00:00:00'/>"), &["mac='zz:00:00:00:00:00'", "MAC"]),
        (dhcp("<host mac='52:54:00:00:00:01' name='a,b'/>"), &["name='a,b'>", "DNS name"]),
        (lease("expiry='5' unit='days'"), &["<lease expiry='5' unit='days'>", "lease unit"]),
        (lease("expiry='1' unit='seconds'"), &["120 seconds"]),
        (lease("expiry='-1'"), &["expiry='-1'", "not a number"]),
        (dhcp("<range start='10.0.0.9' end='10.0.0.2'/>"), &["<range>: its start is after"]),
        (dhcp("<range start='fd00::2' end='fd00::9'/>"), &["start='fd00::2'", "family"]),
        (dhcp("<host ip='10.0.0.5'/>"), &["neither a mac, an id nor a name"]),
        (dhcp("<host id='0:1:zz'/>"), &["id='0:1:zz'", "DUID"]),
        (dhcp("<bootp file='pxelinux.0,tag'/>"), &["file='pxelinux.0,tag'", "','"]),
        (dhcp("<bootp file='a b'/>"), &["' '"]),
        (dhcp("<bootp file='boot#1'/>"), &["'#'"]),
        (dhcp("<bootp file='x' server='fd00::1'/>"), &["server='fd00::1'", "not an IPv4"]),
        (ip("address='10.0.0.x'"), &["network 'lab': <ip address='10.0.0.x'>: not an IP"]),
        (ip("address='10.0.0.1' prefix='24' netmask='255.255.255.0'"), &["both a prefix"]),
        (ip("address='10.0.0.1' prefix='33'"), &["<ip address='10.0.0.1' prefix='33'>"]),
        (ip("address='10.0.0.1' netmask='255.0.255.0'"), &["'255.0.255.0'", "contiguous"]),
        (ip("address='10.0.0.1' netmask='0.0.0.0'"), &["/0"]),
        (ip("family='ipv6' address='fd00::1' netmask='ffff::'"), &["only allowed for IPv4"]),
        (ip("family='ipv4' address='fd00::1' prefix='64'"), &["fd00::1 is not an ipv4"]),
        (ip("family='ipx' address='10.0.0.1'"), &["family='ipx'"]),
        (ip("address='224.0.0.1'"), &["not class A, B or C"]),
        (tftp("srv/tftp"), &["root='srv/tftp'", "absolute"]),
        (tftp("/srv/tftp,x"), &["root='/srv/tftp,x'"]),
        (net("<dns enable='maybe'/>"), &["<dns enable='maybe'>", "yes or no"]),
        (net("<forward mode='nat,x'/>"), &["mode='nat,x'"]),
        (net("<domain name='a b'/>"), &["<domain name='a b'>", "DNS name"]),
        (huge, &["xxx...'>"]),
        (net("<uuid>dd8fe884-6c02-601e</uuid>"), &["<uuid>dd8fe884-6c02-601e</uuid>", "UUID"]),
        (meta, &["network 'lab': virtmasq metadata: <virtmasq:hots>: unknown element"]),
        ("<network><name>lab</nam></network>".into(), &["not well-formed XML: ", "at 1:19"]),
        ("<network><name>lab</name>".into(), &["not well-formed XML: ", "never closed"]),
        ("<domain><name>x</name></domain>".into(), &["expected a <network> document"]),
    ]
}

#[test]
fn hostile_input_is_refused_and_named() {
    for (xml, needles) in hostile_cases() {
        let err = NetworkXml::parse(&xml).unwrap_err();
        // Our part is cut short; a model type's message (the source) is its own concern.
        assert!(err.to_string().len() < 300, "{err}");
        let err = chain(&err);
        for needle in needles {
            assert!(
                err.contains(needle),
                "{xml}\n  gave: {err}\n  missing: {needle}"
            );
        }
    }
    let bad_port = "<hookData><network><name>lab</name></network>\
        <networkport><mac address='52:54:00:zz:00:01'/></networkport></hookData>";
    let err = chain(&HookData::parse(bad_port).unwrap_err());
    assert!(
        err.contains("network 'lab': <mac address='52:54:00:zz:00:01'>"),
        "{err}"
    );
    let err = HookData::parse("<network><name>lab</name></network>").unwrap_err();
    assert!(
        err.to_string().contains("expected a <hookData> document"),
        "{err}"
    );
}

/// A hundred thousand nested elements overflowed roxmltree's stack and aborted the process
/// (the daemon, or the hook inside libvirtd's call); both entry points refuse them first.
#[test]
fn deep_nesting_is_refused_before_parsing() {
    let network = format!(
        "<network><name>x</name><metadata>{}{}</metadata></network>",
        "<a>".repeat(100_000),
        "</a>".repeat(100_000)
    );
    let err = NetworkXml::parse(&network).unwrap_err().to_string();
    assert!(err.contains("nested deeper than 256"), "{err}");
    let hook = format!("<hookData>{network}</hookData>");
    let err = HookData::parse(&hook).unwrap_err().to_string();
    assert!(err.contains("nested deeper than 256"), "{err}");
}

/// What the network's own elements ask of its dnsmasq: isolation from a missing `<forward>`,
/// `<mtu>`, and whose domain `localOnly` governs.
#[test]
fn settings_from_the_networks_own_elements() {
    let xml = |forward: &str, extra: &str| {
        NetworkXml::parse(&format!(
            "<network><name>n</name>{forward}<bridge name='b0'/>{extra}\
             <ip address='10.1.0.1' prefix='24'/></network>"
        ))
        .unwrap()
    };
    let isolated = xml("", "<mtu size='9000'/><domain name='lab' localOnly='no'/>");
    let lab: DnsName = "lab".parse().unwrap();
    let s = isolated.settings(Some(&lab)).unwrap();
    assert!(s.isolated);
    assert_eq!(s.mtu.map(|m| m.get()), Some(9000));
    assert!(!s.domain_local_only, "libvirt's domain, localOnly='no'");
    let other: DnsName = "intent.example".parse().unwrap();
    assert!(
        isolated.settings(Some(&other)).unwrap().domain_local_only,
        "a domain of virtmasq's intent is local"
    );
    let nat = xml(
        "<forward mode='nat'/>",
        "<domain name='lab' localOnly='yes'/>",
    );
    let s = nat.settings(Some(&lab)).unwrap();
    assert!(!s.isolated && s.mtu.is_none() && s.domain_local_only);
    assert!(
        !xml("<forward/>", "<domain name='lab'/>")
            .settings(Some(&lab))
            .unwrap()
            .domain_local_only
    );
    let err = NetworkXml::parse(
        "<network><name>n</name><mtu size='20'/><ip address='10.1.0.1' prefix='24'/></network>",
    )
    .unwrap_err();
    let msg = crate::error::chain(&err);
    assert!(msg.contains("mtu") && msg.contains("20"), "{msg}");
}

/// `localPtr='yes'` names the reverse zone libvirt answers locally; a prefix off a label
/// boundary has none, and is refused by name as libvirt refuses it.
#[test]
fn local_ptr_zones_as_libvirt_makes_them() {
    let parse = |ips: &str| {
        NetworkXml::parse(&format!(
            "<network><name>n</name><bridge name='b0'/>{ips}</network>"
        ))
    };
    let net = parse(
        "<ip address='10.1.2.1' prefix='16' localPtr='yes'/>\
         <ip address='10.9.0.1' prefix='24'/>\
         <ip family='ipv6' address='fd00:12::1' prefix='64' localPtr='yes'/>",
    )
    .unwrap();
    let zones: Vec<&str> = net.local_ptr.iter().map(DnsName::as_str).collect();
    assert_eq!(
        zones,
        [
            "1.10.in-addr.arpa",
            "0.0.0.0.0.0.0.0.2.1.0.0.0.0.d.f.ip6.arpa"
        ]
    );
    let err = parse("<ip address='10.1.2.1' prefix='20' localPtr='yes'/>").unwrap_err();
    let msg = crate::error::chain(&err);
    assert!(
        msg.contains("prefix='20'") && msg.contains("boundary"),
        "{msg}"
    );
}
