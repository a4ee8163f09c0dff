//! `virsh net-start` to the first DHCP offer with the package installed (the hook shim and the
//! daemon), against a network libvirt serves itself, in one booted Debian 12 with its real
//! libvirtd 9.0 and Debian's dnsmasq service: the same host at the same moment, `no-ping`
//! everywhere (the system dnsmasq's file, libvirt's network through `<dnsmasq:options>`,
//! `[dnsmasq] no_ping` for private instances).
//!
//! The system dnsmasq lives beside libvirt's own instances the usual way (`bind-interfaces`,
//! `except-interface=vqf*`). Three networks, each `<forward mode='open'/>` without DNS:
//! libvirt's own (`vqf0`, a `<dhcp>` range), and one of virtmasq's (`vqs0`, a
//! `<virtmasq:dhcp>` range) in system mode, then in private mode (the daemon restarted on
//! `mode = "private"`). libvirt's network is started in both halves, each time beside
//! virtmasq's, and its median is over both.
//!
//! A guest namespace per network sends a DISCOVER every 5 ms from the moment `virsh net-start`
//! is spawned; its port waits on a parking bridge and is moved onto the network's bridge as
//! soon as libvirt creates it (a thread polls for the bridge in the lab's namespace), the same
//! for all three networks.
//!
//! Also: a script's loop of 20 `virsh net-start` of NAT networks (about 300 ms apart) in
//! system mode, then 20 `virsh net-destroy`, and the restarts of the system dnsmasq each cost.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::{median, Row, Scale};
use crate::container::{write_into, BootOptions, Container, Variant};
use crate::lab::{Lab, Prober};
use crate::support::BIN;

const DEB_INSIDE: &str = "/root/virtmasq.deb";
/// The system dnsmasq beside libvirt's own instances, serving the site's LAN.
const COEXIST: &str = "bind-interfaces\nexcept-interface=vqf*\nno-ping\n\
    dhcp-range=10.98.0.100,10.98.0.150,1h\n";
const SITE: (&str, &str) = ("vqsite0", "10.98.0.1/24");
/// Where the guests' ports wait while their network is down.
const PARK: (&str, &str) = ("vqpark0", "10.99.0.1/24");
const LIBVIRT_NET: Net = Net {
    name: "vql",
    bridge: "vqf0",
    octet: 121,
    mac: "52:54:00:79:00:01",
};
const VIRTMASQ_NET: Net = Net {
    name: "vqv",
    bridge: "vqs0",
    octet: 122,
    mac: "52:54:00:7a:00:01",
};
/// Networks of the script's loop: vqn0..vqn19 (name and bridge) on 10.130-149.0.0/24.
const LOOP: usize = 20;
const PER_TRY: Duration = Duration::from_millis(5);
const LIMIT: Duration = Duration::from_secs(15);
/// Quiet time after a network stops, so that what the stop causes is over before the next
/// start (the daemon's debounce is 500 ms), and so that a round (a start and a stop of each
/// network, a restart of the system dnsmasq each in system mode) keeps the agent's restarts
/// under the unit's start limit (5 in 10 s, one kept for a rollback): a start that has to wait
/// for room is what a burst costs, measured by the loop below, not a single start.
const SETTLE: Duration = Duration::from_millis(2600);
/// The pause after each `virsh` of the loop: with it a start comes about every 300 ms, as it
/// does where `virsh net-start` itself takes that long (firewall rules on a busy host).
const LOOP_PAUSE: &str = "0.25";

/// One measured network.
#[derive(Clone, Copy)]
struct Net {
    name: &'static str,
    bridge: &'static str,
    octet: u8,
    mac: &'static str,
}

impl Net {
    /// Its definition: libvirt's own `<dhcp>` (with `no-ping`), or virtmasq's metadata.
    fn xml(&self, libvirt_serves: bool) -> String {
        network_xml(self.name, self.bridge, self.octet, libvirt_serves)
    }
}

