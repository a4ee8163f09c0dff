//! Private mode's directories against another account of dnsmasq's (shared, on Debian) primary
//! group: root writes only where root alone can write, dnsmasq only in a directory of its own,
//! and what an earlier, group-writable layout may hold is never followed. The agent runs with
//! the packaged unit's capabilities only.

mod lab;
mod support;

use std::os::unix::fs::{chown, symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use lab::Lab;
use support::*;

const RANGE: &str = r#"<virtmasq:range start="10.88.0.100" end="10.88.0.150"/>"#;

/// The account private instances run as here (the configuration's default, or `nobody`).
fn dnsmasq_account() -> (u32, u32) {
    let user = nix::unistd::User::from_name("dnsmasq")
        .unwrap()
        .or_else(|| nix::unistd::User::from_name("nobody").unwrap())
        .expect("neither dnsmasq nor nobody exists");
    (user.uid.as_raw(), user.gid.as_raw())
}

/// Mode, owner and group, of the entry itself (a symlink is not followed).
fn perms(p: &Path) -> (u32, u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.mode() & 0o7777, m.uid(), m.gid())
}

/// setpriv's `--bounding-set` for exactly the capabilities the packaged unit leaves the agent
/// (no CAP_DAC_OVERRIDE, no CAP_FOWNER): what it writes must be its own to write.
fn unit_bounding_set() -> String {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/virtmasq.service"),
    )
    .unwrap();
    let caps = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit bounds capabilities");
    let kept: Vec<String> = caps
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    format!("--bounding-set=-all,{}", kept.join(","))
}

fn node(lab: &Lab, range: &str) -> String {
    write_node(
        lab.dir(),
        "node.xml",
        &[TestNet {
            name: "lab",
            bridge: "vqd0",
            ip: "10.88.0.1/24",
            dhcp: Some(range),
        }],
    )
}

#[test]
fn an_old_group_writable_layout_is_taken_back_and_nothing_planted_is_followed() {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root");
    let (uid, gid) = dnsmasq_account();
    let lab = Lab::new("private_dirs");
    lab.add_bridge("vqd0", "10.88.0.1/24");
    // The layout of earlier versions: root and dnsmasq's group, 0775; and a symlink that
    // another account of that group planted as the lease file.
    let run = lab.dir().join("run/lab");
    let leases = lab.dir().join("state/leases");
    for d in [&run, &leases] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o775)).unwrap();
        chown(d, Some(0), Some(gid)).unwrap();
    }
    let victim_dir = lab.dir().join("victim-dir");
    std::fs::create_dir(&victim_dir).unwrap();
    symlink(&victim_dir, leases.join("lab.leases")).unwrap();

    let cfg = write_config(lab.dir(), &node(&lab, RANGE), "");
    let bounding = unit_bounding_set();
    let agent = lab.spawn_host(&[
        "setpriv",
        &bounding,
        BIN,
        "--config",
        cfg.to_str().unwrap(),
        "daemon",
    ]);
    let pid_file = run.join("pid/dnsmasq.pid");
    assert!(
        wait_until(Duration::from_secs(10), || live_pid(&pid_file).is_some()),
        "no dnsmasq for 'lab': {}",
        lab.process_log(agent)
    );
    let first = live_pid(&pid_file).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{agent}/status")).unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap();
    let eff = u64::from_str_radix(eff.trim(), 16).unwrap();
    assert_eq!(
        eff & 0b1010,
        0,
        "the agent kept CAP_DAC_OVERRIDE or CAP_FOWNER"
    );

    assert_eq!(
        perms(&victim_dir).1,
        0,
        "the planted link's target was chowned"
    );
    assert!(std::fs::symlink_metadata(leases.join("lab.leases"))
        .unwrap()
        .is_file());
    assert_eq!(perms(&leases.join("lab.leases")).1, uid);
    assert_eq!(perms(&run), (0o755, 0, 0), "run/lab");
    assert_eq!(perms(&leases), (0o755, 0, 0), "state/leases");
    assert_eq!(perms(&run.join("pid")), (0o770, uid, 0), "run/lab/pid");
    assert_eq!(perms(&pid_file).1, uid, "dnsmasq writes its own pid file");

    // The reported attack: a link at the test file's old, predictable name, then a change.
    let victim = lab.dir().join("victim.conf");
    symlink(&victim, run.join(format!(".virtmasq-test.{agent}.conf"))).unwrap();
    node(
        &lab,
        r#"<virtmasq:range start="10.88.0.160" end="10.88.0.170"/>"#,
    );
    signal(agent, nix::sys::signal::SIGUSR1);
    assert!(
        wait_until(Duration::from_secs(10), || live_pid(&pid_file)
            .is_some_and(|p| p != first)),
        "the range change did not restart dnsmasq"
    );
    assert!(!victim.exists(), "root wrote through the planted link");
    let lease = lab
        .add_client("vqd0", "52:54:00:88:00:01")
        .lease()
        .expect("a lease after the change");
    assert!(lease.ip.octets()[3] >= 160, "{lease:?}");
}
