//! The PXE filter through the agent: the daemon's private dnsmasq reads the hostsdir the
//! `virtmasq filter` commands write, and a deny or allow takes effect without a restart.

mod lab;
mod support;

use std::time::{Duration, Instant};

use lab::{Lab, ProbeOptions};
use support::bus::PrivateBus;
use support::*;

#[test]
fn deny_and_allow_take_effect_without_a_restart() {
    let lab = Lab::new("filter_agent");
    lab.add_bridge("vqf0", "10.87.0.1/24");
    let uri = write_node(
        lab.dir(),
        "node.xml",
        &[TestNet {
            name: "lab",
            bridge: "vqf0",
            ip: "10.87.0.1/24",
            dhcp: Some(r#"<virtmasq:range start="10.87.0.100" end="10.87.0.150"/>"#),
        }],
    );
    let extra = format!(
        "[filter]\nenabled = true\nhostsdir = \"{}/hostsdir\"\n",
        lab.dir().display()
    );
    let cfg = write_config(lab.dir(), &uri, &extra);
    let cfg = cfg.to_str().unwrap();
    lab.spawn_host(&[BIN, "--config", cfg, "daemon"]);
    let pid_file = lab.dir().join("run/lab/pid/dnsmasq.pid");
    assert!(wait_until(Duration::from_secs(10), || live_pid(&pid_file).is_some()));
    let dnsmasq = live_pid(&pid_file).unwrap();
    let conf = std::fs::read_to_string(lab.dir().join("run/lab/dnsmasq.conf")).unwrap();
    assert!(
        conf.contains("dhcp-hostsdir=") && conf.contains("tag-if=set:virtmasq-filter,tag:vqf0"),
        "{conf}"
    );

    let mac = "52:54:00:87:00:01";
    let client = lab.add_client("vqf0", mac);
    let quick = ProbeOptions {
        timeout: Duration::from_millis(1500),
        ..Default::default()
    };
    assert!(
        client.probe(&quick).is_some(),
        "unknown MACs are allowed by default"
    );

    let denied = run_agent(
        &["--config", cfg, "filter", "deny", mac],
        Duration::from_secs(20),
    );
    assert!(
        denied.status.success(),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
    let t = Instant::now();
    assert!(client.probe(&quick).is_none(), "a denied MAC got an offer");
    let allowed = run_agent(
        &["--config", cfg, "filter", "allow", mac],
        Duration::from_secs(20),
    );
    assert!(allowed.status.success());
    assert!(
        client.probe(&quick).is_some(),
        "an allowed MAC got no offer"
    );
    eprintln!("deny and allow observed within {:?}", t.elapsed());
    assert_eq!(live_pid(&pid_file), Some(dnsmasq), "dnsmasq was restarted");
}

/// Runs `virtmasq filter sync --from FROM` on the test's bus, with `stdin` as its input.
fn sync_from(cfg: &str, bus: &PrivateBus, from: &str, stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(BIN)
        .args(["--config", cfg, "filter", "sync", "--from", from])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The `FilterChanged` signals the daemon sends while `during` runs (and within 1 s after).
fn filter_signals(bus: &PrivateBus, during: impl FnOnce()) -> usize {
    use zbus::export::futures_core::Stream;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let conn = zbus::connection::Builder::address(bus.address.as_str())
            .unwrap()
            .build()
            .await
            .expect("connect to the test bus");
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .interface("org.virtmasq.Agent1")
            .unwrap()
            .member("FilterChanged")
            .unwrap()
            .build();
        let mut stream = zbus::MessageStream::for_match_rule(rule, &conn, Some(64))
            .await
            .expect("subscribe to FilterChanged");
        tokio::task::block_in_place(during);
        let mut seen = 0;
        loop {
            let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut stream).poll_next(cx));
            match tokio::time::timeout(Duration::from_secs(1), next).await {
                Ok(Some(_)) => seen += 1,
                _ => break,
            }
        }
        seen
    })
}

