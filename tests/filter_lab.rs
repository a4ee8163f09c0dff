//! The PXE MAC filter against a real dnsmasq and real DHCP clients, in lab namespaces.
//!
//! Each test renders the filter's dnsmasq lines, starts dnsmasq the way virtmasq does (after
//! `purge_and_rebuild`), drives the filter through its public operations and asks from client
//! namespaces whether an offer comes. They need root, dnsmasq >= 2.81 and python3-scapy; they
//! fail, never skip, when they cannot run.

mod lab;

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use lab::{Client, Lab, ProbeOptions};
use virtmasq::filter::{dnsmasq_lines, FilterConfig, PxeFilter, UnknownPolicy};
use virtmasq::model::{IfName, MacAddr};

const DNSMASQ: &str = "/usr/sbin/dnsmasq";
/// A "no offer" probe waits this long; dnsmasq answers within milliseconds.
const SILENCE: Duration = Duration::from_millis(1500);
/// Upper bound on how long a change may take to show on the wire.
const CHANGE_LIMIT: Duration = Duration::from_secs(10);

/// A lab with a filter and (once started) a dnsmasq serving some bridges.
struct Rig {
    lab: Lab,
    filter: PxeFilter,
    /// (bridge, "10.x.y"): each bridge is 10.x.y.1/24 with a range .100-.150.
    bridges: Vec<(String, String)>,
    /// Bridges the filter covers (the renderer resolves configured networks to these).
    scoped: Vec<String>,
    proxy: bool,
    pid: Option<u32>,
}

