//! The libvirt network hook end to end, with a real libvirtd (see `libvirtd/`) running the
//! packaged shim, `virtmasq daemon` in private mode beside it, and real DHCP clients on the
//! bridges libvirt creates. The daemon's own libvirt poll is set to an hour, so what happens
//! within a test happens because the hook (or the daemon's start) made it happen.

mod lab;
mod libvirtd;
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use lab::Lab;
use libvirtd::{served_network, Hook, Libvirtd};
use support::*;

/// The agent's configuration: private mode, every path under `dir`, libvirt at `uri`.
fn agent_config(dir: &Path, uri: &str) -> PathBuf {
    let path = dir.join("virtmasq.toml");
    let text = format!(
        "mode = \"private\"\n[paths]\nstate_dir = \"{d}/state\"\nrun_dir = \"{d}/run\"\n\
         conf_dir = \"{d}/dnsmasq.d\"\n[libvirt]\nuri = \"{uri}\"\npoll_interval_secs = 3600\nlease_status_dir = \"{d}/libvirt-dnsmasq\"\n\
         [dnsmasq]\nno_ping = true\n[system]\ndebounce_ms = 200\n",
        d = dir.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// libvirtd with the hook calling the agent with `cfg`.
fn libvirtd_with_hook<'a>(lab: &'a Lab, hook_opts: &str) -> (Libvirtd<'a>, PathBuf) {
    let cfg = lab.dir().join("virtmasq.toml");
    let hook = Hook {
        opts: format!("--config {}", cfg.display()),
        hook_opts: hook_opts.into(),
    };
    let lv = Libvirtd::start(lab, Some(hook));
    assert_eq!(agent_config(lab.dir(), &lv.uri), cfg);
    (lv, cfg)
}

fn start_daemon(lab: &Lab, cfg: &Path) -> u32 {
    let pid = lab.spawn_host(&[BIN, "--config", cfg.to_str().unwrap(), "daemon"]);
    let pid_file = lab.dir().join("run/virtmasq.pid");
    let up = wait_until(Duration::from_secs(10), || {
        live_pid(&pid_file) == Some(pid as i32)
    });
    assert!(up, "the daemon did not start:\n{}", lab.process_log(pid));
    pid
}

/// The pid file of our dnsmasq for `net`.
fn ours(lab: &Lab, net: &str) -> PathBuf {
    lab.dir().join(format!("run/{net}/pid/dnsmasq.pid"))
}

fn served_within(lab: &Lab, net: &str, secs: u64) -> bool {
    wait_until(Duration::from_secs(secs), || {
        live_pid(&ours(lab, net)).is_some()
    })
}

fn unserved_within(lab: &Lab, net: &str, secs: u64) -> bool {
    let conf = lab.dir().join(format!("run/{net}/dnsmasq.conf"));
    wait_until(Duration::from_secs(secs), || {
        live_pid(&ours(lab, net)).is_none() && pids_with_arg(conf.to_str().unwrap()).is_empty()
    })
}

/// A libvirt network of the tests: name, bridge, and its /24 (the bridge is `.1`).
struct Net {
    name: &'static str,
    bridge: &'static str,
    net: [u8; 3],
}

impl Net {
    fn address(&self) -> String {
        let [a, b, c] = self.net;
        format!("{a}.{b}.{c}.1")
    }

    /// The network as libvirt serves it itself, with `dhcp` inside its `<dhcp>`.
    fn served_by_libvirt(&self, dhcp: &str, extra: &str) -> String {
        served_network(self.name, self.bridge, &self.address(), dhcp, extra)
    }

    /// A lease for `mac` from the bridge's address, in the network; returns the address.
    /// libvirt's dnsmasq pings an address before offering it (about 3 s), so the client
    /// tries for up to 8 s.
    fn lease(&self, lab: &Lab, mac: &str) -> String {
        let client = lab.add_client(self.bridge, mac);
        let lease = client.lease_with_args(&["-t", "8"]);
        let lease = lease.unwrap_or_else(|| panic!("no lease on {} for {mac}", self.bridge));
        assert_eq!(
            lease.ip.octets()[..3],
            self.net,
            "lease {} on {}",
            lease.ip,
            self.bridge
        );
        assert_eq!(lease.server_id, Some(self.address().parse().unwrap()));
        lease.ip.to_string()
    }
}

const OWN: Net = Net {
    name: "vqt-own",
    bridge: "vqbr-own",
    net: [10, 95, 0],
};
const AD: Net = Net {
    name: "vqt-ad",
    bridge: "vqbr-ad",
    net: [10, 96, 0],
};

/// Runs `virtmasq adopt|release` and returns its standard output.
fn agent_ok(cfg: &Path, verb: &str, net: &Net) -> String {
    let args = ["--config", cfg.to_str().unwrap(), verb, net.name];
    let out = run_agent(&args, Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{verb}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn an_adopted_network_is_served_from_net_start_to_net_destroy() {
    let lab = Lab::new("hook_adopted_network");
    let (lv, cfg) = libvirtd_with_hook(&lab, "");
    lv.define(&OWN.served_by_libvirt("<range start='10.95.0.100' end='10.95.0.150'/>", ""));
    let ad_dhcp = "<range start='10.96.0.100' end='10.96.0.150'/>\
                   <host mac='52:54:00:96:00:0a' ip='10.96.0.10' name='fixed'/>";
    lv.define(&AD.served_by_libvirt(ad_dhcp, "<domain name='ad.example'/>"));
    lv.virsh_ok(&["net-start", OWN.name]);
    lv.virsh_ok(&["net-start", AD.name]);
    assert!(
        !lv.dnsmasq_of(AD.name).is_empty(),
        "libvirt serves it before adopt"
    );
    let original = lv.definition(AD.name);
    let daemon = start_daemon(&lab, &cfg);
    let log = || {
        format!(
            "daemon:\n{}\nlibvirtd:\n{}",
            lab.process_log(daemon),
            lv.log()
        )
    };

    // Adopting a running network restarts it: libvirt's dnsmasq goes, the hook tells the
    // daemon, and the daemon's dnsmasq takes over.
    let text = agent_ok(&cfg, "adopt", &AD);
    assert!(
        text.contains("adopted") && text.contains("restarted"),
        "{text}"
    );
    assert!(
        served_within(&lab, AD.name, 10),
        "not served after adopt\n{}",
        log()
    );
    assert!(
        lv.dnsmasq_of(AD.name).is_empty(),
        "libvirt's dnsmasq still runs"
    );
    AD.lease(&lab, "52:54:00:96:00:01");
    assert_eq!(AD.lease(&lab, "52:54:00:96:00:0a"), "10.96.0.10");

    // net-destroy: the stopped hook, and our service for it is gone. net-start: the started
    // hook, and a client on the new bridge gets a lease from us.
    lv.virsh_ok(&["net-destroy", AD.name]);
    assert!(
        unserved_within(&lab, AD.name, 10),
        "served after net-destroy\n{}",
        log()
    );
    lv.virsh_ok(&["net-start", AD.name]);
    assert!(
        served_within(&lab, AD.name, 10),
        "not served after net-start\n{}",
        log()
    );
    assert!(lv.dnsmasq_of(AD.name).is_empty());
    AD.lease(&lab, "52:54:00:96:00:02");

    // The network libvirt serves itself kept its own dnsmasq, and virtmasq runs none for it.
    assert!(!lv.dnsmasq_of(OWN.name).is_empty());
    assert!(!lab.dir().join("run").join(OWN.name).exists());
    OWN.lease(&lab, "52:54:00:95:00:01");

    // Release: libvirt serves it again, ours stops, and the definition is the original one.
    agent_ok(&cfg, "release", &AD);
    assert!(
        unserved_within(&lab, AD.name, 10),
        "served after release\n{}",
        log()
    );
    assert!(
        !lv.dnsmasq_of(AD.name).is_empty(),
        "libvirt does not serve it again"
    );
    let diff = virtmasq::libvirt::adopt::difference(&original, &lv.definition(AD.name));
    assert_eq!(diff.unwrap(), None);
    AD.lease(&lab, "52:54:00:96:00:03");
}

/// A network virtmasq serves from its metadata, defined directly.
fn adopted_network(name: &str, bridge: &str, net: u8) -> String {
    format!(
        "<network><name>{name}</name><forward mode='open'/><bridge name='{bridge}' stp='off'/>\
         <dns enable='no'/><ip address='10.{net}.0.1' prefix='24'/><metadata>\
         <virtmasq:dhcp xmlns:virtmasq='http://virtmasq.org/xmlns/network/1.0' dns='no'>\
         <virtmasq:range start='10.{net}.0.100' end='10.{net}.0.150'/></virtmasq:dhcp>\
         </metadata></network>"
    )
}

#[test]
fn the_daemon_catches_up_at_start_and_a_veto_keeps_an_unserved_network_down() {
    let lab = Lab::new("hook_daemon_start");
    let (lv, cfg) = libvirtd_with_hook(&lab, "");
    lv.define(&adopted_network("vqt-a", "vqbr-a", 97));
    lv.define(&adopted_network("vqt-b", "vqbr-b", 98));
    // No daemon: the hook lets the network start and says nothing serves it.
    lv.virsh_ok(&["net-start", "vqt-a"]);
    assert!(!served_within(&lab, "vqt-a", 1));
    // The daemon serves, from its start, a network that started while it was down.
    let daemon = start_daemon(&lab, &cfg);
    assert!(
        served_within(&lab, "vqt-a", 10),
        "{}",
        lab.process_log(daemon)
    );
    // The daemon crashes (SIGKILL): its dnsmasq goes with it.
    assert!(lab.signal_process(daemon, "KILL"));
    assert!(unserved_within(&lab, "vqt-a", 5));
    // While it is down, vqt-a stops and vqt-b starts: it serves vqt-b and not vqt-a.
    lv.virsh_ok(&["net-destroy", "vqt-a"]);
    lv.virsh_ok(&["net-start", "vqt-b"]);
    let daemon = start_daemon(&lab, &cfg);
    assert!(
        served_within(&lab, "vqt-b", 10),
        "{}",
        lab.process_log(daemon)
    );
    assert!(
        unserved_within(&lab, "vqt-a", 1),
        "{}",
        lab.process_log(daemon)
    );

    let b = Net {
        name: "vqt-b",
        bridge: "vqbr-b",
        net: [10, 98, 0],
    };
    b.lease(&lab, "52:54:00:98:00:01");
    lab.stop_process(daemon, Duration::from_secs(5));

    // With --veto-unservable (the shim reads its options at every call), a start that
    // nothing would serve fails with the hook's reason, and the network stays down.
    let default = std::fs::read_to_string(lv.inside("/etc/default/virtmasq")).unwrap();
    let vetoing = default.replace(
        "VIRTMASQ_HOOK_OPTS=\"\"",
        "VIRTMASQ_HOOK_OPTS=\"--veto-unservable\"",
    );
    assert_ne!(default, vetoing);
    std::fs::write(lv.inside("/etc/default/virtmasq"), vetoing).unwrap();
    let out = lv.virsh(&["net-start", "vqt-a"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the start was not vetoed");
    assert!(
        err.contains("refusing to let network 'vqt-a' start"),
        "{err}"
    );
    assert!(lv
        .virsh_ok(&["net-list", "--name"])
        .split_whitespace()
        .all(|n| n != "vqt-a"));
}

/// Every file below `dir` with its contents.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    tree(dir)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(dir.join(&p)).unwrap_or_default();
            (p, bytes)
        })
        .collect()
}

/// Runs the hook with `args` and `stdin`; returns its exit code and stderr.
fn hook(cfg: &Path, args: &[&str], stdin: &str) -> (Option<i32>, String) {
    use std::io::Write;
    let mut child = Command::new("timeout")
        .args(["20", BIN, "--config", cfg.to_str().unwrap(), "hook"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The hook may exit before reading (a missing argument): a broken pipe is expected then.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// libvirt aborts a network's start when a hook fails, so input the hook cannot use is
/// reported (stderr here, the journal under libvirtd) and the hook exits 0, changing nothing.
/// Only a call that is not libvirt's network hook at all is a usage error, and only
/// `--veto-unservable` on virtmasq's own network fails a `start`.
#[test]
fn bad_hook_input_is_reported_changes_nothing_and_never_stops_libvirt() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "test:///default", "");
    for (file, text) in [
        (
            "state/leases/vq-iso.leases",
            "0 52:54:00:aa:bb:cc 10.78.0.10 node1 *\n",
        ),
        ("run/vq-iso/dnsmasq.conf", "interface=vqbr-iso\n"),
        ("dnsmasq.d/virtmasq-vq-iso.conf", "# fragment\n"),
    ] {
        let path = dir.path().join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let before = snapshot(dir.path());
    let good = include_str!("fixtures/libvirt/hook-isolated-started.xml");
    let started = ["network", "vq-iso", "started", "begin", "-"];
    let start_veto = [
        "network",
        "--veto-unservable",
        "vq-iso",
        "start",
        "begin",
        "-",
    ];
    let cases: [(&[&str], &str, i32, &str); 9] = [
        (&started, "<hookData><network>", 0, "not well-formed XML"),
        (&started, "", 0, "stdin is empty"),
        (&start_veto, "<hookData><network>", 0, "not well-formed XML"),
        (
            &["network", "vq-iso", "rebooted", "begin", "-"],
            good,
            0,
            "does not act on operation 'rebooted'",
        ),
        (
            &["network", "other", "started", "begin", "-"],
            good,
            0,
            "describes 'vq-iso'",
        ),
        (
            &["network", "a b", "started", "begin", "-"],
            "<hookData><network><name>a b</name><bridge name='x y'/></network></hookData>",
            0,
            "not virtmasq's",
        ),
        (
            &["network", "vq-iso", "started", "begin"],
            good,
            2,
            "<EXTRA>",
        ),
        (&["network"], good, 2, "<NETWORK>"),
        (
            &["qemu", "vm1", "started", "begin", "-"],
            good,
            2,
            "unrecognized subcommand 'qemu'",
        ),
    ];
    for (args, stdin, want, needle) in cases {
        let (code, stderr) = hook(&cfg, args, stdin);
        assert_eq!(code, Some(want), "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?}: {stderr}\nmissing {needle:?}"
        );
        assert_eq!(snapshot(dir.path()), before, "{args:?} changed files");
    }
    // The same network with good input is accepted (and, with no daemon, only logged).
    let (code, stderr) = hook(&cfg, &started, good);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("nothing serves"), "{stderr}");
    // Broken XML for a network the configuration names is virtmasq's: a veto stops its start.
    let named = dir.path().join("named.toml");
    let text = std::fs::read_to_string(&cfg).unwrap()
        + "[networks.vq-iso]\nranges = [{ start = \"10.78.0.100\", end = \"10.78.0.150\" }]\n";
    std::fs::write(&named, text).unwrap();
    let (code, stderr) = hook(&named, &start_veto, "<hookData><network>");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("refusing to let network 'vq-iso' start"),
        "{stderr}"
    );
    assert_eq!(snapshot(dir.path()).len(), before.len() + 1);
}
