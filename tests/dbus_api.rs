//! The daemon's D-Bus API on a private system-style bus: the running service introspects as
//! `dbus/org.virtmasq.Agent1.xml` says, the bus policy keeps unprivileged callers to reading,
//! root's calls reach the daemon; and systemd's READY=1 comes only after the first sync.

mod lab;
mod support;

use std::collections::BTreeSet;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use lab::Lab;
use support::bus::{BusExtras, PrivateBus};
use support::*;

const NAME: &str = "org.virtmasq.Agent1";
const PATH: &str = "/org/virtmasq/Agent1";

fn lab_with_network(name: &str) -> (Lab, std::path::PathBuf) {
    let lab = Lab::new(name);
    lab.add_bridge("vqd0", "10.89.0.1/24");
    let uri = write_node(
        lab.dir(),
        "node.xml",
        &[TestNet {
            name: "lab",
            bridge: "vqd0",
            ip: "10.89.0.1/24",
            dhcp: Some(r#"<virtmasq:range start="10.89.0.100" end="10.89.0.150"/>"#),
        }],
    );
    let cfg = write_config(lab.dir(), &uri, "");
    (lab, cfg)
}

/// One argument: name, type, direction.
type Arg = (String, String, String);
/// One member: kind (method, signal, property), name, arguments.
type Member = (String, String, Vec<Arg>);

/// Every member of our interface.
fn members(xml: &str) -> BTreeSet<Member> {
    let opts = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(xml, opts).expect("introspection XML");
    let iface = doc
        .descendants()
        .find(|n| n.has_tag_name("interface") && n.attribute("name") == Some(NAME))
        .expect("our interface");
    iface
        .children()
        .filter(|n| n.is_element())
        .map(|m| {
            let args = m
                .children()
                .filter(|a| a.has_tag_name("arg"))
                .map(|a| {
                    let dir = a
                        .attribute("direction")
                        .unwrap_or(if m.has_tag_name("method") {
                            "in"
                        } else {
                            "out"
                        });
                    (
                        a.attribute("name").unwrap_or("").to_owned(),
                        a.attribute("type").unwrap_or("").to_owned(),
                        dir.to_owned(),
                    )
                })
                .collect();
            let kind = m.tag_name().name().to_owned();
            let name = m.attribute("name").unwrap_or("").to_owned();
            let name = match kind.as_str() {
                "property" => format!(
                    "{name}:{}:{}",
                    m.attribute("type").unwrap_or(""),
                    m.attribute("access").unwrap_or("")
                ),
                _ => name,
            };
            (kind, name, args)
        })
        .filter(|(kind, _, _)| kind != "annotation")
        .collect()
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn start_agent(lab: &Lab, cfg: &Path, bus: &PrivateBus) -> u32 {
    let mut cmd = lab.host_command(BIN);
    cmd.args(["--config", cfg.to_str().unwrap(), "daemon"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(lab.dir().join("agent.log")).unwrap());
    let pid = lab.spawn(&mut cmd);
    assert!(
        wait_until(Duration::from_secs(10), || bus.has_owner(NAME)),
        "the daemon did not take {NAME}:\n{}",
        std::fs::read_to_string(lab.dir().join("agent.log")).unwrap_or_default()
    );
    pid
}

#[test]
fn the_running_service_matches_its_description_and_its_policy_holds() {
    let bus = PrivateBus::start();
    let (lab, cfg) = lab_with_network("dbus_api");
    start_agent(&lab, &cfg, &bus);

    let introspected = bus
        .busctl()
        .args(["introspect", "--xml-interface", NAME, PATH])
        .output()
        .unwrap();
    assert!(introspected.status.success(), "{}", out(&introspected));
    let file = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("dbus/org.virtmasq.Agent1.xml"),
    )
    .unwrap();
    assert_eq!(
        members(&String::from_utf8_lossy(&introspected.stdout)),
        members(&file),
        "the running service and dbus/org.virtmasq.Agent1.xml differ"
    );

    // Anyone may read.
    let status = bus
        .busctl_as_nobody()
        .args(["call", NAME, PATH, NAME, "Status"])
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", out(&status));
    assert!(
        out(&status).contains("\\\"mode\\\":\\\"private\\\"")
            || out(&status).contains(r#""mode":"private""#),
        "{}",
        out(&status)
    );
    // The bus name is taken before the first reconcile ends: the network is listed once it has.
    let managed = || {
        let got = bus
            .busctl_as_nobody()
            .args(["get-property", NAME, PATH, NAME, "ManagedNetworks"])
            .output()
            .unwrap();
        out(&got).trim().to_owned()
    };
    let listed = wait_until(Duration::from_secs(10), || managed() == "as 1 \"lab\"");
    assert!(listed, "ManagedNetworks: {}", managed());

    // Only root may change anything.
    for args in [
        vec!["FilterAllow", "as", "1", "52:54:00:00:00:01"],
        vec!["FilterSync", "asas", "1", "52:54:00:00:00:01", "0"],
        vec!["Reconcile"],
        vec!["ReportNetworkEvent", "ss", "lab", "started"],
    ] {
        let refused = bus
            .busctl_as_nobody()
            .args(["call", NAME, PATH, NAME])
            .args(&args)
            .output()
            .unwrap();
        assert!(!refused.status.success(), "nobody could call {args:?}");
        assert!(
            out(&refused).to_lowercase().contains("access denied"),
            "{}",
            out(&refused)
        );
    }
    let allowed = bus
        .busctl()
        .args([
            "call",
            NAME,
            PATH,
            NAME,
            "FilterAllow",
            "as",
            "1",
            "52-54-00-00-00-01",
        ])
        .output()
        .unwrap();
    assert!(allowed.status.success(), "{}", out(&allowed));
    let list = bus
        .busctl()
        .args(["call", NAME, PATH, NAME, "FilterList"])
        .output()
        .unwrap();
    assert!(
        out(&list).contains("\"52:54:00:00:00:01\""),
        "{}",
        out(&list)
    );
    let bad = bus
        .busctl()
        .args([
            "call",
            NAME,
            PATH,
            NAME,
            "FilterDeny",
            "as",
            "1",
            "zz:00:00:00:00:00",
        ])
        .output()
        .unwrap();
    assert!(
        !bad.status.success() && out(&bad).contains("zz:00:00:00:00:00"),
        "{}",
        out(&bad)
    );
    // The whole lists at once: 01 moves to the denied side, 03 is allowed.
    let sync_03_01 = || {
        let synced = bus
            .busctl()
            .args(["call", NAME, PATH, NAME, "FilterSync", "asas"])
            .args(["1", "52:54:00:00:00:03", "1", "52:54:00:00:00:01"])
            .output()
            .unwrap();
        assert!(synced.status.success(), "{}", out(&synced));
        let list = bus
            .busctl()
            .args(["call", NAME, PATH, NAME, "FilterList"])
            .output()
            .unwrap();
        assert!(
            out(&list).contains(r#"1 "52:54:00:00:00:03" 1 "52:54:00:00:00:01""#),
            "{}",
            out(&list)
        );
    };
    sync_03_01();
    // The same lists again, after another change (01 allowed): applied again, not taken for
    // the unchanged lists the daemon recognises without a parse.
    let allow_01 = bus
        .busctl()
        .args(["call", NAME, PATH, NAME, "FilterAllow", "as", "1"])
        .arg("52:54:00:00:00:01")
        .output()
        .unwrap();
    assert!(allow_01.status.success(), "{}", out(&allow_01));
    sync_03_01();
    sync_03_01();
    let both = bus
        .busctl()
        .args(["call", NAME, PATH, NAME, "FilterSync", "asas"])
        .args(["1", "52:54:00:00:00:03", "1", "52:54:00:00:00:03"])
        .output()
        .unwrap();
    assert!(
        !both.status.success() && out(&both).contains("52:54:00:00:00:03"),
        "a MAC both allowed and denied was taken: {}",
        out(&both)
    );
    let ev = bus
        .busctl()
        .args([
            "call",
            NAME,
            PATH,
            NAME,
            "ReportNetworkEvent",
            "ss",
            "lab",
            "started",
        ])
        .output()
        .unwrap();
    assert!(ev.status.success(), "{}", out(&ev));
}

#[test]
fn ready_is_sent_only_after_the_first_sync() {
    let (lab, cfg) = lab_with_network("dbus_notify");
    let sock_path = lab.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut cmd = lab.host_command(BIN);
    cmd.args(["--config", cfg.to_str().unwrap(), "daemon"])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent");
    lab.spawn(&mut cmd);
    let pid_file = lab.dir().join("run/lab/pid/dnsmasq.pid");
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    loop {
        let n = sock.recv(&mut buf).expect("no READY=1 within 15 s");
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if msg.lines().any(|l| l == "READY=1") {
            // The first reconcile has started the network's dnsmasq before READY=1.
            assert!(
                pid_file.exists(),
                "READY=1 before the network was served ({seen:?})"
            );
            break;
        }
        seen.push(msg);
        assert!(seen.len() < 20, "{seen:?}");
    }
    let n = sock.recv(&mut buf).expect("a STATUS= line after READY");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    let status_seen = seen
        .iter()
        .chain(std::iter::once(&msg))
        .any(|m| m.contains("STATUS=private mode, serving 1 network(s)"));
    assert!(status_seen, "{seen:?} {msg}");
}

#[test]
fn a_hook_invocation_reaches_the_daemon_through_the_bus() {
    let bus = PrivateBus::start();
    let (lab, cfg) = lab_with_network("dbus_hook");
    start_agent(&lab, &cfg, &bus);
    let hook_data = "<hookData><network><name>lab</name><bridge name='vqd0'/><dns enable='no'/>\
         <ip address='10.89.0.1' prefix='24'/></network></hookData>";
    let mut child = std::process::Command::new(BIN)
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "hook",
            "network",
            "lab",
            "started",
            "begin",
            "-",
        ])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(hook_data.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", self::out(&out));
    assert!(
        self::out(&out).contains("over D-Bus"),
        "{}",
        self::out(&out)
    );
    let log = lab.dir().join("agent.log");
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(&log)
            .is_ok_and(
                |l| l.contains("reconcile requested") && l.contains("started")
            )),
        "the daemon did not hear of the event:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

/// A script for an activation file's `Exec=`: it leaves `mark` when the bus runs it.
fn marking_script(dir: &Path, mark: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join(format!(
        "{}.sh",
        mark.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&script, format!("#!/bin/sh\ntouch {}\n", mark.display())).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// The activation files the packages install (sources of the assets bound for
/// `dbus-1/system-services` in Cargo.toml and the RPM spec), with `Exec=` running `script`
/// (the private bus has no systemd to hand `SystemdService=` to).
fn shipped_activation_files(script: &Path) -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifests = ["Cargo.toml", "packaging/rpm/virtmasq.spec"];
    let mut sources = BTreeSet::new();
    for m in manifests {
        let text = std::fs::read_to_string(root.join(m)).unwrap();
        for line in text
            .lines()
            .filter(|l| l.contains("dbus-1/system-services"))
        {
            let found = line
                .split(|c: char| c == '"' || c.is_whitespace())
                .find(|w| w.starts_with("dbus/"));
            sources.extend(found.map(str::to_owned));
        }
    }
    sources
        .into_iter()
        .map(|src| {
            let text = std::fs::read_to_string(root.join(&src)).unwrap();
            let text: String = text
                .lines()
                .filter(|l| !l.starts_with("SystemdService="))
                .map(|l| match l.starts_with("Exec=") {
                    true => format!("Exec={}\n", script.display()),
                    false => format!("{l}\n"),
                })
                .collect();
            (
                Path::new(&src)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into(),
                text,
            )
        })
        .collect()
}

/// Regression (issue 13, item 4): the activation file and the reads anyone may make let any
/// local user start a stopped virtmasq (which may restart the system dnsmasq).
#[test]
fn an_unprivileged_caller_cannot_start_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("virtmasq-started");
    let control = dir.path().join("control-started");
    let mut services = shipped_activation_files(&marking_script(dir.path(), &ours));
    // A service anyone may call, to show that this bus does activate.
    let control_script = marking_script(dir.path(), &control);
    services.push((
        "org.virtmasq.Test.Control.service".into(),
        format!(
            "[D-BUS Service]\nName=org.virtmasq.Test.Control\nExec={}\n",
            control_script.display()
        ),
    ));
    let policy = r#"<busconfig><policy context="default">
        <allow send_destination="org.virtmasq.Test.Control"/></policy></busconfig>"#;
    let bus = PrivateBus::start_with(BusExtras {
        services: services
            .iter()
            .map(|(n, t)| (n.as_str(), t.clone()))
            .collect(),
        policies: vec![("org.virtmasq.Test.Control.conf", policy)],
    });
    let _ = bus
        .busctl_as_nobody()
        .args([
            "call",
            "org.virtmasq.Test.Control",
            "/",
            "org.virtmasq.Test.Control",
            "X",
        ])
        .output()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || control.exists()),
        "the private bus does not activate services: this test proves nothing"
    );
    for args in [
        vec!["call", NAME, PATH, NAME, "Status"],
        vec!["call", NAME, PATH, NAME, "FilterList"],
        vec!["get-property", NAME, PATH, NAME, "Mode"],
    ] {
        let call = bus.busctl_as_nobody().args(&args).output().unwrap();
        assert!(!call.status.success(), "{args:?}: {}", out(&call));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(!ours.exists(), "an unprivileged call started virtmasq");
}

/// The daemon checks its caller's uid itself: with a bus policy that lets anyone call
/// anything, an unprivileged caller still changes nothing.
#[test]
fn the_daemon_refuses_a_non_root_caller_that_the_bus_let_through() {
    let permissive = r#"<busconfig><policy context="default">
        <allow send_destination="org.virtmasq.Agent1"/></policy></busconfig>"#;
    let bus = PrivateBus::start_with(BusExtras {
        policies: vec![("zz-permissive.conf", permissive)],
        ..BusExtras::default()
    });
    let (lab, cfg) = lab_with_network("dbus_uid_check");
    start_agent(&lab, &cfg, &bus);
    // gdbus, unlike busctl, prints the error's own message (busctl: errno's words).
    for args in [
        vec!["FilterAllow", "['52:54:00:00:00:02']"],
        vec!["FilterDeny", "['52:54:00:00:00:02']"],
        vec!["FilterForget", "['52:54:00:00:00:02']"],
        vec!["FilterSync", "['52:54:00:00:00:02']", "@as []"],
        vec!["Reconcile"],
        vec!["ReportNetworkEvent", "lab", "started"],
    ] {
        let refused = std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "gdbus",
                "call",
            ])
            .args([
                "--address",
                &bus.address,
                "--dest",
                NAME,
                "--object-path",
                PATH,
            ])
            .arg(format!("--method={NAME}.{}", args[0]))
            .args(&args[1..])
            .output()
            .unwrap();
        assert!(
            !refused.status.success()
                && out(&refused).contains("only root may change what virtmasq serves"),
            "{args:?} reached the daemon as nobody and was not refused by it: {}",
            out(&refused)
        );
    }
    let list = bus
        .busctl()
        .args(["call", NAME, PATH, NAME, "FilterList"])
        .output()
        .unwrap();
    assert!(!out(&list).contains("52:54:00:00:00:02"), "{}", out(&list));
}

