//! `filter sync --from` input: JSON or one MAC per line. An accepted list names no MAC on both
//! sides, and printed back as lines (the allow list) it reads back to the same allow list.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtmasq::filter::DesiredLists;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(lists) = DesiredLists::parse(text, "fuzz") else {
        return;
    };
    assert!(lists.allow.is_disjoint(&lists.deny), "{lists:?}");
    for mac in lists.allow.iter().chain(&lists.deny) {
        fuzzcheck::assert_round_trip("MAC", mac);
    }
    let lines: String = lists.allow.iter().map(|m| format!("{m}\n")).collect();
    let again = DesiredLists::parse(&lines, "printed").expect("printed lines parse");
    assert_eq!(again.allow, lists.allow);
    assert!(again.deny.is_empty());
});
