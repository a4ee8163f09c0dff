//! etcd keys and values under the filter's prefix (`[filter.source] kind = "etcd"`), as any
//! writer of the cluster may put them. The input is `key\0value` (no `\0`: a delete). A key
//! taken as a filter entry is exactly the key virtmasq writes for it, and an iPXE action read
//! from a value prints back to itself; a bad key is refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtmasq::filter::etcd::layout::{mac_key, read, unknown_key, Change, Entry, Scope};
use virtmasq::pxe::ScriptAction;

const PREFIX: &str = "/v/f";
const HOST: &str = "me";

fuzz_target!(|data: &[u8]| {
    let (key, value) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let Ok(Some((scope, entry))) = read(PREFIX, HOST, key, value) else {
        return;
    };
    let host = (scope == Scope::Host).then_some(HOST);
    let text = String::from_utf8_lossy(key);
    match entry {
        Entry::Filter(Change::Mac(mac, _)) => assert_eq!(mac_key(PREFIX, host, &mac), text),
        Entry::Filter(Change::Unknown(_)) => assert_eq!(unknown_key(PREFIX, host), text),
        Entry::Ipxe(_, Some(action)) => {
            let shown = action.to_string();
            let again: ScriptAction = shown.parse().expect("a printed action parses");
            assert_eq!(again, action, "{shown:?}");
        }
        Entry::Ipxe(_, None) => assert!(value.is_none()),
    }
});
