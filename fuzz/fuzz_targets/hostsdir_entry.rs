//! hostsdir entries, read back from a directory: a file name is classified as ours only when
//! it is exactly the name virtmasq writes for that target, and file contents (or sizes) give a
//! verdict only when they are exactly what virtmasq writes. The input is `name\0content`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtmasq::filter::entry::{classify, NameKind, TEMP_PREFIX};
use virtmasq::filter::{DenyLine, Target};

fuzz_target!(|data: &[u8]| {
    let (name, content) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(name) = std::str::from_utf8(name) else {
        return;
    };
    let kind = classify(name);
    match &kind {
        NameKind::Ours(target) => {
            assert_eq!(target.file_name(), name);
            check_content(*target, content);
        }
        NameKind::Leftover => assert!(name.starts_with(TEMP_PREFIX)),
        NameKind::Skipped => {
            assert!(name.is_empty() || name.starts_with(['.', '#']) || name.ends_with('~'))
        }
        NameKind::Foreign => {}
    }
    // What virtmasq writes is always classified as its own.
    if let NameKind::Ours(target) = kind {
        assert_eq!(classify(&target.file_name()), NameKind::Ours(target));
    }
});

fn check_content(target: Target, content: &[u8]) {
    for form in [DenyLine::Plain, DenyLine::Tagged] {
        if let Some(verdict) = target.verdict_from_content(content, form) {
            let written = target.content(verdict, form);
            assert_eq!(written.as_bytes(), content);
            assert_eq!(written.len() as u64, target.content_len(verdict, form));
            assert_eq!(
                target.verdict_from_len(content.len() as u64, form),
                Some(verdict)
            );
            let dirs = fuzzcheck_line(&written);
            assert_eq!(dirs, 1, "{written:?}");
        }
    }
}

/// A hostsdir file is one `dhcp-host` value: one line, ending with a newline.
fn fuzzcheck_line(text: &str) -> usize {
    assert!(
        text.ends_with('\n') && !text.contains(['\r', '\0', '#']),
        "{text:?}"
    );
    text.lines().count()
}
