//! Hostile input is refused with a message that names it, and nothing is written or started for
//! it, while a valid network beside it is served.

mod lab;
mod support;

use std::time::Duration;

use lab::Lab;
use support::*;

const RANGE_OK: &str = r#"<virtmasq:range start="10.93.0.100" end="10.93.0.150"/>"#;

#[test]
fn hostile_networks_are_refused_and_a_good_one_still_served() {
    let lab = Lab::new("hostile_networks");
    lab.add_bridge("vqok0", "10.93.0.1/24");
    let long_bridge = "b".repeat(40);
    let uri = write_node(
        lab.dir(),
        "node.xml",
        &[
            TestNet {
                name: "good",
                bridge: "vqok0",
                ip: "10.93.0.1/24",
                dhcp: Some(RANGE_OK),
            },
            TestNet {
                name: "new\nline",
                bridge: "vqh1",
                ip: "10.94.0.1/24",
                dhcp: Some(RANGE_OK),
            },
            TestNet {
                name: "com,ma",
                bridge: "vqh2",
                ip: "10.94.0.1/24",
                dhcp: Some(RANGE_OK),
            },
            TestNet {
                name: "longbr",
                bridge: &long_bridge,
                ip: "10.94.0.1/24",
                dhcp: Some(RANGE_OK),
            },
            TestNet {
                name: "outside",
                bridge: "vqh3",
                ip: "10.95.0.1/24",
                dhcp: Some(r#"<virtmasq:range start="10.95.0.100" end="10.95.1.20"/>"#),
            },
            TestNet {
                name: "badmac",
                bridge: "vqh4",
                ip: "10.96.0.1/24",
                dhcp: Some(r#"<virtmasq:host mac="zz:00:00:00:00:00" ip="10.96.0.5"/>"#),
            },
        ],
    );
    let cfg = write_config(lab.dir(), &uri, "");
    let agent = lab.spawn_host(&[BIN, "--config", cfg.to_str().unwrap(), "daemon"]);
    let good_pid = lab.dir().join("run/good/pid/dnsmasq.pid");
    assert!(wait_until(Duration::from_secs(10), || live_pid(&good_pid).is_some()));
    // The valid network is served...
    let client = lab.add_client("vqok0", "52:54:00:93:00:01");
    assert!(client.lease().is_some());
    signal(agent, nix::sys::signal::SIGTERM);
    assert!(wait_until(Duration::from_secs(5), || !good_pid.exists()));
    // ...and nothing was ever written for the others: only 'good' had a run directory, and
    // only its lease file exists.
    let written = tree(lab.dir());
    for f in &written {
        assert!(
            !f.starts_with("run/") && (!f.starts_with("state/") || f == "state/leases/good.leases"),
            "unexpected file {f} in {written:?}"
        );
    }
    let log = std::fs::read_to_string(lab.dir().join("virtmasq-0.log")).unwrap();
    for want in [
        "new\\nline",
        "com,ma",
        &long_bridge,
        "10.95.0.100-10.95.1.20",
        "zz:00:00:00:00:00",
    ] {
        assert!(log.contains(want), "the log does not name {want:?}:\n{log}");
    }
}

#[test]
fn render_refuses_hostile_input_with_a_named_error() {
    let dir = tempfile::tempdir().unwrap();
    let long_bridge = "b".repeat(40);
    let uri = write_node(
        dir.path(),
        "node.xml",
        &[
            TestNet {
                name: "com,ma",
                bridge: "vqh2",
                ip: "10.94.0.1/24",
                dhcp: Some(RANGE_OK),
            },
            TestNet {
                name: "longbr",
                bridge: &long_bridge,
                ip: "10.94.0.1/24",
                dhcp: Some(RANGE_OK),
            },
        ],
    );
    let cfg = write_config(dir.path(), &uri, "");
    let cfg = cfg.to_str().unwrap();
    for (network, want) in [
        ("new\nline", "new\\nline"),
        ("com,ma", "com,ma"),
        ("longbr", long_bridge.as_str()),
    ] {
        let out = run_agent(
            &["--config", cfg, "render", network],
            Duration::from_secs(20),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "render {network:?} succeeded");
        assert!(err.contains(want), "render {network:?}: {err}");
    }
    assert_eq!(tree(dir.path()), vec!["node.xml", "virtmasq.toml"]);
}

#[test]
fn a_config_typo_or_bad_mac_stops_the_daemon_before_it_writes_anything() {
    let dir = tempfile::tempdir().unwrap();
    let uri = write_node(dir.path(), "node.xml", &[]);
    for (extra, want) in [
        (
            "[networks.lab]\nhosts = [{ mac = \"zz:00:00:00:00:00\" }]\n",
            "zz:00:00:00:00:00",
        ),
        ("[filtre]\nenabled = true\n", "filtre"),
        (
            "[networks.lab]\nranges = [{ start = \"10.0.0.9\", end = \"10.0.0.1\" }]\n",
            "10.0.0.9",
        ),
    ] {
        let cfg = write_config(dir.path(), &uri, extra);
        let out = run_agent(
            &["--config", cfg.to_str().unwrap(), "daemon"],
            Duration::from_secs(20),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{err}");
        assert!(err.contains(want) && err.contains("line"), "{err}");
        assert_eq!(tree(dir.path()), vec!["node.xml", "virtmasq.toml"]);
    }
}