/// A network on 10.`o`.0.0/24, `<forward mode='open'/>`, no DNS, its range served by libvirt
/// (`<dhcp>`, with `no-ping`) or by virtmasq (`<virtmasq:dhcp>` metadata).
fn network_xml(name: &str, bridge: &str, o: u8, libvirt_serves: bool) -> String {
    let range = format!("start='10.{o}.0.100' end='10.{o}.0.150'");
    let (dhcp, extra) = if libvirt_serves {
        (
            format!("<dhcp><range {range}/></dhcp>"),
            "<dnsmasq:options xmlns:dnsmasq='http://libvirt.org/schemas/network/dnsmasq/1.0'>\
             <dnsmasq:option value='no-ping'/></dnsmasq:options>"
                .to_owned(),
        )
    } else {
        (
            String::new(),
            format!(
                "<metadata><virtmasq:dhcp xmlns:virtmasq='http://virtmasq.org/xmlns/network/1.0'>\
                 <virtmasq:range {range}/></virtmasq:dhcp></metadata>"
            ),
        )
    };
    format!(
        "<network><name>{name}</name><forward mode='open'/>\
         <bridge name='{bridge}' stp='off' delay='0'/><dns enable='no'/>\
         <ip address='10.{o}.0.1' prefix='24'>{dhcp}</ip>{extra}</network>"
    )
}

/// A guest of one network: its namespace's prober and its port on the host side.
struct Guest {
    prober: Prober,
    port: String,
    mac: &'static str,
}

/// The .deb of the binaries this bench was built with (release for `--bench`).
fn build_deb() -> PathBuf {
    let manifest = env!("CARGO_MANIFEST_DIR");
    let profile = if BIN.contains("/target/release/") {
        "release"
    } else {
        "dev"
    };
    let out = Path::new(manifest)
        .join("target/bench-peers-deb")
        .join(std::process::id().to_string());
    let run = Command::new(Path::new(manifest).join("packaging/build-deb.sh"))
        .env("PROFILE", profile)
        .env("NO_BUILD", "1")
        .env("DEB_OUT", &out)
        .output()
        .expect("run packaging/build-deb.sh");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "build-deb.sh failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let deb = Path::new(manifest).join(stdout.lines().last().unwrap_or_default().trim());
    assert!(deb.is_file(), "no .deb at {}", deb.display());
    deb
}

/// The ports enslaved to the parking bridge now.
fn parked_ports(lab: &Lab) -> Vec<String> {
    let out = lab.host_run(&["ip", "-o", "link", "show", "master", PARK.0]);
    out.lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or_default().to_owned())
        .collect()
}

fn guest(lab: &Lab, mac: &'static str) -> Guest {
    let before = parked_ports(lab);
    let client = lab.add_client(PARK.0, mac);
    let port = parked_ports(lab)
        .into_iter()
        .find(|p| !before.contains(p))
        .expect("the new guest's port on the parking bridge");
    Guest {
        prober: Prober::start(client.ns()),
        port,
        mac,
    }
}

