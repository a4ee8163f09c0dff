//! Detection fixtures: a root tree as the distribution ships it, and the dynamic facts (unit
//! state, port holders) as they were on such a system.

use std::path::Path;

use serde::Deserialize;

use super::*;

#[derive(Deserialize)]
struct Fixture {
    version_text: Option<String>,
    unit: UnitFacts,
    udp67: Vec<PortHolderJson>,
    expect: Expect,
}

#[derive(Deserialize)]
struct PortHolderJson {
    pid: u32,
    command: String,
    addresses: Vec<String>,
}

#[derive(Deserialize)]
struct Expect {
    mode: Mode,
    conflicts: Vec<String>,
    reason: String,
    restricts_interfaces: bool,
    local_service: bool,
    bind_mode: BindMode,
}

fn run(name: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/system")
        .join(name);
    let fx: Fixture =
        serde_json::from_str(&std::fs::read_to_string(dir.join("facts.json")).unwrap()).unwrap();
    let config = EffectiveConfig::read(&dir.join("root"));
    let facts = Facts {
        binary: fx.version_text.as_deref().map(|t| {
            (
                "/usr/sbin/dnsmasq".into(),
                DnsmasqVersion::parse(t).unwrap(),
            )
        }),
        unit: fx.unit,
        config,
        conf_dir: "/etc/dnsmasq.d".into(),
        udp67: fx
            .udp67
            .into_iter()
            .map(|h| PortHolder {
                pid: h.pid,
                command: h.command,
                addresses: h.addresses,
            })
            .collect(),
        managed_bridges: vec!["virbr10".into()],
        forced: None,
    };
    let d = decide(&facts);
    let codes: Vec<&str> = d.conflicts.iter().map(|c| c.code.as_str()).collect();
    assert_eq!(d.mode, fx.expect.mode, "{name}: {d:#?}");
    assert_eq!(codes, fx.expect.conflicts, "{name}: {d:#?}");
    assert!(
        d.reasons.iter().any(|r| r.contains(&fx.expect.reason)),
        "{name}: no reason mentions {:?}: {:#?}",
        fx.expect.reason,
        d.reasons
    );
    let c = &facts.config;
    assert_eq!(
        c.restricts_interfaces(),
        fx.expect.restricts_interfaces,
        "{name}: {c:#?}"
    );
    assert_eq!(c.local_service, fx.expect.local_service, "{name}");
    assert_eq!(c.bind_mode, fx.expect.bind_mode, "{name}");
}

#[test]
fn debian_default() {
    run("debian-default");
}

#[test]
fn fedora_default() {
    run("fedora-default");
}

#[test]
fn libvirt_fragment_present() {
    run("libvirt-fragment");
}

#[test]
fn dnsmasq_not_installed() {
    run("not-installed");
}

#[test]
fn installed_but_disabled() {
    run("disabled");
}

#[test]
fn default_mode_instance_holding_udp67() {
    run("default-mode-dhcp");
}

#[test]
fn libvirt_instances_already_serving_dhcp() {
    run("libvirt-instances");
}

#[test]
fn systemd_not_running() {
    run("no-systemd");
}

#[test]
fn forced_mode_wins_and_says_so() {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/system/not-installed/root");
    let facts = Facts {
        binary: None,
        unit: UnitFacts::default(),
        config: EffectiveConfig::read(&dir),
        conf_dir: "/etc/dnsmasq.d".into(),
        udp67: vec![],
        managed_bridges: vec![],
        forced: Some(Mode::System),
    };
    let d = decide(&facts);
    assert_eq!(d.mode, Mode::System);
    assert!(d.reasons[0].contains("forced"), "{:?}", d.reasons);
}
