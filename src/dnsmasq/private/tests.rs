use super::*;

fn r(conf: &str, hosts: &str) -> PrivateRender {
    PrivateRender {
        conf: conf.into(),
        hosts: hosts.into(),
    }
}

fn n(s: &str) -> NetworkName {
    s.parse().unwrap()
}

#[test]
fn plan_starts_restarts_reloads_and_stops() {
    let running = BTreeMap::from([
        (n("same"), r("c", "h")),
        (n("hosts"), r("c", "h1")),
        (n("conf"), r("c1", "h")),
        (n("gone"), r("c", "h")),
    ]);
    let desired = BTreeMap::from([
        (n("same"), r("c", "h")),
        (n("hosts"), r("c", "h2")),
        (n("conf"), r("c2", "h2")),
        (n("new"), r("c", "h")),
    ]);
    let actions = plan(&running, &desired);
    assert_eq!(
        actions,
        vec![
            Action::Stop(n("gone")),
            Action::Restart(n("conf")),
            Action::Reload(n("hosts")),
            Action::Start(n("new")),
        ]
    );
}

#[test]
fn plan_of_equal_states_is_empty() {
    let state = BTreeMap::from([(n("a"), r("c", "h"))]);
    assert!(plan(&state, &state).is_empty());
}

/// A lease directory as an older layout left it, group-writable: what another account of
/// dnsmasq's group could plant there must not make root chown or block.
fn planted(what: impl FnOnce(&std::path::Path)) -> (tempfile::TempDir, InstancePaths, RunAs) {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root");
    let dir = tempfile::tempdir().unwrap();
    let paths = InstancePaths::new(&dir.path().join("run"), &dir.path().join("state"), "lab");
    for d in [paths.conf.parent().unwrap(), paths.leases.parent().unwrap()] {
        std::fs::create_dir_all(d).unwrap();
    }
    what(&paths.leases);
    (dir, paths, RunAs::lookup("nobody").unwrap())
}

fn owner(p: &std::path::Path) -> u32 {
    std::os::unix::fs::MetadataExt::uid(&std::fs::symlink_metadata(p).unwrap())
}

#[test]
fn a_symlinked_lease_file_does_not_get_its_target_chowned() {
    let (dir, paths, nobody) = planted(|_| {});
    let victim = dir.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::os::unix::fs::symlink(&victim, &paths.leases).unwrap();
    prepare_writable(&n("lab"), &paths, nobody).unwrap();
    assert_eq!(owner(&victim), 0, "root chowned a symlink's target");
    assert!(std::fs::symlink_metadata(&paths.leases).unwrap().is_file());
    assert_eq!(owner(&paths.leases), nobody.uid);
}

#[test]
fn a_fifo_as_lease_file_is_replaced_without_blocking() {
    let (dir, paths, nobody) = planted(|p| {
        nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap()
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(prepare_writable(&n("lab"), &paths, nobody).map_err(|e| e.1));
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("blocked on a FIFO")
        .unwrap();
    let leases = InstancePaths::new(&dir.path().join("run"), &dir.path().join("state"), "lab");
    assert!(std::fs::symlink_metadata(&leases.leases).unwrap().is_file());
}

#[test]
fn a_lease_file_of_ours_is_kept_and_handed_to_dnsmasq_s_account() {
    let (_dir, paths, nobody) =
        planted(|p| std::fs::write(p, "0 52:54:00:00:00:01 10.0.0.2 * *\n").unwrap());
    prepare_writable(&n("lab"), &paths, nobody).unwrap();
    assert!(std::fs::read_to_string(&paths.leases)
        .unwrap()
        .contains("10.0.0.2"));
    assert_eq!(owner(&paths.leases), nobody.uid);
    let own = std::fs::metadata(&paths.own_dir).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (own.mode() & 0o7777, own.uid(), own.gid()),
        (0o770, nobody.uid, 0)
    );
}

fn network() -> crate::model::ManagedNetwork {
    use crate::model::{DhcpIntent, DhcpRange, Ipv4Range};
    let range = Ipv4Range::new("10.51.0.10".parse().unwrap(), "10.51.0.20".parse().unwrap());
    let intent = DhcpIntent {
        ranges6: Vec::new(),
        hosts6: Vec::new(),
        ranges: vec![DhcpRange {
            range: range.unwrap(),
            lease: None,
        }],
        hosts: vec![],
        domain: None,
        dns: false,
        pxe: None,
    };
    let subnets = vec!["10.51.0.1/24".parse().unwrap()];
    crate::model::ManagedNetwork::new(n("slow"), "vqslow0".parse().unwrap(), subnets, intent)
        .unwrap()
}

/// The daemon's loop is one thread: a `dnsmasq --test` that takes long (a stand-in binary,
/// since the real check cannot be made slow on purpose) must not stop it from ticking.
#[test]
fn a_slow_check_does_not_stall_the_event_loop() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("slow-dnsmasq");
    std::fs::write(&bin, "#!/bin/sh\nsleep 1.5\nexit 0\n").unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run_as = process::RunAs::lookup("nobody").unwrap();
    let mut sup = Supervisor::new(
        bin,
        dir.path().join("run"),
        dir.path().join("state"),
        run_as,
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let begun = std::time::Instant::now();
        let ticker = async {
            let mut ticks = 0;
            while begun.elapsed() < Duration::from_millis(1200) {
                tokio::time::sleep(Duration::from_millis(50)).await;
                ticks += 1;
            }
            ticks
        };
        let nets = [network()];
        let keep = std::collections::HashSet::new();
        let (_, ticks) = tokio::join!(
            sup.reconcile(&nets, |_| RenderOptions::default(), &keep),
            ticker
        );
        assert!(
            begun.elapsed() >= Duration::from_millis(1500),
            "no slow check ran"
        );
        assert!(ticks >= 12, "the loop ticked {ticks} times in 1.2 s");
        sup.shutdown().await;
    });
}
