//! Private mode end to end: a libvirt network from the test driver, the agent in the lab's host
//! namespace, its own dnsmasq on the bridge, real DHCP clients in client namespaces.

mod lab;
mod support;

use std::time::Duration;

use lab::{Lab, ProbeOptions};
use support::*;

const RANGE: &str = r#"<virtmasq:range start="10.91.0.100" end="10.91.0.150" lease="1h"/>"#;
const STATIC_MAC: &str = "52:54:00:91:00:0a";

fn lab_with_agent(name: &str) -> (Lab, std::path::PathBuf, u32) {
    let lab = Lab::new(name);
    lab.add_bridge("vqa0", "10.91.0.1/24");
    lab.add_bridge("vqb0", "10.92.0.1/24");
    let dhcp =
        format!(r#"{RANGE}<virtmasq:host mac="{STATIC_MAC}" ip="10.91.0.10" name="fixed"/>"#);
    let (pid_file, agent) = start_agent(&lab, &dhcp);
    (lab, pid_file, agent)
}

/// Starts the agent on network 'lab' (bridge vqa0, its intent `dhcp`) and waits for its
/// dnsmasq; returns the dnsmasq's pid file and the agent's pid.
fn start_agent(lab: &Lab, dhcp: &str) -> (std::path::PathBuf, u32) {
    let uri = write_node(
        lab.dir(),
        "node.xml",
        &[TestNet {
            name: "lab",
            bridge: "vqa0",
            ip: "10.91.0.1/24",
            dhcp: Some(dhcp),
        }],
    );
    let cfg = write_config(lab.dir(), &uri, "");
    let agent = lab.spawn_host(&[BIN, "--config", cfg.to_str().unwrap(), "daemon"]);
    let pid_file = lab.dir().join("run/lab/pid/dnsmasq.pid");
    assert!(
        wait_until(Duration::from_secs(10), || live_pid(&pid_file).is_some()),
        "the agent did not start a dnsmasq for 'lab'"
    );
    (pid_file, agent)
}

#[test]
fn clients_get_leases_from_the_range_and_static_hosts_their_address() {
    let (lab, pid_file, _) = lab_with_agent("private_leases");
    // dnsmasq runs unprivileged from the start (so PR_SET_PDEATHSIG survives).
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", live_pid(&pid_file).unwrap())).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line.split_whitespace().skip(1).all(|u| u != "0"),
        "dnsmasq runs as root: {uid_line}"
    );
    let dynamic = lab.add_client("vqa0", "52:54:00:91:00:01");
    let lease = dynamic
        .lease()
        .expect("a client on the bridge gets a lease");
    let last = lease.ip.octets()[3];
    assert!(
        lease.ip.octets()[..3] == [10, 91, 0] && (100..=150).contains(&last),
        "lease {} outside 10.91.0.100-150",
        lease.ip
    );
    assert_eq!(lease.server_id, Some("10.91.0.1".parse().unwrap()));
    let fixed = lab.add_client("vqa0", STATIC_MAC);
    assert_eq!(
        fixed.lease().expect("static host lease").ip.to_string(),
        "10.91.0.10"
    );
    // The lease file lives in the state directory, so it survives restarts.
    let leases = std::fs::read_to_string(lab.dir().join("state/leases/lab.leases")).unwrap();
    assert!(
        leases.contains(STATIC_MAC) && leases.contains("10.91.0.10"),
        "{leases}"
    );
}

#[test]
fn another_bridge_in_the_same_host_gets_no_answer() {
    let (lab, _, _) = lab_with_agent("private_other_bridge");
    let other = lab.add_client("vqb0", "52:54:00:92:00:01");
    let opts = ProbeOptions {
        timeout: Duration::from_secs(3),
        ..Default::default()
    };
    assert!(
        other.probe(&opts).is_none(),
        "dnsmasq answered on a bridge it does not serve"
    );
    // The same probe on the served bridge does get an offer: the silence above is meaningful.
    let served = lab.add_client("vqa0", "52:54:00:91:00:02");
    assert!(served.probe(&opts).is_some());
}

#[test]
fn a_killed_dnsmasq_is_started_again_within_seconds() {
    let (lab, pid_file, _) = lab_with_agent("private_respawn");
    let first = live_pid(&pid_file).unwrap();
    signal(first as u32, nix::sys::signal::SIGKILL);
    let started = std::time::Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || live_pid(&pid_file)
            .is_some_and(|p| p != first)),
        "no new dnsmasq within 5 s"
    );
    eprintln!("dnsmasq restarted after {:?}", started.elapsed());
    let client = lab.add_client("vqa0", "52:54:00:91:00:03");
    assert!(
        client.lease().is_some(),
        "no lease from the restarted dnsmasq"
    );
}

