//! `dnsmasq --version` output: the version is one word starting with its major number, the
//! compile-time options are words, and `has` agrees with the list.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtmasq::system::version::DnsmasqVersion;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Some(v) = DnsmasqVersion::parse(&text) else {
        return;
    };
    assert!(!v.version.is_empty() && !v.version.contains(char::is_whitespace));
    assert!(v.version.starts_with(|c: char| c.is_ascii_digit()), "{v:?}");
    let major: String = v.version.chars().take_while(char::is_ascii_digit).collect();
    assert_eq!(major.parse::<u32>().ok(), Some(v.numeric.0), "{v:?}");
    assert!(v.at_least(v.numeric.0, v.numeric.1));
    for o in &v.options {
        assert!(!o.is_empty() && !o.contains(char::is_whitespace), "{o:?}");
        assert!(v.has(o));
    }
});
