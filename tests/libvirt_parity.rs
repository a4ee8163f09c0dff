//! What a libvirt network definition asks of its dnsmasq beyond addresses, served by virtmasq
//! after `adopt` (private mode, real dnsmasq, real clients in the lab): an isolated network's
//! guests get no default route and no upstream DNS, `<mtu>` arrives as option 26, `<bootp>`'s
//! boot file is offered and `<tftp>` serves it, and the network's `<dns>` TXT, SRV and host
//! records and a per-domain forwarder answer as they do from libvirt's own dnsmasq.

mod lab;
mod support;

use std::time::Duration;

use lab::{Lab, ProbeOptions};
use support::*;

const NETWORK: &str = "<network><name>par</name><bridge name='vqpar0'/><mtu size='7000'/>\
    <domain name='par.example' localOnly='yes'/>\
    <dns><forwarder domain='up.test' addr='10.96.0.2'/>\
    <txt name='info.par.example' value='parity'/>\
    <srv service='ldap' protocol='tcp' domain='par.example' target='ldap.par.example' \
    port='389' priority='10' weight='5'/>\
    <host ip='10.95.0.7'><hostname>files</hostname></host></dns>\
    <ip address='10.95.0.1' prefix='24'><tftp root='TFTP_ROOT'/><dhcp>\
    <range start='10.95.0.100' end='10.95.0.150'/><bootp file='pxelinux.0'/></dhcp></ip>\
    </network>";

#[test]
fn an_adopted_isolated_network_with_records_is_served_as_libvirt_serves_it() {
    let lab = Lab::new("libvirt_parity");
    lab.add_bridge("vqpar0", "10.95.0.1/24");
    // The upstream the forwarder names: a dnsmasq on its own interface that knows one name.
    lab.add_bridge("vqup0", "10.96.0.2/24");
    let upstream = lab.spawn_dns_server(
        "10.96.0.2",
        &["--except-interface=lo", "--address=/up.test/192.0.2.9"],
    );

    // libvirt's <tftp>: a root with one file in it.
    let root = lab.dir().join("tftp");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("hello.txt"), "served by TFTP\n").unwrap();
    let network = NETWORK.replace("TFTP_ROOT", root.to_str().unwrap());
    let adopted = virtmasq::libvirt::adopt::adopt(&network).expect("adopt carries it all over");
    let node = lab.dir().join("node.xml");
    std::fs::write(&node, format!("<node>{}</node>", adopted.xml)).unwrap();
    let cfg = write_config(lab.dir(), &format!("test://{}", node.display()), "");
    let agent = lab.spawn_host(&[BIN, "--config", cfg.to_str().unwrap(), "daemon"]);
    let pid_file = lab.dir().join("run/par/pid/dnsmasq.pid");
    assert!(
        wait_until(Duration::from_secs(10), || live_pid(&pid_file).is_some()),
        "no dnsmasq for 'par'\n{}",
        lab.process_log(agent)
    );

    // DHCP: no router (isolated), the MTU.
    let guest = lab.add_client("vqpar0", "52:54:00:95:00:01");
    let offer = guest
        .probe(&ProbeOptions {
            request_list: Some(vec![1, 3, 6, 15, 26, 28]),
            ..ProbeOptions::default()
        })
        .expect("an offer");
    assert_eq!(offer.yiaddr.octets()[..3], [10, 95, 0]);
    assert_eq!(offer.router(), None, "an isolated network gives no route");
    assert_eq!(
        offer.options.get(&26).map(Vec::as_slice),
        Some(&7000u16.to_be_bytes()[..]),
        "{:?}",
        offer.options
    );
    assert_eq!(offer.domain().as_deref(), Some("par.example"));
    assert_eq!(offer.boot_file().as_deref(), Some("pxelinux.0"), "<bootp>");

    // DNS and TFTP from the guest, on the bridge's address.
    guest.set_address("10.95.0.50/24");
    let got = lab.dir().join("got.txt");
    let tftp = guest
        .command("busybox")
        .args([
            "tftp",
            "-g",
            "-r",
            "hello.txt",
            "-l",
            got.to_str().unwrap(),
            "10.95.0.1",
        ])
        .output()
        .unwrap();
    assert!(
        tftp.status.success(),
        "{}",
        String::from_utf8_lossy(&tftp.stderr)
    );
    assert_eq!(std::fs::read_to_string(&got).unwrap(), "served by TFTP\n");
    let ask = |name: &str, qtype: &str| {
        guest
            .dns("10.95.0.1", name, qtype)
            .unwrap_or_else(|| panic!("no DNS answer for {name} {qtype}"))
    };
    assert_eq!(
        ask("info.par.example", "TXT"),
        (0, vec!["TXT parity".into()])
    );
    assert_eq!(
        ask("_ldap._tcp.par.example", "SRV"),
        (0, vec!["SRV 10 5 389 ldap.par.example.".into()])
    );
    assert_eq!(
        ask("files.par.example", "A"),
        (0, vec!["A 10.95.0.7".into()])
    );
    assert_eq!(ask("files", "A"), (0, vec!["A 10.95.0.7".into()]));
    // The forwarder's domain goes to the forwarder.
    assert_eq!(ask("x.up.test", "A"), (0, vec!["A 192.0.2.9".into()]));
    // An isolated network forwards nothing else anywhere (no-resolv): no answer to give.
    let (rcode, answers) = ask("example.org", "A");
    assert!(answers.is_empty() && rcode != 0, "{rcode} {answers:?}");
    lab.stop_process(agent, Duration::from_secs(5));
    lab.stop_process(upstream, Duration::from_secs(5));
}
