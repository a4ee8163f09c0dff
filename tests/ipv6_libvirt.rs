//! IPv6 side by side with libvirt's own dnsmasq: the same network XML, served first by a real
//! libvirtd (its network driver writes its dnsmasq's configuration) and then, after `virtmasq
//! adopt`, by virtmasq's private dnsmasq. Real IPv6 clients in lab namespaces must see the
//! same advertisement flags and prefixes, leases from the same range, the same fixed address
//! for the host given by DUID, and the same DNS answer for its name.

mod lab;
mod libvirtd;
mod support;

use std::time::Duration;

use lab::{Client, Lab};
use libvirtd::{served_network, Libvirtd};
use support::*;

const NET: &str = "vqr-v6";
const BRIDGE: &str = "vqbr-v6s";
const FIXED_MAC: &str = "52:54:00:63:00:0a";

/// What a guest sees of one dnsmasq.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    /// M and O flags, router lifetime, prefixes with their A flag.
    advert: (bool, bool, u32, Vec<(String, bool)>),
    /// A dynamic lease lies in fd00:63::100-1ff.
    in_range: bool,
    /// The host given by DUID gets this address.
    fixed: String,
    /// The AAAA answer for its name holds its address.
    aaaa: bool,
}

fn seen(lab: &Lab, dynamic_mac: &str) -> Seen {
    let guest = lab.add_client(BRIDGE, dynamic_mac);
    let ra = guest.router_advert(8).expect("no router advertisement");
    let lease = guest
        .dhcp6_lease(Duration::from_secs(15))
        .expect("no DHCPv6 lease");
    let last = u128::from(lease.ip) & 0xffff;
    let in_range =
        lease.ip.segments()[..4] == [0xfd00, 0x63, 0, 0] && (0x100..=0x1ff).contains(&last);
    let fixed = lab.add_client(BRIDGE, FIXED_MAC);
    let lease = fixed
        .dhcp6_lease(Duration::from_secs(15))
        .expect("no lease for the host");
    Seen {
        advert: (ra.managed, ra.other, ra.lifetime, ra.prefixes),
        in_range,
        fixed: lease.ip.to_string(),
        aaaa: aaaa(&fixed).contains("fd00:63::10"),
    }
}

fn aaaa(client: &Client) -> String {
    let mut cmd = client.command("busybox");
    cmd.args(["nslookup", "-type=aaaa", "fixed6.v6.example", "fd00:63::1"]);
    let out = lab::exec::run_bounded(&mut cmd, Duration::from_secs(10)).unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_guest_sees_the_same_ipv6_service_from_virtmasq_as_from_libvirt() {
    let lab = Lab::new("ipv6_side_by_side");
    let lv = Libvirtd::start(&lab, None);
    let v6 = format!(
        "<domain name='v6.example'/><ip family='ipv6' address='fd00:63::1' prefix='64'><dhcp>\
         <range start='fd00:63::100' end='fd00:63::1ff'/>\
         <host id='00:03:00:01:{FIXED_MAC}' name='fixed6' ip='fd00:63::10'/></dhcp></ip>"
    );
    let v4 = "<range start='10.63.0.100' end='10.63.0.150'/>";
    lv.define(&served_network(NET, BRIDGE, "10.63.0.1", v4, &v6));
    lv.virsh_ok(&["net-start", NET]);
    assert!(!lv.dnsmasq_of(NET).is_empty(), "libvirt runs no dnsmasq");
    let from_libvirt = seen(&lab, "52:54:00:63:00:01");

    let cfg = write_config(lab.dir(), &lv.uri, "");
    let daemon = lab.spawn_host(&[BIN, "--config", cfg.to_str().unwrap(), "daemon"]);
    let pid_file = lab.dir().join("run/virtmasq.pid");
    let up = wait_until(Duration::from_secs(10), || {
        live_pid(&pid_file) == Some(daemon as i32)
    });
    assert!(up, "the daemon did not start:\n{}", lab.process_log(daemon));
    let out = run_agent(
        &["--config", cfg.to_str().unwrap(), "adopt", NET],
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours = lab.dir().join(format!("run/{NET}/pid/dnsmasq.pid"));
    assert!(
        wait_until(Duration::from_secs(10), || live_pid(&ours).is_some()),
        "virtmasq's dnsmasq did not take over:\n{}",
        lab.process_log(daemon)
    );
    assert!(lv.dnsmasq_of(NET).is_empty(), "libvirt still serves it");
    let from_virtmasq = seen(&lab, "52:54:00:63:00:02");
    eprintln!("libvirt:  {from_libvirt:?}\nvirtmasq: {from_virtmasq:?}");
    assert!(
        from_libvirt.in_range && from_libvirt.aaaa,
        "{from_libvirt:?}"
    );
    assert_eq!(from_libvirt.fixed, "fd00:63::10");
    assert_eq!(from_virtmasq, from_libvirt);
}
