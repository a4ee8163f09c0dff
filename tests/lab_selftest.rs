//! Self-tests of the network lab (tests/lab) against a real dnsmasq.
//!
//! These need root and dnsmasq, busybox and python3-scapy installed; they fail
//! (never skip) when the lab cannot be built.

mod lab;

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lab::{Lab, ProbeOptions};

const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// Starts dnsmasq serving DHCP on `bridge` (range `start`..`end`, 1 h leases)
/// with files in the lab directory, and waits until it listens on port 67.
fn start_dnsmasq(lab: &Lab, bridge: &str, start: Ipv4Addr, end: Ipv4Addr, extra: &[&str]) -> u32 {
    let dir = lab.dir();
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let mut args = vec![
        DNSMASQ.to_string(),
        "--keep-in-foreground".into(),
        "--no-ping".into(),
        "--conf-file=/dev/null".into(),
        "--no-resolv".into(),
        "--port=0".into(),
        "--bind-dynamic".into(),
        format!("--interface={bridge}"),
        "--except-interface=lo".into(),
        format!("--dhcp-range={start},{end},255.255.255.0,1h"),
        format!("--dhcp-leasefile={}", path("leases")),
        format!("--pid-file={}", path("pid")),
        format!("--log-facility={}", path("log")),
        "--log-dhcp".into(),
        "--dhcp-boot=pxelinux.0".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let pid = lab.spawn_host(&args);
    let up = Lab::wait_for(
        || lab.host_udp_listening(67) || lab.process_status(pid).is_some(),
        Duration::from_secs(10),
    );
    assert!(
        up && lab.process_status(pid).is_none(),
        "dnsmasq did not start (status {:?}): {}\nlog: {}",
        lab.process_status(pid),
        lab.process_log(pid),
        std::fs::read_to_string(dir.join("log")).unwrap_or_default()
    );
    pid
}

fn in_range(ip: Ipv4Addr, start: Ipv4Addr, end: Ipv4Addr) -> bool {
    (u32::from(start)..=u32::from(end)).contains(&u32::from(ip))
}

fn dnsmasq_log(lab: &Lab) -> String {
    std::fs::read_to_string(lab.dir().join("log")).unwrap_or_default()
}

#[test]
fn probe_and_lease_from_dnsmasq() {
    let lab = Lab::new("probe_and_lease_from_dnsmasq");
    let gateway = Ipv4Addr::new(10, 77, 1, 1);
    let (start, end) = (Ipv4Addr::new(10, 77, 1, 100), Ipv4Addr::new(10, 77, 1, 150));
    lab.add_bridge("vqbr1", "10.77.1.1/24");
    start_dnsmasq(&lab, "vqbr1", start, end, &[]);
    let client = lab.add_client("vqbr1", "52:54:00:77:01:01");

    let t = Instant::now();
    let offer = client.probe(&ProbeOptions::default());
    let probe_time = t.elapsed();
    let offer = offer.unwrap_or_else(|| panic!("no offer; dnsmasq log:\n{}", dnsmasq_log(&lab)));
    eprintln!("probe with offer took {probe_time:?}: {offer:?}");
    assert!(
        in_range(offer.yiaddr, start, end),
        "yiaddr {}",
        offer.yiaddr
    );
    assert_eq!(offer.file.as_deref(), Some("pxelinux.0"));
    assert_eq!(offer.server_id, Some(gateway));
    assert_eq!(offer.options.get(&53).map(Vec::as_slice), Some(&[2u8][..]));
    assert_eq!(offer.lease_secs(), Some(3600));
    assert!(
        offer.router().is_none_or(|r| r == gateway),
        "router {:?}",
        offer.router()
    );

    // Every PXE/iPXE option reaches dnsmasq; requesting 67 moves the file there.
    let pxe = ProbeOptions {
        vendor_class: Some("PXEClient:Arch:00007:UNDI:003001".into()),
        client_arch: Some(7),
        client_ndi: true,
        uuid: Some([0x11; 16]),
        user_class: Some("iPXE".into()),
        ipxe_175: true,
        request_list: Some(vec![1, 3, 43, 54, 60, 66, 67]),
        ..ProbeOptions::default()
    };
    let offer = client
        .probe(&pxe)
        .expect("dnsmasq must answer a PXE DISCOVER");
    assert_eq!(
        offer.file, None,
        "file field used although 67 was requested"
    );
    assert_eq!(offer.boot_file().as_deref(), Some("pxelinux.0"));
    let log = dnsmasq_log(&lab);
    for seen in [
        "vendor class: PXEClient:Arch:00007:UNDI:003001",
        "user class: iPXE",
    ] {
        assert!(log.contains(seen), "dnsmasq did not log {seen:?}:\n{log}");
    }

    let t = Instant::now();
    let lease = client.lease();
    let lease_time = t.elapsed();
    let lease = lease.unwrap_or_else(|| panic!("no lease; dnsmasq log:\n{}", dnsmasq_log(&lab)));
    eprintln!("lease took {lease_time:?}: {lease:?}");
    assert!(in_range(lease.ip, start, end), "leased {}", lease.ip);
    assert_eq!(lease.server_id, Some(gateway));
    assert_eq!(lease.boot_file.as_deref(), Some("pxelinux.0"));
    assert_eq!(lease.lease_secs, Some(3600));
    assert!(
        lease.router.is_none_or(|r| r == gateway),
        "router {:?}",
        lease.router
    );
    let leases = std::fs::read_to_string(lab.dir().join("leases")).unwrap_or_default();
    assert!(
        leases.contains("52:54:00:77:01:01"),
        "leases file: {leases}"
    );
}

#[test]
fn ignored_host_gets_no_offer() {
    let lab = Lab::new("ignored_host_gets_no_offer");
    let (start, end) = (Ipv4Addr::new(10, 77, 2, 100), Ipv4Addr::new(10, 77, 2, 150));
    lab.add_bridge("vqbr2", "10.77.2.1/24");
    let ignored_mac = "52:54:00:77:02:0a";
    start_dnsmasq(
        &lab,
        "vqbr2",
        start,
        end,
        &[&format!("--dhcp-host={ignored_mac},ignore")],
    );
    let ignored = lab.add_client("vqbr2", ignored_mac);
    let served = lab.add_client("vqbr2", "52:54:00:77:02:0b");

    let timeout = Duration::from_secs(2);
    let opts = ProbeOptions {
        timeout,
        ..ProbeOptions::default()
    };
    let t = Instant::now();
    let offer = ignored.probe(&opts);
    let no_offer_time = t.elapsed();
    eprintln!("probe without offer ({timeout:?} timeout) took {no_offer_time:?}");
    assert!(offer.is_none(), "ignored host got {offer:?}");
    assert!(no_offer_time >= timeout, "gave up early: {no_offer_time:?}");
    assert!(
        no_offer_time < timeout + Duration::from_secs(5),
        "{no_offer_time:?}"
    );
    assert!(
        dnsmasq_log(&lab).contains("ignored"),
        "log:\n{}",
        dnsmasq_log(&lab)
    );

    let offer = served
        .probe(&opts)
        .unwrap_or_else(|| panic!("no offer; dnsmasq log:\n{}", dnsmasq_log(&lab)));
    assert!(
        in_range(offer.yiaddr, start, end),
        "yiaddr {}",
        offer.yiaddr
    );
    assert!(ignored.lease().is_none(), "ignored host got a lease");
}

/// True if `ns` appears in `ip netns list`.
fn netns_listed(ns: &str) -> bool {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("`ip netns list` must run");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().next() == Some(ns))
}

