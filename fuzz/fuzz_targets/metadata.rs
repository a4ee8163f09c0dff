//! virtmasq's `<metadata>` element. The first line of the input is the bridge's subnets
//! (`a.b.c.d/N` or `ipv6/N`, separated by spaces), the rest the children of `<metadata>`. An accepted intent
//! renders back to an element that parses to the same intent; one that fits the subnets gives
//! dnsmasq text of one directive per line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtmasq::libvirt::metadata::{find_intent, render_intent};
use virtmasq::model::{Ipv4Net, Ipv6Net, ManagedNetwork};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (first, inner) = text.split_once('\n').unwrap_or(("", text));
    let subnets: Vec<Ipv4Net> = first.split(' ').filter_map(|s| s.parse().ok()).collect();
    let subnets6: Vec<Ipv6Net> = first.split(' ').filter_map(|s| s.parse().ok()).collect();
    let xml = format!("<metadata>{inner}</metadata>");
    let Ok(doc) = roxmltree::Document::parse(&xml) else {
        return;
    };
    let Ok(Some(intent)) = find_intent(doc.root_element()) else {
        return;
    };
    let rendered = render_intent(&intent);
    let again = format!("<metadata>{rendered}</metadata>");
    let doc = roxmltree::Document::parse(&again)
        .unwrap_or_else(|e| panic!("rendered metadata is not XML: {e}\n{rendered}"));
    let back = find_intent(doc.root_element())
        .unwrap_or_else(|e| panic!("rendered metadata is refused: {e}\n{rendered}"));
    assert_eq!(back.as_ref(), Some(&intent), "{rendered}");
    if subnets.is_empty() && subnets6.is_empty() {
        return;
    }
    let (name, bridge) = ("fuzz".parse().unwrap(), "virbr0".parse().unwrap());
    if let Ok(net) = ManagedNetwork::dual(name, bridge, subnets, subnets6, intent) {
        fuzzcheck::check_rendered(&net);
    }
});