#[test]
fn sigkill_to_the_agent_leaves_no_dnsmasq_of_ours() {
    let (lab, pid_file, agent) = lab_with_agent("private_pdeathsig");
    let dnsmasq = live_pid(&pid_file).unwrap();
    let conf = lab.dir().join("run/lab/dnsmasq.conf");
    signal(agent, nix::sys::signal::SIGKILL);
    assert!(
        wait_until(Duration::from_secs(3), || !std::path::Path::new(&format!(
            "/proc/{dnsmasq}/cmdline"
        ))
        .exists()
            || std::fs::read(format!("/proc/{dnsmasq}/cmdline"))
                .map(|c| c.is_empty())
                .unwrap_or(true)),
        "dnsmasq {dnsmasq} outlived the agent"
    );
    assert!(pids_with_arg(conf.to_str().unwrap()).is_empty());
}

#[test]
fn sigterm_stops_the_agent_and_its_dnsmasq_cleanly() {
    let (lab, pid_file, agent) = lab_with_agent("private_sigterm");
    let conf = lab.dir().join("run/lab/dnsmasq.conf");
    signal(agent, nix::sys::signal::SIGTERM);
    assert!(wait_until(Duration::from_secs(5), || pids_with_arg(
        conf.to_str().unwrap()
    )
    .is_empty()));
    // The agent exits 0 once its instances are down; their runtime files are removed, the
    // lease file stays.
    assert!(wait_until(Duration::from_secs(5), || lab
        .process_status(agent)
        .is_some()));
    assert!(lab.process_status(agent).unwrap().success());
    assert!(!pid_file.exists() && !conf.exists());
    assert!(lab.dir().join("state/leases").is_dir());
}

#[test]
fn a_bridge_created_again_is_served_again_within_a_second() {
    let (lab, pid_file, _) = lab_with_agent("private_bridge_recreated");
    let first = live_pid(&pid_file).unwrap();
    assert!(lab
        .add_client("vqa0", "52:54:00:91:00:04")
        .lease()
        .is_some());
    lab.del_link("vqa0");
    std::thread::sleep(Duration::from_millis(300));
    let recreated = std::time::Instant::now();
    lab.add_bridge("vqa0", "10.91.0.1/24");
    // dnsmasq's DHCP socket stays bound to the deleted device: the agent must notice the new
    // bridge (netlink) and start a new dnsmasq on it.
    assert!(
        wait_until(Duration::from_secs(3), || live_pid(&pid_file)
            .is_some_and(|p| p != first)),
        "no new dnsmasq after the bridge came back"
    );
    let back = recreated.elapsed();
    eprintln!("dnsmasq restarted {back:?} after the bridge was created again");
    assert!(back < Duration::from_secs(1), "took {back:?}");
    let client = lab.add_client("vqa0", "52:54:00:91:00:05");
    assert!(
        client.lease().is_some(),
        "no lease on the bridge created again"
    );
}

#[test]
fn sighup_with_a_broken_configuration_keeps_serving() {
    let (lab, pid_file, agent) = lab_with_agent("private_sighup_broken");
    let dnsmasq = live_pid(&pid_file).unwrap();
    let cfg = lab.dir().join("virtmasq.toml");
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{good}\n[dnsmasq]\nno_pnig = true\n")).unwrap();
    signal(agent, nix::sys::signal::SIGHUP);
    let log = lab.dir().join("virtmasq-0.log");
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(&log)
            .is_ok_and(|l| l.contains("configuration not reloaded"))),
        "no error logged for the broken configuration"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("virtmasq.toml") && text.contains("line"),
        "{text}"
    );
    // The old configuration stays in force: same dnsmasq, and clients still get leases.
    assert_eq!(live_pid(&pid_file), Some(dnsmasq));
    let client = lab.add_client("vqa0", "52:54:00:91:00:06");
    assert!(client.lease().is_some(), "no lease after a broken reload");
    assert!(
        std::path::Path::new(&format!("/proc/{agent}")).exists(),
        "the agent died"
    );
}