/// True if `pid` is gone or a zombie (dead, awaiting its parent).
fn process_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

#[test]
fn drop_removes_namespaces_and_processes() {
    let lab = Lab::new("drop_removes_namespaces");
    lab.add_bridge("vqbr3", "10.77.3.1/24");
    let client = lab.add_client("vqbr3", "52:54:00:77:03:01");
    let owned = lab.spawn_host(&["sleep", "300"]);
    // Not owned by the lab: must still die with the namespace.
    let mut stray = client
        .command("sleep")
        .arg("300")
        .spawn()
        .expect("sleep must start in the client namespace");
    let names = [lab.host_ns().to_string(), client.ns().to_string()];
    assert!(
        names.iter().all(|n| netns_listed(n)),
        "{names:?} not created"
    );
    drop(lab);
    for name in &names {
        assert!(!netns_listed(name), "{name} survived the lab");
    }
    assert!(process_dead(owned), "owned process {owned} survived");
    assert!(
        process_dead(stray.id()),
        "stray process {} survived",
        stray.id()
    );
    let status = stray
        .wait()
        .expect("the killed stray process must be reaped");
    assert!(!status.success(), "stray process exited normally: {status}");
}

#[test]
fn drop_after_panic_removes_namespaces() {
    let names = std::sync::Mutex::new(Vec::new());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lab = Lab::new("drop_after_panic");
        lab.add_bridge("vqbr4", "10.77.4.1/24");
        let client = lab.add_client("vqbr4", "52:54:00:77:04:01");
        let mut names = names.lock().expect("names lock is not poisoned yet");
        names.push(lab.host_ns().to_string());
        names.push(client.ns().to_string());
        drop(names);
        panic!("deliberate panic inside a lab");
    }));
    assert!(result.is_err(), "the closure must have panicked");
    let names = names.into_inner().unwrap_or_else(|p| p.into_inner());
    assert_eq!(names.len(), 2, "lab was not built: {names:?}");
    for name in &names {
        assert!(!netns_listed(name), "{name} survived the panic");
    }
}

