//! The Debian package end to end: built with cargo-deb from the test build's binary, checked
//! with lintian, and installed with dpkg into a booted Debian 12 with systemd, the Debian
//! dnsmasq service and a real libvirtd. Installed, the service runs and the hook is in place;
//! a libvirt network adopted by virtmasq gets DHCP from the system dnsmasq; setup and teardown
//! change nothing when run again; removal leaves the system dnsmasq serving its own interfaces
//! exactly as before; purge leaves no file of the package's.

#[path = "packaging/build.rs"]
mod build;
mod container;
#[path = "packaging/foreign.rs"]
mod foreign;
mod lab;
#[path = "packaging/rpm.rs"]
mod rpm;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use build::{assets, deb, debs};
use container::{write_into, BootOptions, Container, Variant};
use lab::Lab;

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_virtmasq");
const SITE: &str = "vqsite0";
const SITE_CONF: &str = "# the site's own LAN\nno-ping\ndhcp-range=10.98.0.100,10.98.0.150,1h\n";
const LAB_BRIDGE: &str = "vqpkg0";
const DEB_INSIDE: &str = "/root/virtmasq.deb";
const UPGRADE_INSIDE: &str = "/root/virtmasq-upgrade.deb";
const UPGRADE_VERSION: &str = "0.1.0-2";

/// A network libvirt serves itself, until `virtmasq adopt` moves it over.
const LAB_XML: &str = "<network><name>lab</name><forward mode='nat'/>\
    <bridge name='vqpkg0' stp='off'/>\
    <ip address='10.97.0.1' prefix='24'><dhcp><range start='10.97.0.100' end='10.97.0.150'/>\
    </dhcp></ip></network>";

#[test]
fn lintian_reports_no_errors() {
    let out = Command::new("lintian")
        .args(["--fail-on", "error", "--no-tag-display-limit"])
        .arg(deb())
        .output()
        .expect("lintian must be installed (scripts/install-deps.sh)");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("lintian:\n{text}");
    assert!(
        out.status.success(),
        "lintian failed ({}):\n{text}",
        out.status
    );
    assert!(!text.lines().any(|l| l.starts_with("E:")), "{text}");
}

#[test]
fn the_package_depends_on_the_libvirt_library_it_loads() {
    // The binary loads libvirt.so.0 at run time, so dpkg-shlibdeps cannot see it.
    let out = Command::new("dpkg-deb")
        .args(["-f"])
        .arg(deb())
        .arg("Depends")
        .output()
        .unwrap();
    let depends = String::from_utf8_lossy(&out.stdout);
    assert!(
        depends.split(',').any(|d| d.trim().starts_with("libvirt0")),
        "{depends}"
    );
}

fn run(ct: &Container, args: &[&str]) -> String {
    ct.exec_ok(args)
}

/// Every file under `dirs` inside the container (contents, or a link's target).
fn files(ct: &Container, dirs: &[&str]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for dir in dirs {
        let root = ct.host_path(dir);
        let mut todo = vec![root.clone()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                let meta = p.symlink_metadata().unwrap();
                let key = format!("{dir}/{}", p.strip_prefix(&root).unwrap().display());
                let value = if meta.file_type().is_symlink() {
                    format!("-> {}", std::fs::read_link(&p).unwrap().display())
                } else if meta.is_dir() {
                    todo.push(p);
                    "dir".into()
                } else {
                    String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned()
                };
                out.insert(key, value);
            }
        }
    }
    out
}

/// What setup and teardown may change: their files and the units' states.
fn state(ct: &Container) -> (BTreeMap<String, String>, String) {
    let dirs = [
        "/etc/dnsmasq.d",
        "/etc/libvirt/hooks",
        "/etc/systemd/system",
        "/etc/virtmasq",
        "/var/lib/virtmasq",
    ];
    let units = run(
        ct,
        &[
            "systemctl",
            "show",
            "-p",
            "Id,ActiveState,SubState,MainPID,UnitFileState,NRestarts,ActiveEnterTimestampMonotonic",
            "virtmasq.service",
            "dnsmasq.service",
        ],
    );
    (files(ct, &dirs), units)
}

fn lease(lab: &Lab, bridge: &str, mac: &str) -> Option<Ipv4Addr> {
    lab.add_client(bridge, mac).lease().map(|l| l.ip)
}

fn in_range(ip: Option<Ipv4Addr>, net: [u8; 3]) -> bool {
    ip.is_some_and(|ip| ip.octets()[..3] == net && (100..=150).contains(&ip.octets()[3]))
}