#[test]
fn a_network_that_turns_invalid_keeps_being_served_as_before() {
    let (lab, pid_file, agent) = lab_with_agent("private_turns_invalid");
    let dnsmasq = live_pid(&pid_file).unwrap();
    let conf = lab.dir().join("run/lab/dnsmasq.conf");
    let before = std::fs::read(&conf).unwrap();
    // The network's intent now has a range outside its subnet.
    write_node(
        lab.dir(),
        "node.xml",
        &[TestNet {
            name: "lab",
            bridge: "vqa0",
            ip: "10.91.0.1/24",
            dhcp: Some(r#"<virtmasq:range start="10.91.0.100" end="10.91.9.150"/>"#),
        }],
    );
    signal(agent, nix::sys::signal::SIGUSR1);
    let log = lab.dir().join("virtmasq-0.log");
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(&log)
            .is_ok_and(|l| l.contains("10.91.0.100-10.91.9.150"))),
        "the invalid range was not reported"
    );
    assert_eq!(
        live_pid(&pid_file),
        Some(dnsmasq),
        "the running dnsmasq was touched"
    );
    assert_eq!(
        std::fs::read(&conf).unwrap(),
        before,
        "its configuration was rewritten"
    );
    assert!(lab
        .add_client("vqa0", "52:54:00:91:00:07")
        .lease()
        .is_some());
}

#[test]
fn a_host_change_is_a_sighup_and_a_range_change_a_restart() {
    let (lab, pid_file, agent) = lab_with_agent("private_changes");
    let first = live_pid(&pid_file).unwrap();
    let reconcile = || signal(agent, nix::sys::signal::SIGUSR1);
    let node = |range: &str, hosts: &str| {
        let dhcp = format!("{range}{hosts}");
        write_node(
            lab.dir(),
            "node.xml",
            &[TestNet {
                name: "lab",
                bridge: "vqa0",
                ip: "10.91.0.1/24",
                dhcp: Some(&dhcp),
            }],
        );
    };
    let hosts = format!(
        r#"<virtmasq:host mac="{STATIC_MAC}" ip="10.91.0.10"/><virtmasq:host mac="52:54:00:91:00:0b" ip="10.91.0.11"/>"#
    );
    node(RANGE, &hosts);
    reconcile();
    let hosts_file = lab.dir().join("run/lab/hosts");
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&hosts_file).is_ok_and(|h| h.contains("10.91.0.11"))
    }));
    let client = lab.add_client("vqa0", "52:54:00:91:00:0b");
    assert_eq!(
        client.lease().map(|l| l.ip.to_string()).as_deref(),
        Some("10.91.0.11")
    );
    assert_eq!(
        live_pid(&pid_file),
        Some(first),
        "a host change restarted dnsmasq"
    );

    node(
        r#"<virtmasq:range start="10.91.0.200" end="10.91.0.220"/>"#,
        &hosts,
    );
    reconcile();
    assert!(
        wait_until(Duration::from_secs(5), || live_pid(&pid_file)
            .is_some_and(|p| p != first)),
        "a range change did not restart dnsmasq"
    );
    let lease = lab
        .add_client("vqa0", "52:54:00:91:00:0c")
        .lease()
        .expect("a lease");
    assert!(lease.ip.octets()[3] >= 200, "{lease:?}");
}

#[test]
fn leftovers_of_a_crashed_run_are_swept_at_start() {
    let lab = Lab::new("private_leftovers");
    lab.add_bridge("vqa0", "10.91.0.1/24");
    // What a SIGKILLed agent could leave for a network since removed: files and a dnsmasq.
    let old = lab.dir().join("run/old");
    std::fs::create_dir_all(old.join("pid")).unwrap();
    let conf = old.join("dnsmasq.conf");
    let old_pid = old.join("pid/dnsmasq.pid");
    std::fs::write(&conf, format!("port=0\npid-file={}\n", old_pid.display())).unwrap();
    std::fs::write(old.join("hosts"), "").unwrap();
    let conf_arg = format!("--conf-file={}", conf.display());
    lab.spawn_host(&["dnsmasq", "--keep-in-foreground", &conf_arg]);
    assert!(wait_until(Duration::from_secs(5), || old_pid.exists()));
    let uri = write_node(
        lab.dir(),
        "node.xml",
        &[TestNet {
            name: "lab",
            bridge: "vqa0",
            ip: "10.91.0.1/24",
            dhcp: Some(RANGE),
        }],
    );
    let cfg = write_config(lab.dir(), &uri, "");
    lab.spawn_host(&[BIN, "--config", cfg.to_str().unwrap(), "daemon"]);
    assert!(
        wait_until(Duration::from_secs(10), || !old.exists()),
        "the leftover directory is still there"
    );
    assert!(
        wait_until(Duration::from_secs(3), || pids_with_arg(&conf_arg)
            .iter()
            .all(
                |p| std::fs::read(format!("/proc/{p}/cmdline")).map_or(true, |c| c.is_empty())
            )),
        "the leftover dnsmasq still runs"
    );
    // The sweep comes first in the first reconcile; the served network's dnsmasq follows.
    let pid_file = lab.dir().join("run/lab/pid/dnsmasq.pid");
    assert!(wait_until(Duration::from_secs(5), || live_pid(&pid_file).is_some()));
}

