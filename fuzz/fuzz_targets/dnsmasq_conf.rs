//! dnsmasq's configuration as the system writes it: lines (`name=value`, comments), `conf-dir`
//! values with their suffix filters, and command-line words. An option read from a line reads
//! back the same from `name=value`; a conf-dir never accepts a name dnsmasq skips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtmasq::system::conf::{parse_args, parse_line, ConfDir};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for line in text.lines() {
        let Some((name, value)) = parse_line(line) else {
            continue;
        };
        assert!(!name.is_empty() || value.is_some(), "{line:?}");
        assert!(!name.contains('='), "{line:?}");
        assert_eq!(name.trim(), name);
        let written = match &value {
            Some(v) => {
                assert_eq!(v.trim(), v);
                format!("{name}={v}")
            }
            None => name.clone(),
        };
        assert_eq!(
            parse_line(&written),
            Some((name, value)),
            "{line:?} -> {written:?}"
        );
    }
    if let Some((dir, names)) = text.split_once('\n') {
        let dir = ConfDir::parse(dir);
        for name in names.split('/') {
            if dir.accepts(name) {
                assert!(!name.is_empty() && !name.starts_with('.') && !name.ends_with('~'));
                assert!(dir.excludes.iter().all(|e| !name.ends_with(e.as_str())));
            }
        }
    }
    let words: Vec<String> = text.split(['\0', '\n']).map(str::to_owned).collect();
    let opts = parse_args(&words);
    assert!(opts.len() <= words.len());
    for o in &opts {
        assert!(o.source.is_none());
        assert!(!o.name.is_empty() || o.value.is_some(), "{o:?}");
    }
});
