use super::*;

/// A restore that fails is part of the error, never only a log line under a message that
/// says nothing changed.
#[test]
fn a_restore_that_fails_is_reported() {
    let err = not_restored(
        ApplyError::Invalid {
            message: "bad line".into(),
        },
        vec!["/etc/dnsmasq.d/virtmasq-lab.conf: No such file or directory".into()],
    );
    let text = err.to_string();
    assert!(matches!(err, ApplyError::NotRestored { .. }), "{text}");
    assert!(
        text.contains("virtmasq-lab.conf") && text.contains("bad line"),
        "{text}"
    );
}
