//! rtnetlink datagrams as the kernel (or anyone able to send to the socket) delivers them:
//! decoding never panics, yields at most one event per 16-byte header, and names hold no NUL.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtmasq::netlink::parse;

fuzz_target!(|data: &[u8]| {
    let events = parse(data);
    assert!(events.len() <= data.len() / 16, "{events:?}");
    for e in &events {
        if let Some(name) = &e.name {
            assert!(!name.contains('\0'), "{name:?}");
            assert!(name.len() <= 3 * data.len(), "{name:?}");
        }
    }
});