/// Waits (in `ns`, at most `LIMIT`) for `bridge` to exist, then moves `port` onto it.
fn attach_when_up(ns: &str, bridge: &str, port: &str) {
    let netns = std::fs::File::open(format!("/run/netns/{ns}")).expect("the lab's namespace");
    // This thread only: it polls the interface index in the lab's namespace.
    let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&netns), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
    let name = std::ffi::CString::new(bridge).unwrap();
    let start = Instant::now();
    while unsafe { libc::if_nametoindex(name.as_ptr()) } == 0 {
        assert!(start.elapsed() < LIMIT, "bridge {bridge} never appeared");
        std::thread::sleep(Duration::from_micros(200));
    }
    let out = Command::new("ip")
        .args(["-n", ns, "link", "set", port, "master", bridge])
        .output()
        .expect("ip link set master");
    assert!(
        out.status.success(),
        "moving {port} onto {bridge}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// virsh against the container's libvirtd, from the host (no nsenter on the measured path).
fn virsh(ct: &Container, args: &[&str]) -> Output {
    // /run is the container's own tmpfs: reach it through its pid 1's root.
    let sock = format!("/proc/{}/root/run/libvirt/libvirt-sock", ct.leader_pid());
    let uri = format!("qemu:///system?socket={sock}");
    let out = Command::new("timeout")
        .args(["60", "virsh", "-q", "-c", &uri])
        .args(args)
        .output()
        .expect("run virsh");
    assert!(
        out.status.success(),
        "virsh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `virsh net-start` of `net` to the first offer its guest sees; then the network is
/// destroyed and the guest's port parked again.
fn start_to_offer(lab: &Lab, ct: &Container, net: &Net, guest: &mut Guest) -> Duration {
    let ns = lab.host_ns().to_owned();
    let took = std::thread::scope(|s| {
        let start = Instant::now();
        let (bridge, port) = (net.bridge, guest.port.clone());
        let attach = s.spawn(move || attach_when_up(&ns, bridge, &port));
        let mac = guest.mac;
        let prober = &mut guest.prober;
        let probe = s.spawn(move || {
            let offer = prober.until_offer(mac, PER_TRY, LIMIT);
            (offer, start.elapsed())
        });
        virsh(ct, &["net-start", net.name]);
        attach.join().expect("the attaching thread");
        let (offer, took) = probe.join().expect("the probing thread");
        assert!(
            offer.is_some(),
            "no offer on {} within {LIMIT:?}:\n{}",
            net.name,
            ct.journal("virtmasq")
        );
        took
    });
    virsh(ct, &["net-destroy", net.name]);
    lab.host_run(&["ip", "link", "set", &guest.port, "master", PARK.0]);
    std::thread::sleep(SETTLE);
    took
}

/// Sets `mode` in the package's configuration (with `no_ping`) and restarts the daemon.
fn set_mode(ct: &Container, mode: &str) {
    let path = "/etc/virtmasq/virtmasq.toml";
    let text = std::fs::read_to_string(ct.host_path(path)).unwrap();
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        lines.push(match line.split('=').next().map(str::trim) {
            Some("mode") => format!("mode = \"{mode}\""),
            Some("no_ping") => "no_ping = true".into(),
            _ => line.to_owned(),
        });
    }
    ct.write_file(path, &(lines.join("\n") + "\n"), 0o644);
    ct.exec_ok(&["systemctl", "restart", "virtmasq"]);
    let ready = Lab::wait_for(
        || ct.exec(&["virtmasq", "status"]).status.success(),
        Duration::from_secs(20),
    );
    assert!(
        ready,
        "virtmasq did not come back:\n{}",
        ct.journal("virtmasq")
    );
    std::thread::sleep(SETTLE);
}

fn boot<'l>(lab: &'l Lab, deb: PathBuf) -> Container<'l> {
    let opts = BootOptions {
        binds_ro: vec![(deb, DEB_INSIDE.into())],
        setup: Some(Box::new(|root: &Path| {
            write_into(root, "/etc/dnsmasq.d/coexist.conf", COEXIST, 0o644);
        })),
    };
    let ct = Container::boot_variant(lab, &opts, Variant::Libvirt);
    ct.exec_ok(&["systemctl", "restart", "dnsmasq"]);
    ct.exec_ok(&["dpkg", "-i", DEB_INSIDE]);
    // libvirtd reads its hook directory when it starts.
    ct.exec_ok(&["systemctl", "restart", "libvirtd"]);
    for (net, own) in [(LIBVIRT_NET, true), (VIRTMASQ_NET, false)] {
        let file = format!("/root/{}.xml", net.name);
        ct.write_file(&file, &net.xml(own), 0o644);
        ct.exec_ok(&["virsh", "-q", "net-define", &file]);
    }
    ct
}

/// The rows: medians of libvirt's own network, virtmasq in system and private mode, ratios;
/// then the restarts of the 20-start loop.
pub fn rows(scale: Scale) -> Vec<Row> {
    let deb = build_deb();
    let lab = Lab::new("peers_net_start");
    lab.add_bridge(SITE.0, SITE.1);
    lab.add_bridge(PARK.0, PARK.1);
    let mut own_guest = guest(&lab, LIBVIRT_NET.mac);
    let mut our_guest = guest(&lab, VIRTMASQ_NET.mac);
    let ct = boot(&lab, deb);
    let mut own = Vec::new();
    let mut ours = [Vec::new(), Vec::new()];
    for (i, mode) in ["system", "private"].into_iter().enumerate() {
        set_mode(&ct, mode);
        for _ in 0..scale.rounds {
            own.push(start_to_offer(&lab, &ct, &LIBVIRT_NET, &mut own_guest));
            ours[i].push(start_to_offer(&lab, &ct, &VIRTMASQ_NET, &mut our_guest));
        }
        println!(
            "net-start -> first offer, {mode} mode: virtmasq {:?}, libvirt's own {:?}",
            ours[i],
            &own[own.len() - scale.rounds..]
        );
    }
    let own = median(own);
    let [system, private] = ours.map(median);
    let peer = || Some(("libvirt's own network".to_owned(), own.into()));
    let mut rows = vec![
        Row {
            what: "virsh net-start -> first offer, system mode".into(),
            ours: system.into(),
            peer: peer(),
            target: "<= libvirt's own",
        },
        Row {
            what: "virsh net-start -> first offer, private mode".into(),
            ours: private.into(),
            peer: peer(),
            target: "<= libvirt's own",
        },
    ];
    set_mode(&ct, "system");
    rows.extend(loop_restarts(&ct));
    rows
}