#[test]
fn sweep_removes_namespaces_of_dead_runs() {
    // A pid that certainly existed and has exited: a reaped child.
    let mut child = Command::new("true").spawn().expect("`true` must run");
    child.wait().expect("`true` must be reaped");
    let stale = format!("{}{}-0000-0", lab::NS_PREFIX, child.id());
    let status = Command::new("ip")
        .args(["netns", "add", &stale])
        .status()
        .expect("`ip netns add` must run");
    assert!(status.success(), "cannot create {stale}");
    // Our own namespaces are never swept while we run.
    let lab = Lab::new("sweep_removes_namespaces");
    lab::sweep_stale();
    assert!(!netns_listed(&stale), "{stale} was not swept");
    assert!(netns_listed(lab.host_ns()), "sweep removed a live lab");
    assert!(Path::new("/run/netns").is_dir());
}

#[test]
fn owned_processes_run_in_the_host_namespace() {
    let lab = Lab::new("owned_processes");
    lab.add_bridge("vqbr5", "10.77.5.1/24");
    let pid = lab.spawn_host(&["ip", "-o", "addr", "show", "dev", "vqbr5"]);
    let exited = Lab::wait_for(|| lab.process_status(pid).is_some(), Duration::from_secs(5));
    assert!(exited, "`ip addr show` did not finish");
    assert!(
        lab.process_log(pid).contains("10.77.5.1/24"),
        "{}",
        lab.process_log(pid)
    );
    assert!(
        !lab.signal_process(pid, "TERM"),
        "signalled an exited process"
    );

    let sleeper = lab.spawn_host(&["sleep", "300"]);
    assert!(
        lab.process_status(sleeper).is_none(),
        "sleep exited at once"
    );
    let status = lab
        .stop_process(sleeper, Duration::from_secs(2))
        .expect("sleep must stop on SIGTERM");
    assert!(!status.success(), "sleep was not terminated: {status}");
    assert!(
        !lab.host_udp_listening(67),
        "nothing listens on port 67 here"
    );
}