impl Rig {
    fn new(test: &str, bridges: &[(&str, &str)], unknown: UnknownPolicy) -> Rig {
        let lab = Lab::new(test);
        for (name, net) in bridges {
            lab.add_bridge(name, &format!("{net}.1/24"));
        }
        let cfg = FilterConfig {
            enabled: true,
            hostsdir: lab.dir().join("hostsdir"),
            unknown,
            ..FilterConfig::default()
        };
        let filter = PxeFilter::new(cfg, lab.dir().join("state"));
        let bridges: Vec<(String, String)> = bridges
            .iter()
            .map(|(b, n)| (b.to_string(), n.to_string()))
            .collect();
        let scoped = bridges.iter().map(|(b, _)| b.clone()).collect();
        Rig {
            lab,
            filter,
            bridges,
            scoped,
            proxy: false,
            pid: None,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.lab.dir().join(name)
    }

    fn conf(&self) -> String {
        let mut lines = Vec::new();
        for (_, net) in &self.bridges {
            lines.push(if self.proxy {
                format!("dhcp-range={net}.0,proxy")
            } else {
                format!("dhcp-range={net}.100,{net}.150,255.255.255.0,1h")
            });
        }
        if self.proxy {
            lines.push("pxe-service=x86PC,\"Network boot\",pxelinux".into());
        }
        let scoped: Vec<IfName> = self.scoped.iter().map(|b| b.parse().unwrap()).collect();
        lines.extend(dnsmasq_lines(&self.cfg(), &scoped, self.proxy).all());
        lines.push(format!("dhcp-leasefile={}", self.path("leases").display()));
        lines.push(format!("pid-file={}", self.path("dnsmasq.pid").display()));
        lines.join("\n") + "\n"
    }

    fn cfg(&self) -> FilterConfig {
        FilterConfig {
            enabled: true,
            hostsdir: self.filter.hostsdir().to_owned(),
            ..FilterConfig::default()
        }
    }

    /// Purges and rebuilds the hostsdir, then starts dnsmasq, as the supervisor does.
    fn start(&mut self) {
        self.filter
            .purge_and_rebuild(self.proxy)
            .expect("purge_and_rebuild");
        fs::write(self.path("dnsmasq.conf"), self.conf()).unwrap();
        self.spawn();
    }

    /// Starts dnsmasq with the configuration file as it is on disk.
    fn spawn(&mut self) {
        let mut args = vec![
            DNSMASQ.to_owned(),
            "--keep-in-foreground".into(),
            "--no-ping".into(),
            format!("--conf-file={}", self.path("dnsmasq.conf").display()),
            "--bind-dynamic".into(),
            "--except-interface=lo".into(),
            "--port=0".into(),
            format!("--log-facility={}", self.path("dnsmasq.log").display()),
            "--log-dhcp".into(),
        ];
        args.extend(self.bridges.iter().map(|(b, _)| format!("--interface={b}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let pid = self.lab.spawn_host(&args);
        let up = Lab::wait_for(
            || self.lab.host_udp_listening(67) || self.lab.process_status(pid).is_some(),
            Duration::from_secs(10),
        );
        assert!(
            up && self.lab.process_status(pid).is_none(),
            "dnsmasq did not start: {}\n{}",
            self.lab.process_log(pid),
            self.log()
        );
        self.pid = Some(pid);
    }

    fn stop(&mut self) {
        let pid = self.pid.take().expect("dnsmasq is running");
        self.lab.stop_process(pid, Duration::from_secs(5));
    }

    fn sighup(&self) {
        let pid = self.pid.expect("dnsmasq is running");
        let before = self.log().matches("read ").count();
        self.lab.signal_process(pid, "HUP");
        // dnsmasq logs each file it re-reads (so tests keep at least one file in the
        // hostsdir); wait until it has started doing so.
        let reread = Lab::wait_for(
            || self.log().matches("read ").count() > before,
            CHANGE_LIMIT,
        );
        assert!(reread, "no re-read after SIGHUP:\n{}", self.log());
    }

    fn still_running(&self) {
        let pid = self.pid.expect("dnsmasq was started");
        assert!(
            self.lab.process_status(pid).is_none(),
            "dnsmasq exited:\n{}",
            self.log()
        );
    }

    fn log(&self) -> String {
        fs::read_to_string(self.path("dnsmasq.log")).unwrap_or_default()
    }

    fn opts(&self) -> ProbeOptions {
        let pxe = self
            .proxy
            .then(|| "PXEClient:Arch:00000:UNDI:002001".to_owned());
        ProbeOptions {
            timeout: SILENCE,
            vendor_class: pxe,
            client_arch: self.proxy.then_some(0),
            client_ndi: self.proxy,
            ..ProbeOptions::default()
        }
    }

    fn offered(&self, client: &Client) -> bool {
        client.probe(&self.opts()).is_some()
    }

    /// Asserts an offer (or none) for each client; the message names the MAC and shows the log.
    fn expect(&self, cases: &[(&Client, bool)], when: &str) {
        for (client, want) in cases {
            let got = self.offered(client);
            assert_eq!(
                got,
                *want,
                "{when}: {} offered={got}\n{}",
                client.mac(),
                self.log()
            );
        }
    }

    /// Probes until `client`'s answer is `want`; returns how long after `since` that was.
    fn wait_until(&self, client: &Client, want: bool, since: Instant) -> Duration {
        let quick = ProbeOptions {
            timeout: Duration::from_millis(300),
            ..self.opts()
        };
        while since.elapsed() < CHANGE_LIMIT {
            if client.probe(&quick).is_some() == want {
                return since.elapsed();
            }
        }
        panic!(
            "{}: offered != {want} after {CHANGE_LIMIT:?}\n{}",
            client.mac(),
            self.log()
        );
    }

    /// Time from `since` until dnsmasq logs that it read `mac`'s file (bounded).
    fn absorbed(&self, mac: MacAddr, since: Instant, seen_before: usize) -> Duration {
        let line = format!("{} new or modified", mac.dashed());
        let seen = Lab::wait_for(
            || self.log().matches(&line).count() > seen_before,
            CHANGE_LIMIT,
        );
        assert!(seen, "dnsmasq never read {}:\n{}", mac.dashed(), self.log());
        since.elapsed()
    }
}

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

#[test]
fn allowed_mac_gets_an_offer_denied_mac_none() {
    let mut rig = Rig::new(
        "filter_allow_deny",
        &[("vqf1", "10.81.1")],
        UnknownPolicy::Allow,
    );
    let (a, b) = (mac("52:54:00:81:01:0a"), mac("52:54:00:81:01:0b"));
    rig.filter.deny(&[a]).unwrap();
    rig.filter.allow(&[b]).unwrap();
    rig.start();
    let denied = rig.lab.add_client("vqf1", &a.to_string());
    let allowed = rig.lab.add_client("vqf1", &b.to_string());
    let unknown = rig.lab.add_client("vqf1", "52:54:00:81:01:0c");
    rig.expect(
        &[(&denied, false), (&allowed, true), (&unknown, true)],
        "initial",
    );
    assert!(denied.lease().is_none(), "a denied MAC got a lease");
    assert!(rig.log().contains("ignored"), "{}", rig.log());
}

#[test]
fn toggling_takes_effect_without_restarting_dnsmasq() {
    let mut rig = Rig::new(
        "filter_toggle",
        &[("vqf1", "10.81.2")],
        UnknownPolicy::Allow,
    );
    let a = mac("52:54:00:81:02:0a");
    rig.filter.deny(&[a]).unwrap();
    rig.start();
    let client = rig.lab.add_client("vqf1", &a.to_string());
    rig.expect(&[(&client, false)], "denied at start");
    for (round, want) in [true, false, true].into_iter().enumerate() {
        let reads = rig.log().matches(&format!("{} new", a.dashed())).count();
        let t = Instant::now();
        let report = if want {
            rig.filter.allow(&[a])
        } else {
            rig.filter.deny(&[a])
        }
        .unwrap();
        let synced = Instant::now();
        assert_eq!(report.applied.written, 1, "round {round}");
        let read_after = rig.absorbed(a, t, reads);
        let answer_after = rig.wait_until(&client, want, synced);
        eprintln!(
            "toggle {round} to offered={want}: sync {:?}, dnsmasq read the file {read_after:?} \
             after the sync started, first matching answer {answer_after:?} after (probe start-up included)",
            synced - t
        );
    }
    rig.still_running();
    // Three rewrites of one file are stale in dnsmasq's memory until a SIGHUP compacts them.
    rig.sighup();
    rig.filter.compacted().unwrap();
    rig.expect(&[(&client, true)], "after compaction");
}

#[test]
fn deleted_files_stay_in_effect_until_sighup() {
    // Pins the dnsmasq behaviour that makes the filter rewrite instead of delete.
    let mut rig = Rig::new(
        "filter_delete",
        &[("vqf1", "10.81.3")],
        UnknownPolicy::Allow,
    );
    let (a, b) = (mac("52:54:00:81:03:0a"), mac("52:54:00:81:03:0b"));
    rig.filter.deny(&[a, b]).unwrap();
    rig.start();
    let client = rig.lab.add_client("vqf1", &a.to_string());
    fs::remove_file(rig.filter.hostsdir().join(a.dashed())).unwrap();
    let gone = Lab::wait_for(|| rig.log().contains("removed"), CHANGE_LIMIT);
    assert!(gone, "dnsmasq did not see the deletion:\n{}", rig.log());
    rig.expect(&[(&client, false)], "deleted file still denies");
    rig.sighup();
    rig.wait_until(&client, true, Instant::now());
    rig.still_running();
}

#[test]
fn a_sighup_after_a_tagged_deny_matched_crashes_dnsmasq_before_2_91() {
    // Pins why deny lines carry `set:` only for proxy DHCP, and why `sighup_is_safe` exists.
    let mut rig = Rig::new(
        "filter_hup_crash",
        &[("vqf1", "10.81.11")],
        UnknownPolicy::Allow,
    );
    rig.proxy = true;
    let a = mac("52:54:00:81:11:0a");
    rig.filter.deny(&[a]).unwrap();
    rig.start();
    let client = rig.lab.add_client("vqf1", &a.to_string());
    rig.expect(&[(&client, false)], "tagged deny matched");
    let pid = rig.pid.unwrap();
    rig.lab.signal_process(pid, "HUP");
    let exited = Lab::wait_for(
        || rig.lab.process_status(pid).is_some(),
        Duration::from_secs(3),
    );
    let version = dnsmasq_version();
    assert_eq!(
        exited,
        !virtmasq::filter::sighup_is_safe(version, true),
        "dnsmasq {version:?}: exited={exited} ({:?})\n{}",
        rig.lab.process_status(pid),
        rig.log()
    );
}

/// (major, minor) of the installed dnsmasq.
fn dnsmasq_version() -> (u32, u32) {
    let out = std::process::Command::new(DNSMASQ)
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let word = text.split_whitespace().nth(2).unwrap_or_default();
    let (major, minor) = word.split_once('.').unwrap_or(("0", "0"));
    let minor: String = minor.chars().take_while(char::is_ascii_digit).collect();
    (major.parse().unwrap_or(0), minor.parse().unwrap_or(0))
}

#[test]
fn unknown_macs_can_be_denied_and_allowed_at_run_time() {
    let mut rig = Rig::new(
        "filter_unknown",
        &[("vqf1", "10.81.4")],
        UnknownPolicy::Deny,
    );
    let b = mac("52:54:00:81:04:0b");
    rig.filter.allow(&[b]).unwrap();
    rig.start();
    let allowed = rig.lab.add_client("vqf1", &b.to_string());
    let unknown = rig.lab.add_client("vqf1", "52:54:00:81:04:0c");
    rig.expect(&[(&allowed, true), (&unknown, false)], "unknown denied");
    rig.filter.set_unknown(Some(UnknownPolicy::Allow)).unwrap();
    rig.wait_until(&unknown, true, Instant::now());
    rig.filter.set_unknown(None).unwrap();
    rig.wait_until(&unknown, false, Instant::now());
    rig.expect(&[(&allowed, true)], "explicit allow beats the wildcard");
}

#[test]
fn proxy_dhcp_honours_denies() {
    let mut rig = Rig::new("filter_proxy", &[("vqf1", "10.81.5")], UnknownPolicy::Allow);
    rig.proxy = true;
    let (a, b) = (mac("52:54:00:81:05:0a"), mac("52:54:00:81:05:0b"));
    rig.filter.deny(&[a]).unwrap();
    rig.start();
    let denied = rig.lab.add_client("vqf1", &a.to_string());
    let allowed = rig.lab.add_client("vqf1", &b.to_string());
    rig.expect(&[(&denied, false), (&allowed, true)], "proxy");
    assert!(rig.log().contains("proxy-ignored"), "{}", rig.log());
    rig.filter.deny(&[b]).unwrap();
    rig.wait_until(&allowed, false, Instant::now());
    rig.filter.set_unknown(Some(UnknownPolicy::Deny)).unwrap();
    rig.filter.forget(&[a]).unwrap();
    let stranger = rig.lab.add_client("vqf1", "52:54:00:81:05:0c");
    rig.expect(
        &[(&denied, false), (&stranger, false)],
        "proxy, unknown denied",
    );
}

#[test]
fn proxy_dhcp_ignores_a_plain_ignore() {
    // Pins why the deny tag exists: without `dhcp-ignore=tag:virtmasq-deny`, a deny line's
    // `ignore` does not stop the proxy-DHCP PXE reply.
    let mut rig = Rig::new(
        "filter_proxy_plain",
        &[("vqf1", "10.81.6")],
        UnknownPolicy::Allow,
    );
    rig.proxy = true;
    let a = mac("52:54:00:81:06:0a");
    rig.filter.deny(&[a]).unwrap();
    rig.filter.purge_and_rebuild(true).unwrap();
    let conf = rig.conf();
    assert!(conf.contains("dhcp-ignore=tag:virtmasq-deny\n"), "{conf}");
    let plain = conf.replace("dhcp-ignore=tag:virtmasq-deny\n", "");
    fs::write(rig.path("dnsmasq.conf"), plain).unwrap();
    rig.spawn();
    let denied = rig.lab.add_client("vqf1", &a.to_string());
    rig.expect(&[(&denied, true)], "proxy without dhcp-ignore");
    assert!(rig.log().contains(&format!("{a} proxy")), "{}", rig.log());
}

#[test]
fn a_filter_scoped_to_one_bridge_leaves_another_alone() {
    let bridges = [("vqf1", "10.81.7"), ("vqf2", "10.81.8")];
    let mut rig = Rig::new("filter_scope", &bridges, UnknownPolicy::Deny);
    rig.scoped = vec!["vqf1".into()];
    let (a, b) = (mac("52:54:00:81:07:0a"), mac("52:54:00:81:07:0b"));
    rig.filter.deny(&[a]).unwrap();
    rig.filter.allow(&[b]).unwrap();
    rig.start();
    let a1 = rig.lab.add_client("vqf1", &a.to_string());
    let a2 = rig.lab.add_client("vqf2", &a.to_string());
    let b1 = rig.lab.add_client("vqf1", &b.to_string());
    let u1 = rig.lab.add_client("vqf1", "52:54:00:81:07:0c");
    let u2 = rig.lab.add_client("vqf2", "52:54:00:81:07:0d");
    rig.expect(
        &[
            (&a1, false),
            (&b1, true),
            (&u1, false),
            (&a2, true),
            (&u2, true),
        ],
        "scoped to vqf1",
    );
}

#[test]
fn a_tagged_wildcard_beats_an_untagged_exact_mac() {
    // Pins dnsmasq's lookup order (tagged entries first), the reason every filter line is
    // tagged: an untagged allow line is shadowed by the tagged deny wildcard.
    let mut rig = Rig::new(
        "filter_tag_order",
        &[("vqf1", "10.81.9")],
        UnknownPolicy::Deny,
    );
    let (a, b) = (mac("52:54:00:81:09:0a"), mac("52:54:00:81:09:0b"));
    rig.filter.allow(&[b]).unwrap();
    rig.start();
    let hostsdir = rig.filter.hostsdir().to_owned();
    fs::write(hostsdir.join(".hand"), format!("{a}\n")).unwrap();
    fs::rename(hostsdir.join(".hand"), hostsdir.join(a.dashed())).unwrap();
    rig.absorbed(a, Instant::now(), 0);
    let ca = rig.lab.add_client("vqf1", &a.to_string());
    let cb = rig.lab.add_client("vqf1", &b.to_string());
    rig.expect(
        &[(&ca, false), (&cb, true)],
        "untagged exact vs tagged wildcard",
    );
}

#[test]
fn a_restart_with_a_changed_policy_drops_stale_entries() {
    let mut rig = Rig::new(
        "filter_restart",
        &[("vqf1", "10.81.10")],
        UnknownPolicy::Allow,
    );
    let (a, b) = (mac("52:54:00:81:10:0a"), mac("52:54:00:81:10:0b"));
    rig.filter.deny(&[a]).unwrap();
    rig.filter.allow(&[b]).unwrap();
    rig.start();
    let ca = rig.lab.add_client("vqf1", &a.to_string());
    let cb = rig.lab.add_client("vqf1", &b.to_string());
    rig.expect(&[(&ca, false), (&cb, true)], "first run");
    // While dnsmasq runs, forgetting a MAC rewrites its file to the unknown policy (allow).
    rig.filter.forget(&[a]).unwrap();
    rig.wait_until(&ca, true, Instant::now());
    rig.stop();
    // A stale allow file from an old policy, a leftover temporary file, a foreign file.
    let hostsdir = rig.filter.hostsdir().to_owned();
    let stale = mac("52:54:00:81:10:0c");
    let stale_line = format!("tag:virtmasq-filter,{stale}\n");
    fs::write(hostsdir.join(stale.dashed()), stale_line).unwrap();
    fs::write(hostsdir.join(".virtmasq-tmp.x"), "x").unwrap();
    fs::write(hostsdir.join("notes"), "52:54:00:81:10:0d\n").unwrap();
    // The new policy denies unknown MACs: a stale allow entry would let `a` and `stale` in.
    rig.filter.set_unknown(Some(UnknownPolicy::Deny)).unwrap();
    rig.start();
    let mut names: Vec<String> = fs::read_dir(&hostsdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [b.dashed(), "unknown-macs".to_owned()]);
    let cs = rig.lab.add_client("vqf1", &stale.to_string());
    let cn = rig.lab.add_client("vqf1", "52:54:00:81:10:0d");
    rig.expect(
        &[(&ca, false), (&cs, false), (&cn, false), (&cb, true)],
        "after restart",
    );
}
