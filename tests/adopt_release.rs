//! `virtmasq adopt` and `virtmasq release` against a real libvirtd (see `libvirtd/`): the
//! definition goes over and comes back equal, a running network is restarted so that the
//! right dnsmasq serves it, and whatever does not add up is refused with nothing changed.

mod lab;
mod libvirtd;
mod support;

use std::process::Output;
use std::time::Duration;

use lab::Lab;
use libvirtd::{served_network, Libvirtd};
use support::*;
use virtmasq::libvirt::adopt::difference;
use virtmasq::libvirt::xml::NetworkXml;

/// Runs the agent against `lv`, with a configuration under the lab's directory.
fn agent(lab: &Lab, lv: &Libvirtd, args: &[&str]) -> Output {
    let cfg = write_config(lab.dir(), &lv.uri, "");
    let mut all = vec!["--config", cfg.to_str().unwrap()];
    all.extend_from_slice(args);
    run_agent(&all, Duration::from_secs(60))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Fails unless the definition of `name` is, parsed, `expected`.
fn assert_definition(lv: &Libvirtd, name: &str, expected: &str) {
    let now = lv.definition(name);
    if let Some(diff) = difference(expected, &now).unwrap() {
        panic!("definition of {name} changed: {diff}\n--- expected\n{expected}\n--- now\n{now}");
    }
}

/// Everything `adopt` carries over, and things it must leave alone (metadata of another
/// program, the MTU, a domain that answers locally only).
const RICH_DHCP: &str = "<range start='10.61.0.100' end='10.61.0.150'>\
     <lease expiry='2' unit='hours'/></range>\
     <range start='10.61.0.200' end='10.61.0.210'><lease expiry='30' unit='minutes'/></range>\
     <host mac='52:54:00:AA:61:01' name='node1' ip='10.61.0.11'/>\
     <host mac='52:54:00:aa:61:02' ip='10.61.0.12'/>";
const RICH_EXTRA: &str = "<metadata><other:tag xmlns:other='urn:other' keep='me'/></metadata>\
     <mtu size='1400'/><domain name='rich.example' localOnly='yes'/><dns enable='yes'/>";

#[test]
fn adopt_then_release_gives_back_the_original_definition() {
    let lab = Lab::new("adopt_release_round_trip");
    let lv = Libvirtd::start(&lab, None);
    lv.define(&served_network(
        "vqr-rich",
        "vqbr-rich",
        "10.61.0.1",
        RICH_DHCP,
        RICH_EXTRA,
    ));
    let original = lv.definition("vqr-rich");

    let dry = agent(&lab, &lv, &["adopt", "vqr-rich", "--dry-run"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    let shown = stdout(&dry);
    assert!(
        shown.contains("# after") && shown.contains("<dns enable='no'/>"),
        "{shown}"
    );
    assert!(shown.contains("nothing was changed"), "{shown}");
    assert_definition(&lv, "vqr-rich", &original);

    let out = agent(&lab, &lv, &["adopt", "vqr-rich"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("it is not running"),
        "{}",
        stdout(&out)
    );
    let adopted = lv.definition("vqr-rich");
    let net = NetworkXml::parse(&adopted).unwrap();
    assert!(!net.served_by_libvirt() && !net.dns_enabled, "{adopted}");
    let intent = net.metadata.expect("virtmasq's intent in <metadata>");
    assert_eq!(intent.ranges.len(), 2);
    assert_eq!(intent.hosts.len(), 2);
    assert!(intent.dns);
    assert_eq!(intent.domain.unwrap().as_str(), "rich.example");
    assert!(adopted.contains("urn:other") && adopted.contains("<mtu size='1400'/>"));
    // Recorded, so that teardown can name it.
    let record = lab.dir().join("state/adopted/vqr-rich");
    assert!(record.exists());

    let again = agent(&lab, &lv, &["adopt", "vqr-rich"]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already adopted"),
        "{}",
        stderr(&again)
    );
    assert_definition(&lv, "vqr-rich", &adopted);

    let dry = agent(&lab, &lv, &["release", "vqr-rich", "--dry-run"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert_definition(&lv, "vqr-rich", &adopted);

    let out = agent(&lab, &lv, &["release", "vqr-rich"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_definition(&lv, "vqr-rich", &original);
    assert!(!record.exists());

    let again = agent(&lab, &lv, &["release", "vqr-rich"]);
    assert!(
        stderr(&again).contains("was not adopted"),
        "{}",
        stderr(&again)
    );
    assert_definition(&lv, "vqr-rich", &original);
}

#[test]
fn a_running_network_changes_hands_at_once() {
    let lab = Lab::new("adopt_release_running");
    let lv = Libvirtd::start(&lab, None);
    let dhcp = "<range start='10.62.0.100' end='10.62.0.150'/>";
    lv.define(&served_network(
        "vqr-run",
        "vqbr-run",
        "10.62.0.1",
        dhcp,
        "",
    ));
    lv.virsh_ok(&["net-start", "vqr-run"]);
    let original = lv.definition("vqr-run");
    assert!(!lv.dnsmasq_of("vqr-run").is_empty());

    // Private mode with nothing to run its dnsmasq: the hand-over would leave it unserved.
    let out = agent(&lab, &lv, &["adopt", "vqr-run"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("no `virtmasq daemon` runs"),
        "{}",
        stderr(&out)
    );
    assert_definition(&lv, "vqr-run", &original);
    assert!(
        !lv.dnsmasq_of("vqr-run").is_empty(),
        "libvirt's dnsmasq stopped"
    );

    let cfg = write_config(lab.dir(), &lv.uri, "");
    let daemon = lab.spawn_host(&[BIN, "--config", cfg.to_str().unwrap(), "daemon"]);
    let pid_file = lab.dir().join("run/virtmasq.pid");
    let up = wait_until(Duration::from_secs(10), || {
        live_pid(&pid_file) == Some(daemon as i32)
    });
    assert!(up, "the daemon did not start:\n{}", lab.process_log(daemon));
    let out = agent(&lab, &lv, &["adopt", "vqr-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("restarted"), "{text}");
    let ours = lab.dir().join("run/vqr-run/pid/dnsmasq.pid");
    assert!(
        wait_until(Duration::from_secs(10), || live_pid(&ours).is_some()),
        "virtmasq's dnsmasq did not take over:\n{}",
        lab.process_log(daemon)
    );
    let guest = lab.add_client("vqbr-run", "52:54:00:62:00:02");
    assert!(
        guest.lease_with_args(&["-t", "8"]).is_some(),
        "no lease from virtmasq"
    );
    assert!(
        lv.dnsmasq_of("vqr-run").is_empty(),
        "libvirt still serves it"
    );
    let live = lv.virsh_ok(&["net-dumpxml", "vqr-run"]);
    assert!(
        NetworkXml::parse(&live).unwrap().metadata.is_some(),
        "{live}"
    );

    let out = agent(&lab, &lv, &["release", "vqr-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !lv.dnsmasq_of("vqr-run").is_empty(),
        "libvirt does not serve it again"
    );
    assert_definition(&lv, "vqr-run", &original);
    let client = lab.add_client("vqbr-run", "52:54:00:62:00:01");
    assert!(
        client.lease_with_args(&["-t", "8"]).is_some(),
        "no lease from libvirt"
    );
}

#[test]
fn what_does_not_add_up_is_refused_and_nothing_changes() {
    let lab = Lab::new("adopt_release_refusals");
    let lv = Libvirtd::start(&lab, None);
    // A raw option through which virtmasq runs the instance itself: refused by name.
    let raw = "<dnsmasq:options xmlns:dnsmasq='http://libvirt.org/schemas/network/dnsmasq/1.0'>\
               <dnsmasq:option value='interface=eth9'/></dnsmasq:options>";
    let range = "<range start='10.63.0.100' end='10.63.0.150'/>";
    lv.define(&served_network(
        "vqr-raw",
        "vqbr-raw",
        "10.63.0.1",
        range,
        raw,
    ));
    let quiet = "<network><name>vqr-quiet</name><forward mode='open'/><bridge name='vqbr-q'/>\
                 <dns enable='no'/><ip address='10.64.0.1' prefix='24'/></network>";
    lv.define(quiet);
    let dhcp = "<range start='10.65.0.100' end='10.65.0.150'/>";
    lv.define(&served_network(
        "vqr-edit",
        "vqbr-edit",
        "10.65.0.1",
        dhcp,
        "",
    ));
    let transient = lv.file(
        "transient.xml",
        &served_network(
            "vqr-tmp",
            "vqbr-tmp",
            "10.66.0.1",
            &dhcp.replace(".65.", ".66."),
            "",
        ),
    );
    lv.virsh_ok(&["net-create", transient.to_str().unwrap()]);

    let cases: [(&[&str], &str); 5] = [
        (
            &["adopt", "vqr-raw"],
            "virtmasq sets this option for the network's dnsmasq itself",
        ),
        (&["adopt", "vqr-quiet"], "not served by libvirt"),
        (&["adopt", "vqr-nope"], "no network named 'vqr-nope'"),
        (&["adopt", "vqr-tmp"], "transient"),
        (&["release", "vqr-edit"], "was not adopted"),
    ];
    for (args, needle) in cases {
        let exists = args[1] != "vqr-nope";
        let before = exists.then(|| lv.definition(args[1]));
        let out = agent(&lab, &lv, args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
        if let Some(before) = before {
            assert_definition(&lv, args[1], &before);
        }
    }
    assert!(!lv.virsh(&["net-info", "vqr-nope"]).status.success());

    // An intent edited after adopt would be lost by a release: refused.
    let out = agent(&lab, &lv, &["adopt", "vqr-edit"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The first occurrence is in virtmasq's intent; the saved <dhcp> follows it.
    let adopted = lv.definition("vqr-edit");
    assert!(adopted.find("<virtmasq:dhcp") < adopted.find("<virtmasq-saved:libvirt"));
    let edited = adopted.replacen("10.65.0.150", "10.65.0.160", 1);
    lv.define(&edited);
    let out = agent(&lab, &lv, &["release", "vqr-edit"]);
    assert!(
        stderr(&out).contains("changed since it was adopted"),
        "{}",
        stderr(&out)
    );
    assert_definition(&lv, "vqr-edit", &edited);
}

/// IPv6 through a real libvirtd: a DHCPv6 `<ip>` (a range with its lease, hosts by DUID and
/// by name with a lease of its own) and a SLAAC-only one go over into the intent and come
/// back as they were.
#[test]
fn ipv6_goes_over_and_comes_back() {
    let lab = Lab::new("adopt_release_ipv6");
    let lv = Libvirtd::start(&lab, None);
    let v6 = "<ip family='ipv6' address='fd00:61::1' prefix='64'><dhcp>\
         <range start='fd00:61::100' end='fd00:61::1ff'><lease expiry='1' unit='hours'/></range>\
         <host id='00:01:00:01:2c:ab:cd:ef:52:54:00:aa:61:06' name='node6' ip='fd00:61::10'/>\
         <host name='byname' ip='fd00:61::11'><lease expiry='30' unit='minutes'/></host>\
         </dhcp></ip><ip family='ipv6' address='fd00:62::1' prefix='64'/>";
    let dhcp = "<range start='10.61.0.100' end='10.61.0.150'/>";
    lv.define(&served_network("vqr-v6", "vqbr-v6", "10.61.0.1", dhcp, v6));
    let original = lv.definition("vqr-v6");
    let out = agent(&lab, &lv, &["adopt", "vqr-v6"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let adopted = lv.definition("vqr-v6");
    let net = NetworkXml::parse(&adopted).unwrap();
    assert!(!net.served_by_libvirt(), "{adopted}");
    let intent = net
        .metadata
        .clone()
        .expect("virtmasq's intent in <metadata>");
    assert_eq!(
        (intent.ranges.len(), intent.ranges6.len()),
        (1, 1),
        "{adopted}"
    );
    assert_eq!(intent.hosts6.len(), 2, "{adopted}");
    assert_eq!(
        intent.hosts6[1].lease.map(|l| l.to_string()),
        Some("1800".into())
    );
    assert_eq!(net.ipv6_subnets().len(), 2);
    let out = agent(&lab, &lv, &["release", "vqr-v6"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_definition(&lv, "vqr-v6", &original);
}
