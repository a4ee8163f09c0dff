//! System mode end to end, in a booted Debian 12 with a real systemd and Debian's dnsmasq
//! service: detection, fragments, restart over D-Bus, the site's own DHCP left alone, and
//! nothing lost when the check or the restart fails.

mod container;
mod lab;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Output;

use container::{write_into, BootOptions, Container};
use lab::Lab;

const BIN: &str = env!("CARGO_BIN_EXE_virtmasq");
const BRIDGE: &str = "vqsys0";
const SITE: &str = "vqsite0";
const STATIC_MAC: &str = "52:54:00:97:00:0a";

fn node_xml(range: (&str, &str), hosts: &str) -> String {
    format!(
        "<node><network><name>lab</name><forward mode='nat'/><bridge name='{BRIDGE}'/>\
         <dns enable='no'/>\
         <ip address='10.97.0.1' prefix='24'/><metadata>\
         <virtmasq:dhcp xmlns:virtmasq=\"http://virtmasq.org/xmlns/network/1.0\">\
         <virtmasq:range start=\"{}\" end=\"{}\" lease=\"1h\"/>{hosts}\
         <virtmasq:domain name=\"lab.example\"/></virtmasq:dhcp></metadata></network></node>",
        range.0, range.1
    )
}

fn static_host(mac: &str, ip: &str) -> String {
    format!("<virtmasq:host mac=\"{mac}\" ip=\"{ip}\"/>")
}

/// A container with the agent at /usr/local/bin/virtmasq, its configuration at the default
/// path, a libvirt test-driver node with network 'lab', and `site` as the administrator's
/// own dnsmasq fragment.
fn boot<'l>(lab: &'l Lab, mode: &'static str, site: &'static str) -> Container<'l> {
    let opts = BootOptions {
        binds_ro: vec![(PathBuf::from(BIN), "/usr/local/bin/virtmasq".into())],
        setup: Some(Box::new(move |root: &Path| {
            write_into(root, "/etc/dnsmasq.d/site.conf", site, 0o644);
            let cfg =
                format!("mode = \"{mode}\"\n[libvirt]\nuri = \"test:///etc/virtmasq/node.xml\"\n");
            write_into(root, "/etc/virtmasq/virtmasq.toml", &cfg, 0o644);
            let node = node_xml(
                ("10.97.0.100", "10.97.0.150"),
                &static_host(STATIC_MAC, "10.97.0.10"),
            );
            write_into(root, "/etc/virtmasq/node.xml", &node, 0o644);
        })),
    };
    Container::boot(lab, &opts)
}

fn lab(name: &str) -> Lab {
    let lab = Lab::new(name);
    lab.add_bridge(BRIDGE, "10.97.0.1/24");
    lab.add_bridge(SITE, "10.98.0.1/24");
    lab
}

const SITE_CONF: &str = "# the site's own LAN\nno-ping\ndhcp-range=10.98.0.100,10.98.0.150,1h\n";