/// The daemon's loop sends `NetworksChanged` through the connection its D-Bus thread serves:
/// a listener sees the new set of networks after a reconcile that changed it.
#[test]
fn networks_changed_reaches_a_listener() {
    let bus = PrivateBus::start();
    let (lab, cfg) = lab_with_network("dbus_signal");
    start_agent(&lab, &cfg, &bus);
    let managed = || {
        let got = bus
            .busctl()
            .args(["get-property", NAME, PATH, NAME, "ManagedNetworks"])
            .output()
            .unwrap();
        out(&got).trim().to_owned()
    };
    assert!(
        wait_until(Duration::from_secs(10), || managed() == "as 1 \"lab\""),
        "{}",
        managed()
    );
    let mut monitor = std::process::Command::new("gdbus")
        .args(["monitor", "--address", &bus.address, "--dest", NAME])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("gdbus (package libglib2.0-bin) must be installed");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = monitor.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The lines until one matches `want`, for at most 10 s: (matched, the others).
    let until = |want: &dyn Fn(&str) -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if want(&line) => return (true, seen),
                Ok(line) => seen.push(line),
                Err(_) => return (false, seen),
            }
        }
    };
    // gdbus says whose the name is once its match rules are in place.
    let (subscribed, seen) = until(&|l| l.contains("is owned by"));
    assert!(subscribed, "gdbus monitor did not start: {seen:#?}");
    lab.add_bridge("vqd1", "10.89.1.1/24");
    write_node(
        lab.dir(),
        "node.xml",
        &[
            TestNet {
                name: "lab",
                bridge: "vqd0",
                ip: "10.89.0.1/24",
                dhcp: Some(r#"<virtmasq:range start="10.89.0.100" end="10.89.0.150"/>"#),
            },
            TestNet {
                name: "lab2",
                bridge: "vqd1",
                ip: "10.89.1.1/24",
                dhcp: Some(r#"<virtmasq:range start="10.89.1.100" end="10.89.1.150"/>"#),
            },
        ],
    );
    let asked = bus
        .busctl()
        .args(["call", NAME, PATH, NAME, "Reconcile"])
        .output()
        .unwrap();
    assert!(asked.status.success(), "{}", out(&asked));
    let (signalled, seen) = until(&|l| l.contains("NetworksChanged") && l.contains("'lab2'"));
    let _ = monitor.kill();
    let _ = monitor.wait();
    assert!(signalled, "no NetworksChanged with lab2: {seen:#?}");
    assert_eq!(managed(), "as 2 \"lab\" \"lab2\"");
}
