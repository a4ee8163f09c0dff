//! The iPXE script endpoint's query (`/boot.ipxe?mac=…&uuid=…`). An accepted MAC and UUID
//! print as text that parses back to them, and the script served for them is three lines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtmasq::http::parse_query;
use virtmasq::pxe::script::{client_script, Matched};
use virtmasq::pxe::ScriptAction;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(query) = parse_query(raw) else {
        return;
    };
    if let Some(uuid) = &query.uuid {
        fuzzcheck::assert_round_trip("UUID", uuid);
    }
    if let Some(mac) = &query.mac {
        fuzzcheck::assert_round_trip("MAC", mac);
        let script = client_script(mac, Matched::Default, &ScriptAction::Exit);
        assert_eq!(script.lines().count(), 3, "{script}");
    }
});
