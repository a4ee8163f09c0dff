use super::*;

fn obs(frags: &[(&str, &str)], hosts: &[(&str, &str)], foreign: &[&str]) -> Observed {
    Observed {
        fragments: frags
            .iter()
            .map(|(p, t)| (p.into(), t.as_bytes().to_vec()))
            .collect(),
        foreign: foreign.iter().map(|p| p.into()).collect(),
        hosts: hosts
            .iter()
            .map(|(p, t)| (p.into(), t.as_bytes().to_vec()))
            .collect(),
    }
}

fn want(frags: &[(&str, &str)], hosts: &[(&str, &str)]) -> Desired {
    Desired {
        fragments: frags
            .iter()
            .map(|(p, t)| (p.into(), t.to_string()))
            .collect(),
        hosts: hosts
            .iter()
            .map(|(p, t)| (p.into(), t.to_string()))
            .collect(),
        deferred: vec![],
        refused: vec![],
    }
}

#[test]
fn nothing_to_do_when_equal() {
    let o = obs(&[("/d/virtmasq-a.conf", "x")], &[("/s/a.hosts", "h")], &[]);
    let p = plan(
        &o,
        &want(&[("/d/virtmasq-a.conf", "x")], &[("/s/a.hosts", "h")]),
        &Loaded::none(),
    );
    assert!(p.is_empty() && !p.restart && !p.hangup, "{p:?}");
}

#[test]
fn host_change_is_a_hangup_not_a_restart() {
    let o = obs(&[("/d/virtmasq-a.conf", "x")], &[("/s/a.hosts", "h1")], &[]);
    let p = plan(
        &o,
        &want(&[("/d/virtmasq-a.conf", "x")], &[("/s/a.hosts", "h2")]),
        &Loaded::none(),
    );
    assert!(p.hangup && !p.restart, "{p:?}");
    assert_eq!(p.writes, vec![("/s/a.hosts".into(), "h2".to_string())]);
}

#[test]
fn range_change_and_removal_restart() {
    let o = obs(
        &[("/d/virtmasq-a.conf", "x"), ("/d/virtmasq-gone.conf", "y")],
        &[("/s/a.hosts", "h"), ("/s/gone.hosts", "g")],
        &[],
    );
    let p = plan(
        &o,
        &want(&[("/d/virtmasq-a.conf", "x2")], &[("/s/a.hosts", "h2")]),
        &Loaded::none(),
    );
    assert!(
        p.restart && !p.hangup,
        "a restart re-reads hosts anyway: {p:?}"
    );
    assert_eq!(p.removals, vec![PathBuf::from("/d/virtmasq-gone.conf")]);
    assert_eq!(p.stale_hosts, vec![PathBuf::from("/s/gone.hosts")]);
    // Hosts files are written before the fragments that name them.
    assert_eq!(p.writes[0].0, PathBuf::from("/s/a.hosts"));
}

#[test]
fn a_file_virtmasq_did_not_write_is_never_replaced() {
    let o = obs(&[], &[], &["/d/virtmasq-a.conf"]);
    let p = plan(
        &o,
        &want(&[("/d/virtmasq-a.conf", "x")], &[]),
        &Loaded::none(),
    );
    assert_eq!(p.refused, vec![PathBuf::from("/d/virtmasq-a.conf")]);
    assert!(p.writes.is_empty() && !p.restart);
}

fn effective(root_conf: &str) -> EffectiveConfig {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    std::fs::write(dir.path().join("etc/dnsmasq.conf"), root_conf).unwrap();
    EffectiveConfig::read(dir.path())
}

fn target(eff: &EffectiveConfig) -> Target<'_> {
    Target {
        conf_dir: Path::new("/etc/dnsmasq.d"),
        state_dir: Path::new("/var/lib/virtmasq"),
        effective: eff,
        tag_hosts: true,
        shared_lines: vec![],
    }
}

