use super::*;
use crate::libvirt::adopt::adopt;

#[test]
fn the_config_section_reads_back_as_the_same_intent() {
    let xml = "<network><name>lab</name><bridge name='vqbr-lab'/><domain name='lab.example'/>\
               <ip address='10.82.0.1' prefix='24'><dhcp>\
               <range start='10.82.0.100' end='10.82.0.150'><lease expiry='2' unit='hours'/></range>\
               <host mac='52:54:00:AA:00:01' name='n1' ip='10.82.0.10'/></dhcp></ip></network>";
    let intent = adopt(xml).unwrap().intent;
    let name: NetworkName = "lab".parse().unwrap();
    let text = config_section(&name, &intent);
    assert!(text.contains("[networks.lab]"), "{text}");
    let cfg = Config::parse(&text, std::path::Path::new("section")).unwrap();
    assert_eq!(cfg.networks[&name].intent(), intent, "{text}");
}

fn hand_over(mode: Mode, conf: &str, system_active: bool, daemon: bool) -> HandOver {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::write(root.path().join("etc/dnsmasq.conf"), conf).unwrap();
    HandOver {
        mode,
        effective: EffectiveConfig::read(root.path()),
        system_active,
        daemon,
    }
}

fn net(bridge: &str) -> ManagedNetwork {
    let xml = format!(
        "<network><name>lab</name><forward mode='nat'/><bridge name='{bridge}'/>\
         <ip address='10.82.0.1' prefix='24'><dhcp>\
         <range start='10.82.0.100' end='10.82.0.150'/></dhcp></ip></network>"
    );
    let adopted = adopt(&xml).unwrap();
    crate::agent::desired::managed(&adopted.xml, &Config::default())
        .unwrap()
        .network
}

/// adopt refuses a hand-over after which nothing would serve the network.
#[test]
fn a_network_is_only_handed_over_to_what_will_serve_it() {
    let coexist = "bind-interfaces\nexcept-interface=virbr*\n";
    // The system dnsmasq excludes virbr0: a private instance beside it, run by the daemon.
    let h = hand_over(Mode::System, coexist, true, true);
    assert_eq!(h.refusal(&net("virbr0"), true), None);
    assert_eq!(h.refusal(&net("vqbr0"), true), None);
    let h = hand_over(Mode::System, coexist, true, false);
    let why = h.refusal(&net("virbr0"), true).unwrap();
    assert!(why.contains("needs a private dnsmasq"), "{why}");
    assert_eq!(h.refusal(&net("vqbr0"), true), None);
    // In default mode the system dnsmasq holds udp/67: nothing can serve an excluded bridge.
    let h = hand_over(Mode::System, "no-dhcp-interface=virbr0\n", true, true);
    let why = h.refusal(&net("virbr0"), false).unwrap();
    assert!(
        why.contains("no-dhcp-interface") && why.contains("bind-interfaces"),
        "{why}"
    );
    let h = hand_over(Mode::System, "", false, true);
    assert!(h
        .refusal(&net("virbr0"), false)
        .unwrap()
        .contains("not running"));
    // Private mode: an instance needs a daemon, which matters at once for a restart.
    let h = hand_over(Mode::Private, coexist, true, false);
    let why = h.refusal(&net("virbr0"), true).unwrap();
    assert!(why.contains("no `virtmasq daemon`"), "{why}");
    assert!(h.refusal(&net("virbr0"), false).is_none());
    let h = hand_over(Mode::Private, coexist, true, true);
    assert!(h.refusal(&net("virbr0"), true).is_none());
}

fn job(direction: Direction) -> Job {
    Job {
        hand_over: None,
        uri: "test:///default".into(),
        args: Args {
            network: "lab".parse().unwrap(),
            dry_run: false,
            no_restart: false,
            libvirt_uri: None,
        },
        direction,
        config_path: "/etc/virtmasq/virtmasq.toml".into(),
        cfg: Config::default(),
    }
}

#[test]
fn metadata_that_libvirt_dropped_is_an_error_with_the_config_section() {
    let xml = "<network><name>lab</name><bridge name='vqbr-lab'/>\
               <ip address='10.82.0.1' prefix='24'><dhcp>\
               <range start='10.82.0.100' end='10.82.0.150'/></dhcp></ip></network>";
    let adopted = adopt(xml).unwrap();
    let j = job(Direction::Adopt);
    j.check_kept(&adopted.xml, Some(&adopted.intent)).unwrap();
    // A libvirt that does not keep network metadata drops the whole element.
    let (start, end) = (
        adopted.xml.find("<metadata>"),
        adopted.xml.find("</metadata>"),
    );
    let (start, end) = (start.unwrap(), end.unwrap() + "</metadata>".len());
    let dropped = format!("{}{}", &adopted.xml[..start], &adopted.xml[end..]);
    let err = j.check_kept(&dropped, Some(&adopted.intent)).unwrap_err();
    let text = format!("{err:#}");
    for needle in [
        "did not keep virtmasq's <metadata>",
        "[networks.lab]",
        "10.82.0.150",
    ] {
        assert!(text.contains(needle), "{text}\nmissing {needle:?}");
    }
    // After release, libvirt must serve the network again.
    let j = job(Direction::Release);
    j.check_kept(xml, None).unwrap();
    assert!(j.check_kept(&adopted.xml, None).is_err());
}

#[test]
fn a_dry_run_shows_both_and_says_nothing_changed() {
    let before = "<network><name>a</name></network>";
    let after = "<network><name>b</name></network>";
    let out = dry_run(before, after, None);
    assert!(out.contains(before) && out.contains(after), "{out}");
    assert!(out.ends_with("nothing was changed\n"), "{out}");
}

/// An isolated network with DNS needs no-resolv, which a shared dnsmasq would apply to every
/// interface: in system mode it gets a private instance beside the system dnsmasq; without DNS
/// its lines (an empty router option) are scoped to the bridge and the system dnsmasq serves it.
#[test]
fn an_isolated_network_with_dns_is_served_privately_in_system_mode() {
    let isolated = |dns: &str| {
        let xml = format!(
            "<network><name>iso</name><bridge name='vqiso0'/>{dns}\
             <ip address='10.83.0.1' prefix='24'><dhcp>\
             <range start='10.83.0.100' end='10.83.0.150'/></dhcp></ip></network>"
        );
        crate::agent::desired::managed(&adopt(&xml).unwrap().xml, &Config::default())
            .unwrap()
            .network
    };
    let coexist = "bind-interfaces\n";
    let effective = hand_over(Mode::System, coexist, true, true).effective;
    let with_dns = isolated("");
    match place(&with_dns, &effective, system_refusal(&with_dns)) {
        crate::system::placement::Placement::Private(r) => {
            assert!(r.why.contains("isolated"), "{}", r.why)
        }
        other => panic!("{other:?}"),
    }
    let without = isolated("<dns enable='no'/>");
    assert_eq!(
        place(&without, &effective, system_refusal(&without)),
        crate::system::placement::Placement::System
    );
}
