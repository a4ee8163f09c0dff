use super::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/libvirt");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap()
}

fn own(xml: &str, argv: &str) -> Ownership {
    ownership(Ok(xml), argv, Ok(&Config::default()))
}

fn ours() -> Ownership {
    own(&fixture("hook-isolated-started.xml"), "vq-iso")
}

fn not_ours() -> Ownership {
    let xml = fixture("hook-nat-started.xml");
    let name = Probe::hook_data(&xml).unwrap().name;
    own(&xml, &name)
}

fn broken() -> Ownership {
    let xml = fixture("hook-isolated-started.xml").replace("10.78.0.150", "10.99.0.150");
    own(&xml, "vq-iso")
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

/// A `<hookData>` for a network with `body` inside `<network>`.
fn hook_xml(name: &str, body: &str) -> String {
    format!("<hookData><network><name>{name}</name>{body}</network></hookData>")
}

/// Valid libvirt networks that libvirt serves itself, each with something virtmasq refuses in
/// networks it serves: the hook must see them as not virtmasq's, never as broken.
#[test]
fn networks_libvirt_serves_are_never_ours_whatever_they_hold() {
    let ip6_host = "<bridge name='v6br'/><ip family='ipv6' address='fd00:101::1' prefix='64'>\
        <dhcp><range start='fd00:101::10' end='fd00:101::ff'/>\
        <host name='v6only' ip='fd00:101::5'/></dhcp></ip>";
    let nat = "<forward mode='nat'/><bridge name='natbr'/>\
        <ip address='10.1.0.1' prefix='24'><dhcp><range start='10.1.0.2' end='10.1.0.9'/>";
    let cases = [
        ("v6only", ip6_host.to_owned()),
        ("with space", format!("{nat}</dhcp></ip>")),
        ("hostname", format!("{nat}<host mac='52:54:00:00:00:01' name='a b' ip='10.1.0.5'/></dhcp></ip>")),
        ("tftp", "<bridge name='tbr'/><ip address='10.2.0.1' prefix='24'>\
            <tftp root='/srv/tftp root'/></ip>".to_owned()),
        ("bootp", format!("{nat}<bootp file='http://x/boot?a=1&amp;b=2'/></dhcp></ip>")),
        ("dns-only", "<bridge name='dbr'/><ip address='10.3.0.1' netmask='255.255.255.0'/>\
            <dns><txt name='x' value='a,b #c'/></dns>".to_owned()),
        ("open", ("<forward mode='open'/><bridge name='obr'/>\
            <ip address='10.4.0.1' prefix='24'><dhcp><range start='10.4.0.2' end='10.4.0.9'/>\
            </dhcp></ip><dnsmasq:options xmlns:dnsmasq='http://libvirt.org/schemas/network/dnsmasq/1.0'>\
            <dnsmasq:option value='log-queries'/></dnsmasq:options>").to_owned()),
        ("bridged", "<forward mode='bridge'/><bridge name='br0'/>".to_owned()),
        ("macvtap", "<forward mode='passthrough'><interface dev='eth9'/></forward>".to_owned()),
        ("odd name !\"'#,", format!("{nat}</dhcp></ip>")),
    ];
    for (name, body) in cases {
        let xml = hook_xml(&xml_escape(name), &body);
        let got = own(&xml, name);
        assert!(
            matches!(got, Ownership::NotOurs(_)),
            "{name}: {got:?}\n{xml}"
        );
        for op in [Op::Start, Op::Started, Op::Stopped, Op::Updated] {
            let mut s = situation(op, own(&xml, name), None, false);
            s.veto = true;
            let step = decide(s, Some(Mode::System));
            assert_eq!(kind(&step), "nothing", "{name} {op:?}: {step:?}");
        }
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

/// What cannot be read is not virtmasq's, unless the configuration names the network.
#[test]
fn unreadable_input_is_only_ours_when_configured() {
    let unknown = |input: Result<&str, String>, argv: &str| {
        let got = ownership(input, argv, Ok(&Config::default()));
        match got {
            Ownership::Unknown(why) => why,
            other => panic!("{argv}: {other:?}"),
        }
    };
    let good = fixture("hook-isolated-started.xml");
    assert!(unknown(Ok("<hookData><network>"), "x").contains("not well-formed"));
    assert!(unknown(Err("stdin is empty".into()), "x").contains("stdin is empty"));
    assert!(unknown(Ok("<network><name>a</name></network>"), "a").contains("expected a <hookData>"));
    let why = unknown(Ok(&good), "other");
    assert!(
        why.contains("names network 'other', but <hookData> describes 'vq-iso'"),
        "{why}"
    );

    let cfg: Config =
        toml::from_str("[networks.lab]\nranges = [{ start = \"10.0.0.2\", end = \"10.0.0.9\" }]\n")
            .unwrap();
    let got = ownership(Ok("<hookData>"), "lab", Ok(&cfg));
    assert!(
        matches!(got, Ownership::Broken(ref m) if m.contains("not well-formed")),
        "{got:?}"
    );
    // A configuration that cannot be read: a network with virtmasq's metadata is ours and
    // broken; one libvirt serves is not ours.
    let got = ownership(Ok(&good), "vq-iso", Err("bad toml".into()));
    assert!(
        matches!(got, Ownership::Broken(ref m) if m == "bad toml"),
        "{got:?}"
    );
    let nat = fixture("hook-nat-started.xml");
    let name = Probe::hook_data(&nat).unwrap().name;
    let got = ownership(Ok(&nat), &name, Err("bad toml".into()));
    assert!(
        matches!(got, Ownership::NotOurs(Skip::ServedByLibvirt)),
        "{got:?}"
    );
}

/// Unknown ownership is a warning at most, and never a veto.
#[test]
fn unknown_ownership_never_vetoes() {
    for op in [Op::Start, Op::Started, Op::Stopped, Op::Updated] {
        let mut s = situation(op, Ownership::Unknown("x".into()), None, false);
        s.veto = true;
        let step = decide(s, Some(Mode::Private));
        assert!(
            matches!(step, Step::Warn(_) | Step::Nothing(_)),
            "{op:?}: {step:?}"
        );
    }
}

#[test]
fn hook_input_is_bounded_and_not_empty() {
    assert!(read_input("  \n".as_bytes())
        .unwrap_err()
        .contains("stdin is empty"));
    let big = vec![b' '; (MAX_INPUT + 10) as usize];
    assert!(read_input(&big[..]).unwrap_err().contains("larger than"));
    assert_eq!(read_input("<a/>".as_bytes()).unwrap(), "<a/>");
}

/// libvirtd waits for the hook, so the hook must never call libvirt (a deadlock): neither it
/// nor the modules it talks to the daemon and the journal through reach libvirt's API or the
/// daemon module (which does).
#[test]
fn the_hook_never_reaches_libvirt() {
    let sources = [
        ("commands/hook.rs", include_str!("../hook.rs")),
        ("agent/client.rs", include_str!("../../agent/client.rs")),
        ("journal.rs", include_str!("../../journal.rs")),
        ("libvirt/probe.rs", include_str!("../../libvirt/probe.rs")),
    ];
    for (file, text) in sources {
        for forbidden in [
            "libvirt::source",
            "libvirt::define",
            "agent::daemon",
            "read_libvirt",
            "use virt::",
            " virt::",
            "(virt::",
        ] {
            let hit = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .find(|l| l.contains(forbidden));
            assert!(hit.is_none(), "{file} uses {forbidden}: {hit:?}");
        }
    }
}
