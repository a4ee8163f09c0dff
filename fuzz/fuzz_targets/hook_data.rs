//! The hook's `<hookData>`: the full parser and the tolerant probe agree, and the probe never
//! fails on well-formed XML whose `<hookData>` holds a `<network>` (a failing hook stops
//! libvirt from starting a network that may not be virtmasq's).
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtmasq::libvirt::probe::Probe;
use virtmasq::libvirt::xml::HookData;

fuzz_target!(|data: &[u8]| {
    let Ok(xml) = std::str::from_utf8(data) else {
        return;
    };
    let probe = Probe::hook_data(xml);
    if let Ok(doc) = roxmltree::Document::parse(xml) {
        let root = doc.root_element();
        let is = |n: roxmltree::Node, name: &str| {
            n.is_element() && n.tag_name().name() == name && n.tag_name().namespace().is_none()
        };
        if is(root, "hookData") && root.children().any(|c| is(c, "network")) {
            assert!(
                probe.is_ok(),
                "probe failed on well-formed hookData: {probe:?}"
            );
        }
    }
    let Ok(hook) = HookData::parse(xml) else {
        return;
    };
    let probe = probe.expect("the probe reads what the full parser reads");
    assert_eq!(probe.name, hook.network.name.as_str());
    assert_eq!(probe.served_by_libvirt, hook.network.served_by_libvirt());
    assert_eq!(probe.has_bridge, hook.network.bridge.is_some());
    if hook.network.metadata.is_some() {
        assert!(probe.has_intent);
    }
    if let Some(mac) = hook.port_mac {
        fuzzcheck::assert_round_trip("port MAC", &mac);
    }
});
