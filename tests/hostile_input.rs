//! Hostile input is refused with a message that names it, and nothing is written or started for
//! it, while a valid network beside it is served.

mod lab;
mod support;

use std::time::Duration;

use lab::Lab;
use support::*;

const RANGE_OK: &str = r#"<virtmasq:range start="10.93.0.100" end="10.93.0.150"/>"#;
const RANGE_OK_94: &str = r#"<virtmasq:range start="10.94.0.100" end="10.94.0.150"/>"#;

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
    // only its lease file exists (the daemon's lock file stays: removing it would let two
    // daemons lock two different files).
    let written = tree(lab.dir());
    for f in &written {
        assert!(
            (!f.starts_with("run/") || f == "run/virtmasq.lock")
                && (!f.starts_with("state/") || f == "state/leases/good.leases"),
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
            // '!' would negate the tag that scopes the range; a quote breaks the system config.
            TestNet {
                name: "bang",
                bridge: "!vqh5",
                ip: "10.94.0.1/24",
                dhcp: Some(RANGE_OK),
            },
            TestNet {
                name: "quote",
                bridge: "vq\"h6",
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
        ("bang", "invalid interface name \"!vqh5\""),
        ("quote", "invalid interface name \"vq\\\"h6\""),
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
        // dnsmasq would cut the line at " #": refused at load, not written truncated.
        ("[filter]\nhostsdir = \"/srv/h #x\"\n", "/srv/h #x"),
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

/// Without a system bus nothing stopped a second daemon with the same configuration, and the
/// two stopped and restarted each other's dnsmasq. The second now exits 75 naming the first,
/// before it writes or starts anything.
#[test]
fn a_second_daemon_exits_75_and_the_first_keeps_serving() {
    let lab = Lab::new("second_daemon");
    lab.add_bridge("vqok0", "10.93.0.1/24");
    let uri = write_node(
        lab.dir(),
        "node.xml",
        &[TestNet {
            name: "good",
            bridge: "vqok0",
            ip: "10.93.0.1/24",
            dhcp: Some(RANGE_OK),
        }],
    );
    let cfg = write_config(lab.dir(), &uri, "");
    let cfg = cfg.to_str().unwrap();
    let first = lab.spawn_host(&[BIN, "--config", cfg, "daemon"]);
    let dnsmasq_pid = lab.dir().join("run/good/pid/dnsmasq.pid");
    assert!(wait_until(Duration::from_secs(10), || live_pid(
        &dnsmasq_pid
    )
    .is_some()));
    let dnsmasq = live_pid(&dnsmasq_pid).unwrap();
    let daemon_pid_file = lab.dir().join("run/virtmasq.pid");
    assert!(wait_until(Duration::from_secs(5), || daemon_pid_file.exists()));

    let second = lab.spawn_host(&[BIN, "--config", cfg, "daemon"]);
    assert!(wait_until(Duration::from_secs(20), || lab
        .process_status(second)
        .is_some()));
    let status = lab.process_status(second).unwrap();
    let log = lab.process_log(second);
    assert_eq!(status.code(), Some(75), "{log}");
    assert!(
        log.contains(&format!("pid {first}")) && log.contains("virtmasq.lock"),
        "{log}"
    );
    // The first daemon, its dnsmasq and its pid file are untouched, and it still serves.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        lab.process_status(first).is_none(),
        "the first daemon exited"
    );
    assert_eq!(live_pid(&dnsmasq_pid), Some(dnsmasq));
    assert_eq!(live_pid(&daemon_pid_file), Some(first as i32));
    let client = lab.add_client("vqok0", "52:54:00:93:00:02");
    assert!(client.lease().is_some());
}

/// A system fragment's DNS lines are read by the host's shared dnsmasq: `domain="com"` made the
/// host answer all of `com` locally for every client, and `dns="no"` was never consulted.
#[test]
fn render_in_system_mode_keeps_the_hosts_dns_to_the_networks_own_names() {
    let dir = tempfile::tempdir().unwrap();
    let net = |name: &str, bridge: &str, dns: &str, inner: &str| {
        format!(
            "<network><name>{name}</name><forward mode='nat'/><bridge name='{bridge}'/>\
             <dns enable='no'/><ip address='10.94.0.1' prefix='24'/><metadata><virtmasq:dhcp \
             xmlns:virtmasq=\"http://virtmasq.org/xmlns/network/1.0\" dns=\"{dns}\">\
             {RANGE_OK_94}{inner}</virtmasq:dhcp></metadata></network>"
        )
    };
    let node = dir.path().join("node.xml");
    std::fs::write(
        &node,
        format!(
            "<node>{}{}{}</node>",
            net("tld", "vqh1", "yes", r#"<virtmasq:domain name="com"/>"#),
            net(
                "stray",
                "vqh2",
                "yes",
                r#"<virtmasq:domain name="lab.example"/><virtmasq:host mac="52:54:00:94:00:01" name="www.google.com"/>"#
            ),
            net(
                "quiet",
                "vqh3",
                "no",
                r#"<virtmasq:domain name="quiet.example"/><virtmasq:host mac="52:54:00:94:00:02" ip="10.94.0.9" name="n1"/>"#
            ),
        ),
    )
    .unwrap();
    let cfg = write_config(dir.path(), &format!("test://{}", node.display()), "");
    let cfg = cfg.to_str().unwrap();
    let render = |network: &str| {
        run_agent(
            &["--config", cfg, "render", network, "--mode", "system"],
            Duration::from_secs(20),
        )
    };
    for (network, wants) in [
        ("tld", &["'tld'", "'com'", "single label"][..]),
        ("stray", &["'stray'", "'www.google.com'", "outside"][..]),
    ] {
        let out = render(network);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "render {network} succeeded");
        for want in wants {
            assert!(err.contains(want), "render {network}: {err}");
        }
    }
    let out = render("quiet");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in ["domain=", "local=", "quiet.example", ",n1"] {
        assert!(!text.contains(line), "{line} in\n{text}");
    }
    assert!(text.contains("dhcp-ignore-names=tag:vqh3"), "{text}");
    assert_eq!(tree(dir.path()), vec!["node.xml", "virtmasq.toml"]);
}