fn network() -> ManagedNetwork {
    let intent = crate::model::DhcpIntent {
        ranges6: Vec::new(),
        hosts6: Vec::new(),
        ranges: vec![crate::model::DhcpRange {
            range: crate::model::Ipv4Range::new(
                "10.50.0.10".parse().unwrap(),
                "10.50.0.20".parse().unwrap(),
            )
            .unwrap(),
            lease: None,
        }],
        hosts: vec![],
        domain: None,
        dns: true,
        pxe: None,
    };
    ManagedNetwork::new(
        "lab".parse().unwrap(),
        "vqbr9".parse().unwrap(),
        vec!["10.50.0.1/24".parse().unwrap()],
        intent,
    )
    .unwrap()
}

#[test]
fn bind_interfaces_system_waits_for_the_bridge() {
    let eff = effective("interface=lo\nbind-interfaces\n");
    let t = target(&eff);
    let nets = [network()];
    let absent = desired(&nets, &t, |_| vec![], |_| false);
    assert!(absent.fragments.is_empty());
    assert_eq!(absent.deferred.len(), 1);
    let present = desired(&nets, &t, |_| vec![], |_| true);
    let text = &present.fragments[Path::new("/etc/dnsmasq.d/virtmasq-lab.conf")];
    assert!(text.contains("interface=vqbr9"), "{text}");
}

#[test]
fn unrestricted_system_gets_no_interface_line() {
    let eff = effective("# nothing\n");
    let t = target(&eff);
    let d = desired(&[network()], &t, |_| vec![], |_| false);
    let text = &d.fragments[Path::new("/etc/dnsmasq.d/virtmasq-lab.conf")];
    assert!(!text.contains("interface="), "{text}");
    assert!(text.contains("dhcp-range=tag:vqbr9,"), "{text}");
}

#[test]
fn a_bridge_the_system_excludes_is_deferred_not_written() {
    let eff = effective("except-interface=vqbr*\n");
    let t = target(&eff);
    let d = desired(&[network()], &t, |_| vec![], |_| true);
    assert!(d.fragments.is_empty());
    assert!(
        d.deferred[0].1.contains("except-interface=vqbr*"),
        "{:?}",
        d.deferred
    );
}

/// `<virtmasq:domain name="com"/>` made the host's resolver answer all of `com` locally: such a
/// network is refused by name (its old fragment goes), and the others are still written.
#[test]
fn a_network_widening_the_hosts_dns_is_refused_and_the_others_written() {
    let eff = effective("local=/corp.example/\n");
    let t = target(&eff);
    let with_domain = |name: &str, bridge: &str, domain: &str| {
        let mut n = network();
        n.name = name.parse().unwrap();
        n.bridge = bridge.parse().unwrap();
        n.domain = Some(domain.parse().unwrap());
        n
    };
    let nets = [
        with_domain("tld", "vqbr1", "com"),
        with_domain("clash", "vqbr2", "vm.corp.example"),
        with_domain("good", "vqbr3", "lab.example"),
    ];
    let d = desired(&nets, &t, |_| vec![], |_| true);
    let written: Vec<_> = d.fragments.keys().collect();
    assert_eq!(written, [Path::new("/etc/dnsmasq.d/virtmasq-good.conf")]);
    assert_eq!(d.refused.len(), 2, "{:?}", d.refused);
    assert!(d.refused[0].1.contains("'tld'") && d.refused[0].1.contains("'com'"));
    assert!(d.refused[1].1.contains("'clash'") && d.refused[1].1.contains("corp.example"));
    let o = obs(
        &[("/etc/dnsmasq.d/virtmasq-tld.conf", "local=/com/\n")],
        &[],
        &[],
    );
    let p = plan(&o, &d, &Loaded::none());
    assert_eq!(
        p.removals,
        [PathBuf::from("/etc/dnsmasq.d/virtmasq-tld.conf")]
    );
}

/// virtmasq's own fragments do not count as the system's domains (else a network would clash
/// with itself on the next reconcile).
#[test]
fn a_networks_own_fragment_is_not_a_clash() {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(etc.join("dnsmasq.d")).unwrap();
    std::fs::write(etc.join("dnsmasq.conf"), "conf-dir=/etc/dnsmasq.d\n").unwrap();
    std::fs::write(
        etc.join("dnsmasq.d/virtmasq-lab.conf"),
        format!("{}\nlocal=/lab.example/\n", fragment::MARK),
    )
    .unwrap();
    let eff = EffectiveConfig::read(dir.path());
    assert!(eff.dns_domains.is_empty(), "{:?}", eff.dns_domains);
}