#[test]
fn a_network_moving_from_the_system_dnsmasq_keeps_its_guests_addresses() {
    let lab = Lab::new("private_lease_seed");
    lab.add_bridge("vqa0", "10.91.0.1/24");
    // The system dnsmasq's lease file, as it was when it served this network.
    let system_leases = lab.dir().join("system.leases");
    std::fs::write(
        &system_leases,
        "0 52:54:00:91:00:21 10.91.0.133 guest21 *\n0 52:54:00:98:00:01 10.98.0.150 other *\n",
    )
    .unwrap();
    let uri = write_node(
        lab.dir(),
        "node.xml",
        &[TestNet {
            name: "lab",
            bridge: "vqa0",
            ip: "10.91.0.1/24",
            dhcp: Some(RANGE),
        }],
    );
    let cfg = write_config(lab.dir(), &uri, "");
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        "[paths]\n",
        &format!(
            "[paths]\nsystem_lease_file = \"{}\"\n",
            system_leases.display()
        ),
        1,
    );
    std::fs::write(&cfg, text).unwrap();
    lab.spawn_host(&[BIN, "--config", cfg.to_str().unwrap(), "daemon"]);
    assert!(wait_until(Duration::from_secs(10), || live_pid(
        &lab.dir().join("run/lab/pid/dnsmasq.pid")
    )
    .is_some()));
    let lease = lab
        .add_client("vqa0", "52:54:00:91:00:21")
        .lease()
        .expect("a lease");
    assert_eq!(
        lease.ip.to_string(),
        "10.91.0.133",
        "the guest got a new address"
    );
    let own = std::fs::read_to_string(lab.dir().join("state/leases/lab.leases")).unwrap();
    assert!(
        !own.contains("10.98.0.150"),
        "another network's lease was carried: {own}"
    );
    assert!(
        std::fs::read_to_string(&system_leases)
            .unwrap()
            .contains("10.98.0.150"),
        "the system file changed"
    );
}

#[test]
fn dns_held_by_a_default_mode_server_leaves_dhcp_working() {
    let lab = Lab::new("private_dns_taken");
    lab.add_bridge("vqa0", "10.91.0.1/24");
    // A DNS-only dnsmasq in default mode, as Debian's system dnsmasq runs: 0.0.0.0:53.
    let pid = format!("--pid-file={}", lab.dir().join("other.pid").display());
    lab.spawn_host(&[
        "dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        &pid,
    ]);
    assert!(wait_until(Duration::from_secs(5), || lab.host_udp_listening(53)));
    // This network asks for DNS (no dns="no" in its metadata).
    let node = lab.dir().join("node.xml");
    std::fs::write(
        &node,
        format!(
            "<node><network><name>lab</name><bridge name='vqa0'/><dns enable='no'/>\
             <ip address='10.91.0.1' prefix='24'/><metadata><virtmasq:dhcp \
             xmlns:virtmasq=\"http://virtmasq.org/xmlns/network/1.0\">{RANGE}</virtmasq:dhcp>\
             </metadata></network></node>"
        ),
    )
    .unwrap();
    let cfg = write_config(lab.dir(), &format!("test://{}", node.display()), "");
    lab.spawn_host(&[BIN, "--config", cfg.to_str().unwrap(), "daemon"]);
    assert!(wait_until(Duration::from_secs(10), || live_pid(
        &lab.dir().join("run/lab/pid/dnsmasq.pid")
    )
    .is_some()));
    let conf = std::fs::read_to_string(lab.dir().join("run/lab/dnsmasq.conf")).unwrap();
    assert!(conf.contains("\nport=0\n"), "{conf}");
    assert!(lab
        .add_client("vqa0", "52:54:00:91:00:31")
        .lease()
        .is_some());
}

/// A bridge that appears after its dnsmasq started (libvirt reports the network before the
/// daemon sees the link) is served by that dnsmasq: it binds no device it cannot find, so
/// restarting it would only cut service for nothing.
#[test]
fn a_bridge_first_seen_after_its_dnsmasq_started_is_served_without_a_restart() {
    let lab = Lab::new("private_bridge_late");
    let (pid_file, _agent) = start_agent(&lab, RANGE);
    let first = live_pid(&pid_file).unwrap();
    lab.add_bridge("vqa0", "10.91.0.1/24");
    let client = lab.add_client("vqa0", "52:54:00:91:00:06");
    assert!(
        client.lease().is_some(),
        "no lease on the bridge that appeared"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        live_pid(&pid_file),
        Some(first),
        "its dnsmasq was restarted"
    );
}