/// Restarts of the system dnsmasq so far, and refusals by its start limit.
fn restarts(ct: &Container) -> (u64, u64) {
    let log = ct.journal("dnsmasq");
    let started = log.lines().filter(|l| l.starts_with("started, version"));
    let refused = log
        .lines()
        .filter(|l| l.contains("Start request repeated too quickly"));
    (started.count() as u64, refused.count() as u64)
}

/// Runs `virsh <verb>` for the loop's networks in one shell loop inside, as a script would
/// (paced to about 300 ms a network); its wall time.
fn script(ct: &Container, verb: &str) -> Duration {
    let cmd = format!(
        "for n in $(seq 0 {}); do virsh -q {verb} vqn$n; sleep {LOOP_PAUSE}; done",
        LOOP - 1
    );
    let start = Instant::now();
    let out = ct
        .exec_bounded(&["sh", "-ec", &cmd], Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("the {verb} loop: {e}"));
    assert!(
        out.status.success(),
        "the {verb} loop: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    start.elapsed()
}

/// The fragments of the loop's networks in the conf-dir.
fn loop_fragments(ct: &Container) -> usize {
    (0..LOOP)
        .filter(|i| {
            ct.host_path(&format!("/etc/dnsmasq.d/virtmasq-vqn{i}.conf"))
                .exists()
        })
        .count()
}

/// 20 networks started by a script's loop in system mode, then stopped by another: the
/// restarts of the system dnsmasq each loop cost, counted once the daemon is quiet.
fn loop_restarts(ct: &Container) -> Vec<Row> {
    for i in 0..LOOP {
        let name = format!("vqn{i}");
        let xml = network_xml(&name, &name, 130 + i as u8, false)
            .replace("<forward mode='open'/>", "<forward mode='nat'/>");
        let file = format!("/root/vqn{i}.xml");
        ct.write_file(&file, &xml, 0o644);
        ct.exec_ok(&["virsh", "-q", "net-define", &file]);
    }
    let quiet = Duration::from_secs(6);
    let before = restarts(ct);
    let starts = script(ct, "net-start");
    let served = Lab::wait_for(|| loop_fragments(ct) == LOOP, Duration::from_secs(30));
    assert!(
        served,
        "not every network got its fragment:\n{}",
        ct.journal("virtmasq")
    );
    std::thread::sleep(quiet);
    let started = restarts(ct);
    let stops = script(ct, "net-destroy");
    std::thread::sleep(quiet);
    let stopped = restarts(ct);
    let apart = |d: Duration| d / LOOP as u32;
    println!(
        "a script's {LOOP} net-starts took {starts:.0?} ({:.0?} apart), its {LOOP} net-destroys \
         {stops:.0?} ({:.0?} apart)",
        apart(starts),
        apart(stops)
    );
    let row = |what: String, n: u64, target| Row {
        what,
        ours: super::Value::Count(n),
        peer: Some(("libvirt's own networks".into(), super::Value::Count(0))),
        target,
    };
    vec![
        row(
            format!(
                "{LOOP} starts {:.0?} apart: system dnsmasq restarts",
                apart(starts)
            ),
            started.0 - before.0,
            "<= 2",
        ),
        row(
            format!(
                "{LOOP} stops {:.0?} apart: system dnsmasq restarts",
                apart(stops)
            ),
            stopped.0 - started.0,
            "none",
        ),
        row(
            "start-limit refusals in both loops".into(),
            stopped.1 - before.1,
            "none",
        ),
    ]
}
