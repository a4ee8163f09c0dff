//! A stopped network in system mode, with the daemon, in a booted Debian with Debian's dnsmasq
//! unit: its fragment goes without a restart of the system dnsmasq (its lines are scoped to a
//! bridge that is gone), the other networks and the site are served throughout, and a bridge
//! of the same name created again by someone else gets the system dnsmasq restarted at once,
//! so the old lines never answer on it.

mod container;
mod lab;
mod system_host;

use std::time::Duration;

use container::Container;
use lab::ProbeOptions;
use system_host::*;

const NETS: &[Net] = &[
    ("lab", "vqsys0", 97, 100, 150),
    ("lab2", "vqsys1", 96, 100, 150),
];

/// The daemon inside, in system mode, reconciling only when told (SIGUSR1) or when a link
/// it follows changes: its own poll is an hour.
fn start_daemon(ct: &Container) {
    ct.write_file(
        "/etc/virtmasq/virtmasq.toml",
        "mode = \"system\"\n[libvirt]\nuri = \"test:///etc/virtmasq/node.xml\"\n\
         poll_interval_secs = 3600\n",
        0o644,
    );
    ct.exec_ok(&[
        "systemd-run",
        "--unit=virtmasq-d",
        "/usr/local/bin/virtmasq",
        "daemon",
    ]);
}

fn reconcile(ct: &Container) {
    ct.exec_ok(&[
        "systemctl",
        "kill",
        "--kill-whom=main",
        "-s",
        "USR1",
        "virtmasq-d",
    ]);
}

#[test]
fn a_stopped_network_lingers_without_a_restart_until_its_bridge_returns() {
    let lab = lab(
        "system_linger",
        &[("vqsys0", "10.97.0.1/24"), ("vqsys1", "10.96.0.1/24")],
    );
    let ct = boot(&lab, NETS, vec![]);
    start_daemon(&ct);
    let frag2 = ct.host_path("/etc/dnsmasq.d/virtmasq-lab2.conf");
    let hosts2 = ct.host_path("/var/lib/virtmasq/system/lab2.hosts");
    let record = ct.host_path("/var/lib/virtmasq/system.lingering");
    let served = || {
        let c = lab.add_client("vqsys1", "52:54:00:96:00:05");
        within(c.lease().map(|l| l.ip), 96, 100, 150)
    };
    assert!(
        lab::Lab::wait_for(|| frag2.exists(), Duration::from_secs(20)) && served(),
        "lab2 not served:\n{}",
        ct.journal("virtmasq-d")
    );
    let pid = main_pid(&ct);

    // lab2 stops: libvirt deletes its bridge, and the daemon hears of it.
    lab.del_link("vqsys1");
    set_nets(&ct, &NETS[..1]);
    reconcile(&ct);
    assert!(
        lab::Lab::wait_for(|| !frag2.exists(), Duration::from_secs(10)),
        "lab2's fragment stayed:\n{}",
        ct.journal("virtmasq-d")
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        main_pid(&ct),
        pid,
        "the stop restarted the system dnsmasq:\n{}",
        ct.journal("virtmasq-d")
    );
    let lingering = std::fs::read_to_string(&record).unwrap_or_default();
    assert!(lingering.contains("vqsys1"), "record: {lingering:?}");
    assert!(hosts2.exists(), "the hosts file dnsmasq still names went");
    // The other network and the site are served by the same process.
    let c = lab.add_client("vqsys0", "52:54:00:97:00:05");
    assert!(within(c.lease().map(|l| l.ip), 97, 100, 150));
    let c = lab.add_client(SITE, "52:54:00:98:00:05");
    assert!(within(c.lease().map(|l| l.ip), 98, 100, 150));
    assert_eq!(main_pid(&ct), pid);

    // A bridge of that name again, not virtmasq's: the link event alone restarts dnsmasq.
    lab.add_bridge("vqsys1", "10.96.0.1/24");
    assert!(
        lab::Lab::wait_for(|| main_pid(&ct) != pid, Duration::from_secs(10)),
        "no restart for the re-created bridge:\n{}",
        ct.journal("virtmasq-d")
    );
    assert!(
        lab::Lab::wait_for(|| !record.exists(), Duration::from_secs(5)),
        "the record outlived the restart"
    );
    assert!(!hosts2.exists(), "lab2's hosts file outlived the restart");
    assert_eq!(active(&ct), "active");
    let c = lab.add_client("vqsys1", "52:54:00:96:00:06");
    let offer = c.probe(&ProbeOptions::default());
    assert!(
        offer.is_none(),
        "the old lines answered on the new bridge: {offer:?}"
    );
    ct.exec(&["systemctl", "stop", "virtmasq-d"]);
}
