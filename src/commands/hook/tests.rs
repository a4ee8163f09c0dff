use super::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/libvirt");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap()
}

fn ours() -> Ownership {
    let hook = HookData::parse(&fixture("hook-isolated-started.xml")).unwrap();
    ownership(&hook.network, &Config::default())
}

fn not_ours() -> Ownership {
    let hook = HookData::parse(&fixture("hook-nat-started.xml")).unwrap();
    ownership(&hook.network, &Config::default())
}

fn broken() -> Ownership {
    let xml = fixture("hook-isolated-started.xml").replace("10.78.0.150", "10.99.0.150");
    ownership(&HookData::parse(&xml).unwrap().network, &Config::default())
}

fn situation(op: Op, own: Ownership, daemon: Option<i32>, has_files: bool) -> Situation {
    Situation {
        op,
        own,
        daemon,
        has_files,
        instance_running: false,
        veto: false,
    }
}

/// The step's kind, for tables.
fn kind(step: &Step) -> &'static str {
    match step {
        Step::Nothing(_) => "nothing",
        Step::Signal(_) => "signal",
        Step::Serve(_) => "serve",
        Step::Remove(_) => "remove",
        Step::Warn(_) => "warn",
        Step::Veto(_) => "veto",
    }
}

#[test]
fn ownership_follows_the_hook_xml() {
    assert!(matches!(ours(), Ownership::Ours(n) if n.bridge.as_str() == "vqbr-iso"));
    assert!(matches!(
        not_ours(),
        Ownership::NotOurs(Skip::ServedByLibvirt)
    ));
    assert!(matches!(broken(), Ownership::Broken(m) if m.contains("vq-iso")));
}

#[test]
fn what_the_hook_does() {
    use Mode::{Private, System};
    let s = Some(System);
    let p = Some(Private);
    // (op, ownership, daemon pid, has system-mode files, mode, step)
    type Case = (
        Op,
        fn() -> Ownership,
        Option<i32>,
        bool,
        Option<Mode>,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (Op::Started, ours, Some(42), false, None, "signal"),
        (Op::Stopped, not_ours, Some(42), false, None, "signal"),
        (Op::Updated, broken, Some(42), false, None, "signal"),
        (Op::Started, ours, None, false, s, "serve"),
        (Op::Updated, ours, None, true, s, "serve"),
        (Op::Started, ours, None, false, p, "warn"),
        (Op::Started, broken, None, true, s, "remove"),
        (Op::Started, broken, None, false, p, "warn"),
        (Op::Started, not_ours, None, false, None, "nothing"),
        (Op::Started, not_ours, None, true, s, "remove"),
        (Op::Stopped, ours, None, true, s, "remove"),
        (Op::Stopped, ours, None, false, None, "nothing"),
        (Op::Start, ours, None, false, p, "nothing"),
        (Op::Start, broken, Some(42), false, None, "nothing"),
        (Op::PortCreated, ours, Some(42), true, s, "nothing"),
        (Op::Unplugged, ours, None, true, s, "nothing"),
    ];
    for (op, own, daemon, files, mode, want) in cases {
        let sit = situation(op, own(), daemon, files);
        let step = decide(sit, mode);
        assert_eq!(
            kind(&step),
            want,
            "{op:?} {daemon:?} {files} {mode:?}: {step:?}"
        );
    }
}

#[test]
fn a_start_is_vetoed_only_when_asked_and_unservable() {
    let veto = |own: Ownership, daemon: Option<i32>, mode: Option<Mode>| {
        let mut s = situation(Op::Start, own, daemon, false);
        s.veto = true;
        kind(&decide(s, mode))
    };
    assert_eq!(veto(broken(), None, None), "veto");
    assert_eq!(veto(broken(), Some(42), None), "veto");
    assert_eq!(veto(ours(), None, Some(Mode::Private)), "veto");
    assert_eq!(veto(ours(), Some(42), Some(Mode::Private)), "nothing");
    assert_eq!(veto(ours(), None, Some(Mode::System)), "nothing");
    assert_eq!(veto(not_ours(), None, None), "nothing");
}

#[test]
fn a_start_while_our_dnsmasq_still_runs_is_a_warning() {
    let mut s = situation(Op::Start, not_ours(), Some(42), false);
    s.instance_running = true;
    assert_eq!(kind(&decide(s, None)), "warn");
    let mut s = situation(Op::Start, ours(), Some(42), false);
    s.instance_running = true;
    assert_eq!(kind(&decide(s, None)), "nothing");
}

#[test]
fn the_mode_is_only_looked_up_when_it_matters() {
    let needs = |op, own, daemon, files| situation(op, own, daemon, files).needs_mode();
    assert!(needs(Op::Started, ours(), None, false));
    assert!(needs(Op::Started, not_ours(), None, true));
    assert!(needs(Op::Stopped, ours(), None, true));
    assert!(!needs(Op::Started, ours(), Some(42), false));
    assert!(!needs(Op::Started, not_ours(), None, false));
    assert!(!needs(Op::Stopped, ours(), None, false));
    assert!(!needs(Op::PortCreated, ours(), None, true));
    assert!(!needs(Op::Start, ours(), None, true));
}

#[test]
fn hook_data_is_checked_before_anything_else() {
    let good = fixture("hook-isolated-started.xml");
    assert_eq!(
        read_hook_data(good.as_bytes(), "vq-iso")
            .unwrap()
            .network
            .name
            .as_str(),
        "vq-iso"
    );
    let cases: [(&str, &str, &str); 4] = [
        ("<hookData><network>", "vq-iso", "not well-formed"),
        ("", "vq-iso", "stdin is empty"),
        (
            &good,
            "other",
            "names network 'other', but <hookData> describes 'vq-iso'",
        ),
        (
            "<network><name>a</name></network>",
            "a",
            "expected a <hookData> document",
        ),
    ];
    for (input, name, needle) in cases {
        let err = format!("{:#}", read_hook_data(input.as_bytes(), name).unwrap_err());
        assert!(err.contains(needle), "{err}\nmissing {needle:?}");
    }
}

#[test]
fn only_a_live_virtmasq_daemon_counts() {
    let dir = tempfile::tempdir().unwrap();
    let pid = dir.path().join("virtmasq.pid");
    assert_eq!(daemon_pid(&pid), None, "no pid file");
    std::fs::write(&pid, "garbage\n").unwrap();
    assert_eq!(daemon_pid(&pid), None);
    // This test process lives, but it is not `virtmasq daemon`.
    std::fs::write(&pid, format!("{}\n", std::process::id())).unwrap();
    assert_eq!(daemon_pid(&pid), None);
    std::fs::write(&pid, "0\n").unwrap();
    assert_eq!(daemon_pid(&pid), None);
}

#[test]
fn the_journal_gets_syslog_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let server = UnixDatagram::bind(&path).unwrap();
    server
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    Journal::at(&path).warn("network 'a': hello");
    let mut buf = [0u8; 256];
    let n = server.recv(&mut buf).unwrap();
    let line = String::from_utf8_lossy(&buf[..n]);
    assert!(line.starts_with("<28>virtmasq-hook["), "{line}");
    assert!(line.ends_with("]: network 'a': hello"), "{line}");
    // No socket: stderr only, and no error.
    Journal::at(&dir.path().join("absent")).info("x");
}
