//! libvirt's network XML (`net-dumpxml`): the full parser and the hook's tolerant probe. The
//! probe never fails on well-formed XML with a `<network>` root, and agrees with the full
//! parser on the name and on whether libvirt serves the network. A network with virtmasq's
//! metadata is rendered and its dnsmasq text checked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtmasq::libvirt::probe::Probe;
use virtmasq::libvirt::xml::NetworkXml;
use virtmasq::model::ManagedNetwork;

fuzz_target!(|data: &[u8]| {
    let Ok(xml) = std::str::from_utf8(data) else {
        return;
    };
    let probe = Probe::network(xml);
    let full = NetworkXml::parse(xml);
    if let Ok(doc) = roxmltree::Document::parse(xml) {
        let root = doc.root_element();
        if root.tag_name().name() == "network" && root.tag_name().namespace().is_none() {
            assert!(probe.is_ok(), "probe failed on well-formed XML: {probe:?}");
        }
    }
    let Ok(net) = full else {
        return;
    };
    let probe = probe.expect("the probe reads what the full parser reads");
    assert_eq!(probe.name, net.name.as_str());
    assert_eq!(probe.served_by_libvirt, net.served_by_libvirt());
    assert_eq!(probe.has_bridge, net.bridge.is_some());
    if let Some(bridge) = &net.bridge {
        fuzzcheck::assert_ifname_safe(bridge.as_str());
    }
    if let Some(b) = net
        .ips
        .iter()
        .filter_map(|ip| ip.dhcp.as_ref()?.bootp.as_ref())
        .next()
    {
        fuzzcheck::assert_line_safe("bootp file", &b.file);
    }
    for root in net.ips.iter().filter_map(|ip| ip.tftp_root.as_ref()) {
        let text = root.to_str().expect("a tftp root from a str");
        fuzzcheck::assert_line_safe("tftp root", text);
        assert!(!text.contains(char::is_whitespace), "tftp root {text:?}");
    }
    if let (Some(intent), Some(bridge)) = (&net.metadata, &net.bridge) {
        assert!(probe.has_intent);
        let (v4, v6) = (net.ipv4_subnets(), net.ipv6_subnets());
        if let Ok(m) = ManagedNetwork::dual(net.name.clone(), bridge.clone(), v4, v6, intent.clone())
        {
            fuzzcheck::check_rendered(&m);
        }
    }
});