/// A server that already answers DNS on the bridge's own address (a system dnsmasq with
/// `bind-interfaces` that does not exclude the bridge): the private instance could never bind
/// its DNS socket there, so it serves DHCP only instead of failing over and over.
#[test]
fn dns_held_on_the_bridge_address_leaves_dhcp_served() {
    let lab = Lab::new("private_dns_held");
    lab.add_bridge("vqa0", "10.91.0.1/24");
    let other = lab.spawn_dns_server("10.91.0.1", &[]);
    assert!(
        wait_until(Duration::from_secs(5), || lab.host_udp_listening(53)),
        "the other DNS server did not start\n{}",
        lab.process_log(other)
    );
    let dhcp = RANGE.to_string();
    let uri = write_node(
        lab.dir(),
        "node.xml",
        &[TestNet {
            name: "lab",
            bridge: "vqa0",
            ip: "10.91.0.1/24",
            dhcp: Some(&dhcp),
        }],
    );
    // DNS on for this network (the node's metadata says dns="no" by default).
    let node = lab.dir().join("node.xml");
    let xml = std::fs::read_to_string(&node).unwrap();
    std::fs::write(&node, xml.replace(r#"dns="no""#, r#"dns="yes""#)).unwrap();
    let cfg = write_config(lab.dir(), &uri, "");
    let agent = lab.spawn_host(&[BIN, "--config", cfg.to_str().unwrap(), "daemon"]);
    let pid_file = lab.dir().join("run/lab/pid/dnsmasq.pid");
    assert!(
        wait_until(Duration::from_secs(10), || live_pid(&pid_file).is_some()),
        "no dnsmasq for 'lab'\n{}",
        lab.process_log(agent)
    );
    let first = live_pid(&pid_file).unwrap();
    let conf = std::fs::read_to_string(lab.dir().join("run/lab/dnsmasq.conf")).unwrap();
    assert!(conf.lines().any(|l| l == "port=0"), "{conf}");
    let lease = lab.add_client("vqa0", "52:54:00:91:00:21").lease();
    assert!(lease.is_some(), "{}", lab.process_log(agent));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        live_pid(&pid_file),
        Some(first),
        "the instance was restarted"
    );
}

/// A private instance serves one network, so private mode waits for no burst: with a window
/// of a minute, a network's stop and its start again right after are each applied at once
/// (a system-mode debounce would hold the second for the whole minute).
#[test]
fn private_mode_applies_every_trigger_at_once_whatever_the_window() {
    let lab = Lab::new("private_no_debounce");
    lab.add_bridge("vqa0", "10.91.0.1/24");
    let net = || TestNet {
        name: "lab",
        bridge: "vqa0",
        ip: "10.91.0.1/24",
        dhcp: Some(RANGE),
    };
    let uri = write_node(lab.dir(), "node.xml", &[net()]);
    // A window of a minute, and no libvirt poll to stand in for the triggers.
    let cfg_path = write_config(lab.dir(), &uri, "[system]\ndebounce_ms = 60000\n");
    let text = std::fs::read_to_string(&cfg_path).unwrap();
    let text = text.replace("poll_interval_secs = 1\n", "poll_interval_secs = 3600\n");
    std::fs::write(&cfg_path, text).unwrap();
    let agent = lab.spawn_host(&[BIN, "--config", cfg_path.to_str().unwrap(), "daemon"]);
    let pid_file = lab.dir().join("run/lab/pid/dnsmasq.pid");
    assert!(
        wait_until(Duration::from_secs(10), || live_pid(&pid_file).is_some()),
        "not served at start:\n{}",
        lab.process_log(agent)
    );
    let poke = || signal(agent, nix::sys::signal::Signal::SIGUSR1);
    // Stopped, then started again, each told as the hook tells a daemon without a bus.
    write_node(lab.dir(), "node.xml", &[]);
    poke();
    assert!(
        wait_until(Duration::from_secs(10), || live_pid(&pid_file).is_none()),
        "the stop waited:\n{}",
        lab.process_log(agent)
    );
    write_node(lab.dir(), "node.xml", &[net()]);
    poke();
    assert!(
        wait_until(Duration::from_secs(10), || live_pid(&pid_file).is_some()),
        "the start right after the stop waited:\n{}",
        lab.process_log(agent)
    );
    let client = lab.add_client("vqa0", "52:54:00:91:00:07");
    assert!(client.lease().is_some(), "no lease after the start again");
}
