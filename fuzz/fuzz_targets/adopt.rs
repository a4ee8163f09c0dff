//! `adopt` and `release` as text transforms: whatever `adopt` accepts, `release` takes back to
//! a definition equal to the input (compared parsed), and the adopted definition carries the
//! intent in its metadata and is no longer served by libvirt. `release` of arbitrary input
//! never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtmasq::libvirt::adopt::{adopt, difference, release};
use virtmasq::libvirt::xml::NetworkXml;

fuzz_target!(|data: &[u8]| {
    let Ok(xml) = std::str::from_utf8(data) else {
        return;
    };
    let _ = release(xml);
    let Ok(adoption) = adopt(xml) else {
        return;
    };
    let adopted = NetworkXml::parse(&adoption.xml)
        .unwrap_or_else(|e| panic!("adopted XML does not parse: {e}\n{}", adoption.xml));
    assert!(!adopted.served_by_libvirt(), "{}", adoption.xml);
    assert_eq!(adopted.metadata.as_ref(), Some(&adoption.intent));
    let released = release(&adoption.xml)
        .unwrap_or_else(|e| panic!("release refused adopt's output: {e:?}\n{}", adoption.xml));
    let diff = difference(xml, &released).expect("both parse");
    assert_eq!(
        diff, None,
        "release(adopt(x)) != x:\n{xml}\n---\n{released}"
    );
});