fn agent(ct: &Container, args: &[&str]) -> Output {
    let mut all = vec!["virtmasq"];
    all.extend_from_slice(args);
    ct.exec(&all)
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn main_pid(ct: &Container) -> String {
    ct.exec_ok(&["systemctl", "show", "-P", "MainPID", "dnsmasq"])
        .trim()
        .to_owned()
}

fn lease(lab: &Lab, bridge: &str, mac: &str) -> Option<Ipv4Addr> {
    lab.add_client(bridge, mac).lease().map(|l| l.ip)
}

fn within(ip: Option<Ipv4Addr>, net: [u8; 3], lo: u8, hi: u8) -> bool {
    ip.is_some_and(|ip| ip.octets()[..3] == net && (lo..=hi).contains(&ip.octets()[3]))
}

/// Every file under the given container directories, with its bytes.
fn snapshot(ct: &Container, dirs: &[&str]) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for d in dirs {
        let root = ct.host_path(d);
        for entry in walk(&root) {
            out.insert(entry.clone(), std::fs::read(&entry).unwrap_or_default());
        }
    }
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn system_mode_serves_the_bridge_and_leaves_the_site_alone() {
    let lab = lab("system_mode_serves");
    let ct = boot(&lab, "auto", SITE_CONF);
    assert!(within(
        lease(&lab, SITE, "52:54:00:98:00:01"),
        [10, 98, 0],
        100,
        150
    ));

    let detect = agent(&ct, &["detect", "--json"]);
    assert!(detect.status.success(), "{}", text(&detect));
    let json: serde_json::Value = serde_json::from_slice(&detect.stdout).unwrap();
    assert_eq!(json["decision"]["mode"], "system", "{json:#}");
    assert_eq!(json["config"]["flavor"], "debian", "{json:#}");
    assert_eq!(json["systemd"]["unit_file_state"], "enabled");

    let sync = agent(&ct, &["sync"]);
    assert!(sync.status.success(), "{}", text(&sync));
    assert!(
        text(&sync).contains("restarted dnsmasq.service"),
        "{}",
        text(&sync)
    );
    let fragment =
        std::fs::read_to_string(ct.host_path("/etc/dnsmasq.d/virtmasq-lab.conf")).unwrap();
    assert!(
        fragment.contains("dhcp-range=tag:vqsys0,10.97.0.100,10.97.0.150"),
        "{fragment}"
    );
    assert!(
        !fragment.contains("interface="),
        "Debian's default restricts nothing: {fragment}"
    );

    assert!(within(
        lease(&lab, BRIDGE, "52:54:00:97:00:01"),
        [10, 97, 0],
        100,
        150
    ));
    assert_eq!(
        lease(&lab, BRIDGE, STATIC_MAC),
        Some(Ipv4Addr::new(10, 97, 0, 10))
    );
    // The site's own range is still served, and only on its own bridge.
    assert!(within(
        lease(&lab, SITE, "52:54:00:98:00:02"),
        [10, 98, 0],
        100,
        150
    ));

    // Nothing changed: no restart.
    let pid = main_pid(&ct);
    let again = agent(&ct, &["sync"]);
    assert!(
        text(&again).contains("nothing to change"),
        "{}",
        text(&again)
    );
    assert_eq!(main_pid(&ct), pid);

    // Only a host changed: SIGHUP, same process, and the new host gets its address.
    let hosts =
        static_host(STATIC_MAC, "10.97.0.10") + &static_host("52:54:00:97:00:0b", "10.97.0.11");
    ct.write_file(
        "/etc/virtmasq/node.xml",
        &node_xml(("10.97.0.100", "10.97.0.150"), &hosts),
        0o644,
    );
    let hup = agent(&ct, &["sync"]);
    assert!(text(&hup).contains("SIGHUP"), "{}", text(&hup));
    assert_eq!(main_pid(&ct), pid, "a host change must not restart dnsmasq");
    assert_eq!(
        lease(&lab, BRIDGE, "52:54:00:97:00:0b"),
        Some(Ipv4Addr::new(10, 97, 0, 11))
    );
}

#[test]
fn a_change_that_fails_validation_changes_nothing() {
    let lab = lab("system_mode_invalid");
    let ct = boot(&lab, "auto", SITE_CONF);
    let first = agent(&ct, &["sync"]);
    assert!(first.status.success(), "{}", text(&first));
    // The administrator breaks their own file; our next change must not make it worse.
    ct.write_file(
        "/etc/dnsmasq.d/zz-typo.conf",
        "dhcp-rnage=10.98.0.2,10.98.0.9\n",
        0o644,
    );
    ct.write_file(
        "/etc/virtmasq/node.xml",
        &node_xml(
            ("10.97.0.120", "10.97.0.160"),
            &static_host(STATIC_MAC, "10.97.0.10"),
        ),
        0o644,
    );
    let before = snapshot(&ct, &["/etc/dnsmasq.d", "/var/lib/virtmasq/system"]);
    let pid = main_pid(&ct);

    let out = agent(&ct, &["sync"]);
    assert_eq!(out.status.code(), Some(65), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("dhcp-rnage") || err.contains("bad option"),
        "dnsmasq's message: {err}"
    );

    assert_eq!(
        snapshot(&ct, &["/etc/dnsmasq.d", "/var/lib/virtmasq/system"]),
        before
    );
    assert_eq!(main_pid(&ct), pid, "the running dnsmasq was touched");
    assert!(within(
        lease(&lab, BRIDGE, "52:54:00:97:00:02"),
        [10, 97, 0],
        100,
        150
    ));
    assert!(within(
        lease(&lab, SITE, "52:54:00:98:00:03"),
        [10, 98, 0],
        100,
        150
    ));
}

#[test]
fn a_failed_restart_is_rolled_back() {
    let lab = lab("system_mode_rollback");
    // No site range: the system dnsmasq does DNS only and holds no DHCP socket...
    let ct = boot(&lab, "system", "no-ping\n");
    // ...while another DHCP server in default mode holds udp/67 on every address, so the
    // first dhcp-range virtmasq adds makes the system dnsmasq fail to start.
    let conf = lab.dir().join("foreign.conf");
    std::fs::write(&conf, "port=0\ndhcp-range=10.99.0.10,10.99.0.20,1h\n").unwrap();
    let foreign = format!("--conf-file={}", conf.display());
    let pid = format!("--pid-file={}", lab.dir().join("foreign.pid").display());
    let leases = format!(
        "--dhcp-leasefile={}",
        lab.dir().join("foreign.leases").display()
    );
    lab.spawn_host(&["dnsmasq", "--keep-in-foreground", &foreign, &pid, &leases]);
    assert!(lab::Lab::wait_for(
        || lab.host_udp_listening(67),
        std::time::Duration::from_secs(5)
    ));
    let before = snapshot(&ct, &["/etc/dnsmasq.d", "/var/lib/virtmasq/system"]);

    let out = agent(&ct, &["sync"]);
    assert_eq!(out.status.code(), Some(69), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("previous configuration was restored"), "{err}");
    assert!(
        err.contains("runs on it again"),
        "the rollback restart failed: {err}"
    );

    let after = snapshot(&ct, &["/etc/dnsmasq.d", "/var/lib/virtmasq/system"]);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    for (path, bytes) in &before {
        assert_eq!(&after[path], bytes, "{} changed", path.display());
    }
    assert_eq!(
        ct.exec_ok(&["systemctl", "is-active", "dnsmasq"]).trim(),
        "active"
    );
}

#[test]
fn moving_to_private_mode_retires_the_fragments() {
    let lab = lab("system_mode_to_private");
    let ct = boot(&lab, "auto", SITE_CONF);
    let first = agent(&ct, &["sync"]);
    assert!(first.status.success(), "{}", text(&first));
    let fragment = ct.host_path("/etc/dnsmasq.d/virtmasq-lab.conf");
    assert!(fragment.exists());
    // The administrator switches virtmasq to private mode.
    ct.write_file(
        "/etc/virtmasq/virtmasq.toml",
        "mode = \"private\"\n[libvirt]\nuri = \"test:///etc/virtmasq/node.xml\"\n[dnsmasq]\nno_ping = true\n",
        0o644,
    );
    ct.exec_ok(&[
        "systemd-run",
        "--unit=virtmasq-private",
        "/usr/local/bin/virtmasq",
        "daemon",
    ]);
    assert!(
        lab::Lab::wait_for(|| !fragment.exists(), std::time::Duration::from_secs(10)),
        "the system-mode fragment is still there:\n{}",
        ct.journal("virtmasq-private")
    );
    // The system dnsmasq is restarted without it and still serves its own site...
    let active = || {
        let o = ct.exec(&["systemctl", "is-active", "dnsmasq"]);
        String::from_utf8_lossy(&o.stdout).trim() == "active"
    };
    assert!(lab::Lab::wait_for(
        active,
        std::time::Duration::from_secs(10)
    ));
    assert!(within(
        lease(&lab, SITE, "52:54:00:98:00:09"),
        [10, 98, 0],
        100,
        150
    ));
    // The site's default-mode DHCP holds udp/67 on every address: a private instance cannot
    // bind DHCP beside it, and the daemon says so instead of failing silently.
    let journal = ct.journal("virtmasq-private");
    assert!(journal.contains("default-mode-dhcp"), "{journal}");
    ct.exec(&["systemctl", "stop", "virtmasq-private"]);
}

#[test]
fn the_hook_alone_serves_and_removes_a_network_in_system_mode() {
    let lab = lab("system_mode_hook");
    let ct = boot(&lab, "auto", SITE_CONF);
    // What libvirt passes on stdin: the network's own XML, read from the node file here.
    let node = std::fs::read_to_string(ct.host_path("/etc/virtmasq/node.xml")).unwrap();
    let network = &node[node.find("<network>").unwrap()..node.find("</node>").unwrap()];
    ct.write_file(
        "/etc/virtmasq/hook.xml",
        &format!("<hookData>{network}</hookData>"),
        0o644,
    );
    let hook = |op: &str| {
        let cmd = format!("virtmasq hook network lab {op} begin - < /etc/virtmasq/hook.xml");
        let out = ct.exec(&["sh", "-c", &cmd]);
        assert!(out.status.success(), "{}", text(&out));
        text(&out)
    };
    let fragment = ct.host_path("/etc/dnsmasq.d/virtmasq-lab.conf");
    let started = hook("started");
    assert!(fragment.exists(), "no fragment after `started`: {started}");
    assert!(within(
        lease(&lab, BRIDGE, "52:54:00:97:00:41"),
        [10, 97, 0],
        100,
        150
    ));
    let stopped = hook("stopped");
    assert!(
        !fragment.exists(),
        "the fragment survived `stopped`: {stopped}"
    );
    assert!(!ct.host_path("/var/lib/virtmasq/system/lab.hosts").exists());
    // The site was served throughout.
    assert!(within(
        lease(&lab, SITE, "52:54:00:98:00:41"),
        [10, 98, 0],
        100,
        150
    ));
}