/// `filter sync --from` with the daemon running hands the list to it (`FilterSyncFrom`, the
/// file itself or a memfd for standard input): the daemon parses it, dnsmasq answers as it
/// says, a bad list is refused by name and changes nothing, and the hostsdir's deferred sync
/// clears the pending mark.
#[test]
fn a_list_is_handed_to_the_running_daemon() {
    let lab = Lab::new("filter_handed");
    lab.add_bridge("vqf2", "10.84.0.1/24");
    let uri = write_node(
        lab.dir(),
        "node.xml",
        &[TestNet {
            name: "lab",
            bridge: "vqf2",
            ip: "10.84.0.1/24",
            dhcp: Some(r#"<virtmasq:range start="10.84.0.100" end="10.84.0.150"/>"#),
        }],
    );
    let hostsdir = lab.dir().join("hostsdir");
    let extra = format!(
        "[filter]\nenabled = true\nhostsdir = \"{}\"\n",
        hostsdir.display()
    );
    let cfg = write_config(lab.dir(), &uri, &extra);
    let cfg = cfg.to_str().unwrap();
    let bus = PrivateBus::start();
    let mut cmd = lab.host_command(BIN);
    cmd.args(["--config", cfg, "daemon"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address);
    let daemon = lab.spawn(&mut cmd);
    let pid_file = lab.dir().join("run/lab/pid/dnsmasq.pid");
    assert!(wait_until(Duration::from_secs(10), || live_pid(&pid_file).is_some()));
    assert!(wait_until(Duration::from_secs(10), || bus
        .has_owner("org.virtmasq.Agent1")));
    let mac = "52:54:00:84:00:01";
    let client = lab.add_client("vqf2", mac);
    let quick = ProbeOptions {
        timeout: Duration::from_millis(1500),
        ..Default::default()
    };

    let list = lab.dir().join("list.json");
    std::fs::write(&list, format!("{{\"allow\": [], \"deny\": [\"{mac}\"]}}\n")).unwrap();
    let (ok, out) = sync_from(cfg, &bus, list.to_str().unwrap(), None);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("by the daemon (pid {daemon})")),
        "{out}"
    );
    assert!(client.probe(&quick).is_none(), "a denied MAC got an offer");
    let pending = lab.dir().join("state/filter.pending");
    assert!(
        wait_until(Duration::from_secs(5), || !pending.exists()),
        "the hostsdir was never synced: the pending mark stayed"
    );

    // A bad list: named, refused, and the hostsdir and the daemon's policy are as they were.
    let before = tree(&hostsdir)
        .into_iter()
        .map(|f| (std::fs::read_to_string(hostsdir.join(&f)).unwrap(), f))
        .collect::<Vec<_>>();
    std::fs::write(&list, format!("{mac}\n52:54:00:84:00:02\nnot-a-mac\n")).unwrap();
    let (ok, out) = sync_from(cfg, &bus, list.to_str().unwrap(), None);
    assert!(!ok, "a bad list was taken: {out}");
    assert!(
        out.contains(list.to_str().unwrap()) && out.contains("line 3") && out.contains("not-a-mac"),
        "{out}"
    );
    let after = tree(&hostsdir)
        .into_iter()
        .map(|f| (std::fs::read_to_string(hostsdir.join(&f)).unwrap(), f))
        .collect::<Vec<_>>();
    assert_eq!(before, after, "a refused list changed the hostsdir");

    // The first list again changes nothing, and is not announced (nor reconciled); the
    // allow that follows, through standard input (a memfd), is announced once.
    let same = lab.dir().join("same.json");
    std::fs::write(&same, format!("{{\"allow\": [], \"deny\": [\"{mac}\"]}}\n")).unwrap();
    let signals = filter_signals(&bus, || {
        let (ok, out) = sync_from(cfg, &bus, same.to_str().unwrap(), None);
        assert!(ok && out.contains("0 file(s) written"), "{out}");
        let (ok, out) = sync_from(cfg, &bus, "-", Some(&format!("{mac}\n")));
        assert!(ok, "{out}");
        assert!(out.contains("by the daemon"), "{out}");
    });
    assert_eq!(
        signals, 1,
        "FilterChanged signals for one change and one no-change sync"
    );
    assert!(
        client.probe(&quick).is_some(),
        "an allowed MAC got no offer"
    );
    // The allow swapped the deny file out; once synced, that file is freed: the hostsdir
    // holds the MAC's file and nothing else.
    assert!(
        wait_until(Duration::from_secs(5), || !pending.exists()),
        "the hostsdir was never synced after the allow"
    );
    assert_eq!(tree(&hostsdir), ["52-54-00-84-00-01"]);
}
