//! The daemon run in this test's process (`agent::daemon::run`, with its root, procfs, bus and
//! shutdown given to it), in the lab's host network namespace, against a real dnsmasq and a
//! real DHCP client: it serves a network, keeps libvirt's lease status file of the bridge
//! current, follows a change of the network's range, and stops its dnsmasq when told to shut
//! down.

mod lab;
mod support;

use std::os::fd::AsRawFd;
use std::time::Duration;

use lab::Lab;
use support::{live_pid, wait_until, write_config, write_node, TestNet};
use virtmasq::agent::daemon::{self, DaemonOptions};
use virtmasq::host::Host;

const NET: &str = "vqip0";

/// The test node with network `lab`, its DHCP range as given and DNS on.
fn node(lab: &Lab, range: &str) -> String {
    let uri = write_node(
        lab.dir(),
        "node.xml",
        &[TestNet {
            name: "lab",
            bridge: NET,
            ip: "10.93.0.1/24",
            dhcp: Some(range),
        }],
    );
    let path = lab.dir().join("node.xml");
    let xml = std::fs::read_to_string(&path).unwrap();
    assert!(xml.contains(r#"dns="no""#), "{xml}");
    std::fs::write(&path, xml.replace(r#"dns="no""#, r#"dns="yes""#)).unwrap();
    uri
}

/// A procfs in which process 4242 (`named`) holds udp/53 on 0.0.0.0.
fn fake_procfs(lab: &Lab) -> std::path::PathBuf {
    let proc = lab.dir().join("proc");
    std::fs::create_dir_all(proc.join("net")).unwrap();
    std::fs::create_dir_all(proc.join("4242/fd")).unwrap();
    std::fs::write(
        proc.join("net/udp"),
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n \
         0: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0 0\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("socket:[4242]", proc.join("4242/fd/3")).unwrap();
    std::fs::write(proc.join("4242/comm"), "named\n").unwrap();
    proc
}

#[test]
fn the_daemon_runs_in_process_serves_follows_and_stops() {
    let lab = Lab::new("daemon_in_process");
    lab.add_bridge(NET, "10.93.0.1/24");
    let uri = node(
        &lab,
        r#"<virtmasq:range start="10.93.0.100" end="10.93.0.110"/>"#,
    );
    // The libvirt poll (1 s) notices changes: no signal to this process is needed.
    let cfg = write_config(lab.dir(), &uri, "");
    let root = lab.dir().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let opts = DaemonOptions {
        config_path: cfg,
        config_explicit: true,
        libvirt_uri: None,
        host: Host {
            root,
            sysfs: "/sys".into(),
            procfs: fake_procfs(&lab),
        },
        // Nothing answers there: the daemon runs without its D-Bus API, as it does without a
        // system bus.
        bus_address: Some(format!("unix:path={}/no-bus", lab.dir().display())),
    };
    std::fs::create_dir(lab.dir().join("libvirt-dnsmasq")).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let ns = format!("/run/netns/{}", lab.host_ns());
    let daemon = std::thread::spawn(move || {
        let f = std::fs::File::open(&ns).unwrap();
        // SAFETY: setns changes the network namespace of this thread only; the daemon and the
        // dnsmasq it starts run here, in the lab's namespace, and the thread ends with it.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(daemon::run(opts, async {
            let _ = stopped.await;
        }))
    });

    let pid_file = lab.dir().join("run/lab/pid/dnsmasq.pid");
    assert!(
        wait_until(Duration::from_secs(10), || live_pid(&pid_file).is_some()),
        "the in-process daemon started no dnsmasq"
    );
    let first = live_pid(&pid_file).unwrap();
    // The procfs it was given says another server holds udp/53 on every address: the instance
    // serves DHCP only. (Nothing holds it in the lab's namespace, so the real /proc would not.)
    let conf = std::fs::read_to_string(lab.dir().join("run/lab/dnsmasq.conf")).unwrap();
    assert!(conf.lines().any(|l| l == "port=0"), "{conf}");
    let ip = lab
        .add_client(NET, "52:54:00:93:00:01")
        .lease()
        .map(|l| l.ip);
    let last = ip.expect("a lease").octets()[3];
    assert!((100..=110).contains(&last), "{ip:?}");
    // libvirt's view of the lease (virsh net-dhcp-leases reads this file), within a second or
    // two of dnsmasq writing its lease file.
    let status = lab
        .dir()
        .join("libvirt-dnsmasq")
        .join(format!("{NET}.status"));
    let ip = ip.unwrap().to_string();
    let listed = || {
        std::fs::read_to_string(&status)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|v| {
                v.as_array().is_some_and(|a| {
                    a.iter().any(|l| {
                        l["ip-address"] == ip.as_str()
                            && l["mac-address"] == "52:54:00:93:00:01"
                            && l["expiry-time"].as_u64().is_some()
                    })
                })
            })
    };

    assert!(
        wait_until(Duration::from_secs(5), listed),
        "the lease is not in libvirt's status file: {:?}",
        std::fs::read_to_string(&status)
    );

    node(
        &lab,
        r#"<virtmasq:range start="10.93.0.200" end="10.93.0.210"/>"#,
    );
    assert!(
        wait_until(Duration::from_secs(10), || live_pid(&pid_file)
            .is_some_and(|p| p != first)),
        "the range change did not restart its dnsmasq"
    );
    let ip = lab
        .add_client(NET, "52:54:00:93:00:02")
        .lease()
        .map(|l| l.ip);
    let last = ip.expect("a lease from the new range").octets()[3];
    assert!((200..=210).contains(&last), "{ip:?}");

    let conf = lab.dir().join("run/lab/dnsmasq.conf");
    stop.send(()).unwrap();
    daemon
        .join()
        .unwrap()
        .expect("the daemon ran and stopped cleanly");
    assert!(support::pids_with_arg(conf.to_str().unwrap()).is_empty());
    assert!(!lab.dir().join("run/virtmasq.pid").exists());
}
