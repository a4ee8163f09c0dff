//! The PXE filter through the agent: the daemon's private dnsmasq reads the hostsdir the
//! `virtmasq filter` commands write, and a deny or allow takes effect without a restart.

mod lab;
mod support;

use std::time::{Duration, Instant};

use lab::{Lab, ProbeOptions};
use support::*;

#[test]
fn deny_and_allow_take_effect_without_a_restart() {
    let lab = Lab::new("filter_agent");
    lab.add_bridge("vqf0", "10.87.0.1/24");
    let uri = write_node(
        lab.dir(),
        "node.xml",
        &[TestNet {
            name: "lab",
            bridge: "vqf0",
            ip: "10.87.0.1/24",
            dhcp: Some(r#"<virtmasq:range start="10.87.0.100" end="10.87.0.150"/>"#),
        }],
    );
    let extra = format!(
        "[filter]\nenabled = true\nhostsdir = \"{}/hostsdir\"\n",
        lab.dir().display()
    );
    let cfg = write_config(lab.dir(), &uri, &extra);
    let cfg = cfg.to_str().unwrap();
    lab.spawn_host(&[BIN, "--config", cfg, "daemon"]);
    let pid_file = lab.dir().join("run/lab/pid/dnsmasq.pid");
    assert!(wait_until(Duration::from_secs(10), || live_pid(&pid_file).is_some()));
    let dnsmasq = live_pid(&pid_file).unwrap();
    let conf = std::fs::read_to_string(lab.dir().join("run/lab/dnsmasq.conf")).unwrap();
    assert!(
        conf.contains("dhcp-hostsdir=") && conf.contains("tag-if=set:virtmasq-filter,tag:vqf0"),
        "{conf}"
    );

    let mac = "52:54:00:87:00:01";
    let client = lab.add_client("vqf0", mac);
    let quick = ProbeOptions {
        timeout: Duration::from_millis(1500),
        ..Default::default()
    };
    assert!(
        client.probe(&quick).is_some(),
        "unknown MACs are allowed by default"
    );

    let denied = run_agent(
        &["--config", cfg, "filter", "deny", mac],
        Duration::from_secs(20),
    );
    assert!(
        denied.status.success(),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
    let t = Instant::now();
    assert!(client.probe(&quick).is_none(), "a denied MAC got an offer");
    let allowed = run_agent(
        &["--config", cfg, "filter", "allow", mac],
        Duration::from_secs(20),
    );
    assert!(allowed.status.success());
    assert!(
        client.probe(&quick).is_some(),
        "an allowed MAC got no offer"
    );
    eprintln!("deny and allow observed within {:?}", t.elapsed());
    assert_eq!(live_pid(&pid_file), Some(dnsmasq), "dnsmasq was restarted");
}