/// Waits (bounded) for `cond`.
fn wait(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(
            started.elapsed() < timeout,
            "{what}: not within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn boot(lab: &Lab) -> Container<'_> {
    let (deb, upgrade) = debs().clone();
    let opts = BootOptions {
        binds_ro: vec![(deb, DEB_INSIDE.into()), (upgrade, UPGRADE_INSIDE.into())],
        setup: Some(Box::new(|root: &Path| {
            write_into(root, "/etc/dnsmasq.d/site.conf", SITE_CONF, 0o644);
            write_into(root, "/root/lab.xml", LAB_XML, 0o644);
        })),
    };
    Container::boot_variant(lab, &opts, Variant::Libvirt)
}

#[test]
fn install_adopt_remove_purge() {
    let lab = Lab::new("packaging_install");
    lab.add_bridge(SITE, "10.98.0.1/24");
    let ct = boot(&lab);
    assert!(in_range(
        lease(&lab, SITE, "52:54:00:98:00:01"),
        [10, 98, 0]
    ));
    let conf_dir_before = files(&ct, &["/etc/dnsmasq.d"]);

    let install = run(&ct, &["dpkg", "-i", DEB_INSIDE]);
    eprintln!("dpkg -i:\n{install}");
    assert_eq!(
        run(&ct, &["systemctl", "is-active", "virtmasq"]).trim(),
        "active"
    );
    assert_eq!(
        run(&ct, &["systemctl", "is-enabled", "virtmasq"]).trim(),
        "enabled"
    );
    let hook = run(&ct, &["readlink", "/etc/libvirt/hooks/network.d/virtmasq"]);
    assert_eq!(hook.trim(), "/usr/libexec/virtmasq/libvirt-hook");
    // The shim runs the hook's own binary, which loads no libvirt (libvirtd waits for it).
    let libs = run(&ct, &["ldd", "/usr/libexec/virtmasq/virtmasq-hook"]);
    assert!(!libs.contains("libvirt"), "{libs}");
    let owned = run(&ct, &["dpkg", "-L", "virtmasq"]);

    adopted_network_is_served(&lab, &ct);
    upgrade_keeps_state_and_dhcp(&lab, &ct);
    setup_and_teardown_are_idempotent(&lab, &ct, &conf_dir_before);
    filter_binds_the_system_dnsmasq(&ct);
    private_mode_runs_under_the_hardened_unit(&lab, &ct);

    run(&ct, &["apt-get", "remove", "-y", "virtmasq"]);
    assert_eq!(files(&ct, &["/etc/dnsmasq.d"]), conf_dir_before);
    assert_eq!(
        run(&ct, &["systemctl", "is-active", "dnsmasq"]).trim(),
        "active"
    );
    assert!(in_range(
        lease(&lab, SITE, "52:54:00:98:00:02"),
        [10, 98, 0]
    ));
    assert!(!ct
        .host_path("/etc/libvirt/hooks/network.d/virtmasq")
        .exists());

    run(&ct, &["apt-get", "purge", "-y", "virtmasq"]);
    let mut left: Vec<String> = owned
        .lines()
        .filter(|p| ct.host_path(p).is_file() || ct.host_path(p).is_symlink())
        .map(str::to_owned)
        .collect();
    for p in [
        "/var/lib/virtmasq",
        "/run/virtmasq",
        "/etc/virtmasq",
        "/etc/libvirt/hooks/network.d",
        "/etc/systemd/system/virtmasq.service",
        "/etc/systemd/system/multi-user.target.wants/virtmasq.service",
        "/etc/systemd/system/dnsmasq.service.d",
    ] {
        if ct.host_path(p).symlink_metadata().is_ok() {
            left.push(p.to_owned());
        }
    }
    assert!(left.is_empty(), "left after purge: {left:?}");
    assert_eq!(files(&ct, &["/etc/dnsmasq.d"]), conf_dir_before);
    assert!(in_range(
        lease(&lab, SITE, "52:54:00:98:00:03"),
        [10, 98, 0]
    ));
}

/// libvirtd reads its hooks at start (setup says so): restart it, then move a network that
/// libvirt serves over to virtmasq; the hook and the daemon hand it to the system dnsmasq.
fn adopted_network_is_served(lab: &Lab, ct: &Container) {
    run(ct, &["systemctl", "restart", "libvirtd"]);
    // Defined, not started: libvirt's own dnsmasq could not start beside Debian's default
    // wildcard-bound one (the clash virtmasq exists for).
    run(ct, &["virsh", "-q", "net-define", "/root/lab.xml"]);
    let adopt = ct.exec(&["virtmasq", "adopt", "lab"]);
    assert!(
        adopt.status.success(),
        "adopt: {}\n{}",
        String::from_utf8_lossy(&adopt.stdout),
        String::from_utf8_lossy(&adopt.stderr)
    );
    run(ct, &["virsh", "-q", "net-start", "lab"]);
    // libvirtd ran the packaged hook (it logs to the journal; libvirt drops its output).
    let hook_log = || {
        let log = ct.exec(&[
            "journalctl",
            "-b",
            "-t",
            "virtmasq-hook",
            "-o",
            "cat",
            "--no-pager",
        ]);
        String::from_utf8_lossy(&log.stdout).into_owned()
    };
    let started = Instant::now();
    while !hook_log().contains("network 'lab' started") {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no journal entry of the hook for 'lab':\n{}",
            hook_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let fragment = ct.host_path("/etc/dnsmasq.d/virtmasq-lab.conf");
    wait(
        "the lab network's fragment",
        Duration::from_secs(30),
        || fragment.exists(),
    );
    let ip = lease(lab, LAB_BRIDGE, "52:54:00:97:00:01")
        .or_else(|| lease(lab, LAB_BRIDGE, "52:54:00:97:00:02"));
    assert!(
        in_range(ip, [10, 97, 0]),
        "no lease on the adopted network: {ip:?}\n{}",
        ct.journal("virtmasq")
    );
    // Served by the system dnsmasq: libvirt runs no dnsmasq of its own for it any more.
    let procs = run(ct, &["busybox", "ps", "-o", "args"]);
    assert!(
        !procs.contains("/var/lib/libvirt/dnsmasq/lab.conf"),
        "{procs}"
    );
}

fn setup_and_teardown_are_idempotent(
    lab: &Lab,
    ct: &Container,
    conf_dir_before: &BTreeMap<String, String>,
) {
    let after_install = state(ct);
    let again = run(ct, &["virtmasq", "setup"]);
    assert!(again.contains("nothing to change"), "{again}");
    assert_eq!(
        state(ct),
        after_install,
        "setup after the package's setup changed things"
    );

    let first = run(ct, &["virtmasq", "teardown"]);
    assert!(
        first.contains("removed /etc/dnsmasq.d/virtmasq-lab.conf"),
        "{first}"
    );
    let torn = state(ct);
    assert_eq!(files(ct, &["/etc/dnsmasq.d"]), *conf_dir_before);
    assert!(in_range(lease(lab, SITE, "52:54:00:98:00:04"), [10, 98, 0]));
    let second = run(ct, &["virtmasq", "teardown"]);
    assert!(second.contains("nothing to change"), "{second}");
    assert_eq!(state(ct), torn, "a second teardown changed things");

    let back = run(ct, &["virtmasq", "setup"]);
    assert!(back.contains("started virtmasq.service"), "{back}");
    let set_up = state(ct);
    let twice = run(ct, &["virtmasq", "setup"]);
    assert!(twice.contains("nothing to change"), "{twice}");
    assert_eq!(state(ct), set_up, "a second setup changed things");
}

/// With the PXE filter on in system mode, setup binds the system dnsmasq to virtmasq: it
/// stops with it and starts again with it. Turned off, setup removes the binding.
fn filter_binds_the_system_dnsmasq(ct: &Container) {
    let conf = std::fs::read_to_string(ct.host_path("/etc/virtmasq/virtmasq.toml")).unwrap();
    let on = conf.replace("[filter]\n", "[filter]\nenabled = true\n");
    let on = on.replacen("\nenabled = false\n", "\n", 1);
    ct.write_file("/etc/virtmasq/virtmasq.toml", &on, 0o644);
    let out = run(ct, &["virtmasq", "setup"]);
    assert!(out.contains("virtmasq-filter.conf"), "{out}");
    let binds = run(
        ct,
        &["systemctl", "show", "-p", "BindsTo", "dnsmasq.service"],
    );
    assert!(binds.contains("virtmasq.service"), "{binds}");
    run(ct, &["systemctl", "stop", "virtmasq"]);
    wait(
        "dnsmasq stopping with virtmasq",
        Duration::from_secs(20),
        || {
            let dnsmasq = ct.exec(&["systemctl", "is-active", "dnsmasq"]);
            String::from_utf8_lossy(&dnsmasq.stdout).trim() == "inactive"
        },
    );

    // virtmasq started again (as Restart= would after a failure) brings dnsmasq back.
    run(ct, &["systemctl", "start", "virtmasq"]);
    wait(
        "dnsmasq starting with virtmasq",
        Duration::from_secs(30),
        || {
            let dnsmasq = ct.exec(&["systemctl", "is-active", "dnsmasq"]);
            String::from_utf8_lossy(&dnsmasq.stdout).trim() == "active"
        },
    );

    // Off again: the binding goes, and the agent reloads the configuration.
    ct.write_file("/etc/virtmasq/virtmasq.toml", &conf, 0o644);
    let out = run(ct, &["virtmasq", "setup"]);
    assert!(
        out.contains("removed /etc/systemd/system/dnsmasq.service.d"),
        "{out}"
    );
    assert!(
        out.contains("removed /etc/systemd/system/virtmasq.service.d"),
        "{out}"
    );
    let binds = run(
        ct,
        &["systemctl", "show", "-p", "BindsTo", "dnsmasq.service"],
    );
    assert!(!binds.contains("virtmasq"), "{binds}");
    run(ct, &["systemctl", "restart", "virtmasq"]);
    assert_eq!(
        run(ct, &["systemctl", "is-active", "dnsmasq"]).trim(),
        "active"
    );
}

/// The unit's capability set is enough for private mode: a private dnsmasq started by the
/// hardened service serves the adopted network, after a first start and after a restart
/// (when its directories already belong to dnsmasq's account).
fn private_mode_runs_under_the_hardened_unit(lab: &Lab, ct: &Container) {
    let conf = std::fs::read_to_string(ct.host_path("/etc/virtmasq/virtmasq.toml")).unwrap();
    // no_ping: dnsmasq's ping before each first offer outlasts udhcpc's patience.
    let private = conf
        .replacen("mode = \"auto\"", "mode = \"private\"", 1)
        .replacen("no_ping = false", "no_ping = true", 1);
    assert_ne!(
        private, conf,
        "the default configuration sets mode = \"auto\""
    );
    ct.write_file("/etc/virtmasq/virtmasq.toml", &private, 0o644);
    // Debian's default dnsmasq binds the wildcard address: it cannot share the host.
    run(ct, &["systemctl", "stop", "dnsmasq"]);
    for (round, mac) in ["52:54:00:97:01:01", "52:54:00:97:01:02"]
        .iter()
        .enumerate()
    {
        run(ct, &["systemctl", "restart", "virtmasq"]);
        let ip = lease(lab, LAB_BRIDGE, mac);
        assert!(
            in_range(ip, [10, 97, 0]),
            "private mode, start {}: no lease ({ip:?})\n{}",
            round + 1,
            ct.journal("virtmasq")
        );
    }
    let procs = run(ct, &["busybox", "ps", "-o", "user,args"]);
    assert!(
        procs
            .lines()
            .any(|l| l.starts_with("dnsmasq") && l.contains("/run/virtmasq/lab")),
        "{procs}"
    );
    ct.write_file("/etc/virtmasq/virtmasq.toml", &conf, 0o644);
    run(ct, &["systemctl", "stop", "virtmasq"]);
    run(ct, &["systemctl", "start", "dnsmasq"]);
    run(ct, &["systemctl", "start", "virtmasq"]);
}

/// An upgrade restarts virtmasq once onto the new binary, keeps its state, and in system mode
/// (no filter) does not restart the system dnsmasq at all: DHCP is not interrupted.
fn upgrade_keeps_state_and_dhcp(lab: &Lab, ct: &Container) {
    let pid = |unit: &str| run(ct, &["systemctl", "show", "-P", "MainPID", unit]);
    let (agent, dnsmasq) = (pid("virtmasq"), pid("dnsmasq"));
    let state = files(
        ct,
        &["/var/lib/virtmasq", "/etc/dnsmasq.d", "/etc/libvirt/hooks"],
    );
    let out = run(ct, &["dpkg", "-i", UPGRADE_INSIDE]);
    let version = run(ct, &["dpkg-query", "-W", "-f", "${Version}", "virtmasq"]);
    assert_eq!(version, UPGRADE_VERSION, "{out}");
    assert_eq!(
        run(ct, &["systemctl", "is-active", "virtmasq"]).trim(),
        "active"
    );
    assert_ne!(
        pid("virtmasq"),
        agent,
        "the agent was not restarted onto the new binary"
    );
    assert_eq!(
        pid("dnsmasq"),
        dnsmasq,
        "the upgrade restarted the system dnsmasq"
    );
    assert_eq!(
        files(
            ct,
            &["/var/lib/virtmasq", "/etc/dnsmasq.d", "/etc/libvirt/hooks"]
        ),
        state
    );
    assert!(in_range(
        lease(lab, LAB_BRIDGE, "52:54:00:97:00:03"),
        [10, 97, 0]
    ));
}