const GONE: &str = "# Generated by virtmasq for libvirt network 'gone' (bridge vbr9).\n\
    dhcp-range=tag:vbr9,10.9.0.10,10.9.0.20,255.255.255.0,3600\n\
    dhcp-hostsfile=/s/gone.hosts\n";

fn linger(bridge: &str, hosts: &str) -> Linger {
    Linger {
        bridge: bridge.into(),
        hosts: Some(hosts.into()),
    }
}

/// A stopped network whose lines are all scoped to its bridge, now gone: its fragment goes
/// without a restart, its hosts file stays (dnsmasq still names it), and it is recorded.
#[test]
fn a_stopped_networks_inert_lines_linger_without_a_restart() {
    let o = obs(
        &[("/d/virtmasq-a.conf", "x"), ("/d/virtmasq-gone.conf", GONE)],
        &[
            ("/s/a.hosts", "h"),
            ("/s/gone.hosts", "tag:vbr9,52:54:00:00:00:09\n"),
        ],
        &[],
    );
    let w = want(&[("/d/virtmasq-a.conf", "x")], &[("/s/a.hosts", "h")]);
    let empty = BTreeSet::new();
    let gone = |b: &str| b != "vbr9";
    let loaded = Loaded {
        lingering: &empty,
        may_linger: true,
        bridge_exists: &gone,
    };
    let p = plan(&o, &w, &loaded);
    assert!(!p.restart && !p.hangup, "{p:?}");
    assert_eq!(p.removals, vec![PathBuf::from("/d/virtmasq-gone.conf")]);
    assert!(p.stale_hosts.is_empty(), "{p:?}");
    assert!(p.lingering_changed);
    assert_eq!(p.lingering, [linger("vbr9", "/s/gone.hosts")].into());

    // The same removal restarts where it may not linger, where the bridge is still there,
    // or where the hosts file has a line for everyone.
    let p = plan(&o, &w, &Loaded::none());
    assert!(
        p.restart && p.lingering.is_empty() && !p.lingering_changed,
        "{p:?}"
    );
    assert_eq!(p.stale_hosts, vec![PathBuf::from("/s/gone.hosts")]);
    let there = |_: &str| true;
    let p = plan(
        &o,
        &w,
        &Loaded {
            bridge_exists: &there,
            ..loaded
        },
    );
    assert!(p.restart, "{p:?}");
    let mut untagged = o.clone();
    untagged
        .hosts
        .insert("/s/gone.hosts".into(), b"52:54:00:00:00:09\n".to_vec());
    let loaded = Loaded {
        lingering: &empty,
        may_linger: true,
        bridge_exists: &gone,
    };
    assert!(plan(&untagged, &w, &loaded).restart);
}

/// A lingering bridge created again restarts dnsmasq even with nothing to write, and the
/// restart ends the record and the hosts file's stay.
#[test]
fn a_lingering_bridge_created_again_restarts() {
    let o = obs(
        &[("/d/virtmasq-a.conf", "x")],
        &[
            ("/s/a.hosts", "h"),
            ("/s/gone.hosts", "tag:vbr9,52:54:00:00:00:09\n"),
        ],
        &[],
    );
    let w = want(&[("/d/virtmasq-a.conf", "x")], &[("/s/a.hosts", "h")]);
    let record: BTreeSet<Linger> = [linger("vbr9", "/s/gone.hosts")].into();
    let absent = |_: &str| false;
    let loaded = Loaded {
        lingering: &record,
        may_linger: true,
        bridge_exists: &absent,
    };
    let p = plan(&o, &w, &loaded);
    assert!(p.is_empty(), "still gone: nothing to do, {p:?}");
    let back = |b: &str| b == "vbr9";
    let p = plan(
        &o,
        &w,
        &Loaded {
            bridge_exists: &back,
            ..loaded
        },
    );
    assert!(p.restart && !p.is_empty(), "{p:?}");
    assert!(p.lingering.is_empty() && p.lingering_changed);
    assert_eq!(p.stale_hosts, vec![PathBuf::from("/s/gone.hosts")]);
}
