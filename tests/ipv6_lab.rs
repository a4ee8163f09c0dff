//! IPv6 in private mode end to end: a libvirt network with IPv4 and IPv6 `<ip>` elements from
//! the test driver, the agent in the lab's host namespace, its own dnsmasq on the bridge, and
//! real IPv6 clients in client namespaces: `rdisc6` for router advertisements, `dhclient -6`
//! for DHCPv6 leases.

mod lab;
mod support;

use std::time::Duration;

use lab::Lab;
use support::*;

const BRIDGE: &str = "vq6a0";
const STATIC_MAC: &str = "52:54:00:96:00:0a";
/// A DHCPv6 host given by MAC (dnsmasq learns a DHCPv6 client's MAC from the neighbour table).
const BY_MAC: &str = "52:54:00:96:00:0b";

/// The network: IPv4 10.96.0.1/24, DHCPv6 on fd00:96::/64 (a range and a host by DUID),
/// SLAAC on fd00:97::/64.
fn node_xml(dir: &std::path::Path, dhcp: &str) -> String {
    let ns = "http://virtmasq.org/xmlns/network/1.0";
    let xml = format!(
        "<node><network><name>lab6</name><bridge name='{BRIDGE}'/><dns enable='no'/>\
         <ip address='10.96.0.1' prefix='24'/>\
         <ip family='ipv6' address='fd00:96::1' prefix='64'/>\
         <ip family='ipv6' address='fd00:97::1' prefix='64'/>\
         <metadata><virtmasq:dhcp xmlns:virtmasq='{ns}' dns='yes'>{dhcp}</virtmasq:dhcp>\
         </metadata></network></node>"
    );
    let path = dir.join("node.xml");
    std::fs::write(&path, xml).unwrap();
    format!("test://{}", path.display())
}

/// A lab whose bridge carries the network's three addresses, and the agent serving it.
fn lab_with_agent(name: &str) -> Lab {
    let lab = Lab::new(name);
    lab.add_bridge(BRIDGE, "10.96.0.1/24");
    lab.add_ipv6(BRIDGE, "fd00:96::1/64");
    lab.add_ipv6(BRIDGE, "fd00:97::1/64");
    let duid = format!("00:03:00:01:{STATIC_MAC}");
    let dhcp = format!(
        r#"<virtmasq:range start="10.96.0.100" end="10.96.0.150"/>
           <virtmasq:range start="fd00:96::100" end="fd00:96::1ff" lease="2h"/>
           <virtmasq:host id="{duid}" ip="fd00:96::10" name="fixed6" lease="1h"/>
           <virtmasq:host mac="{BY_MAC}" ip="fd00:96::11"/>
           <virtmasq:domain name="lab6.example"/>"#
    );
    let uri = node_xml(lab.dir(), &dhcp);
    let cfg = write_config(lab.dir(), &uri, "");
    lab.spawn_host(&[BIN, "--config", cfg.to_str().unwrap(), "daemon"]);
    let pid_file = lab.dir().join("run/lab6/pid/dnsmasq.pid");
    assert!(
        wait_until(Duration::from_secs(10), || live_pid(&pid_file).is_some()),
        "the agent did not start a dnsmasq for 'lab6'"
    );
    lab
}

#[test]
fn guests_get_router_advertisements_dhcpv6_leases_and_their_fixed_address() {
    let lab = lab_with_agent("ipv6_private");
    let conf = std::fs::read_to_string(lab.dir().join("run/lab6/dnsmasq.conf")).unwrap();
    eprintln!("{conf}");
    let guest = lab.add_client(BRIDGE, "52:54:00:96:00:01");
    let ra = guest
        .router_advert(5)
        .expect("no router advertisement on the bridge");
    // DHCPv6 on fd00:96::/64: M and O set, its prefix not for SLAAC; fd00:97::/64 is.
    assert!(ra.managed && ra.other, "{}", ra.text);
    // The network is isolated (no <forward>): no default route through the host.
    assert_eq!(ra.lifetime, 0, "{}", ra.text);
    let mut prefixes = ra.prefixes.clone();
    prefixes.sort();
    assert_eq!(
        prefixes,
        [
            ("fd00:96::/64".to_owned(), false),
            ("fd00:97::/64".to_owned(), true)
        ],
        "{}",
        ra.text
    );
    let lease = guest
        .dhcp6_lease_as(Duration::from_secs(15), Some("dyn6"))
        .expect("no DHCPv6 lease for a guest on the bridge");
    let last = u128::from(lease.ip) & 0xffff;
    assert!(
        lease.ip.segments()[..4] == [0xfd00, 0x96, 0, 0] && (0x100..=0x1ff).contains(&last),
        "lease {} outside fd00:96::100-1ff",
        lease.ip
    );
    assert_eq!(
        lease.valid_secs, 7200,
        "the range's lease time (dhclient asks for 7500)"
    );
    let dynamic = lease.ip;
    let fixed = lab.add_client(BRIDGE, STATIC_MAC);
    let lease = fixed
        .dhcp6_lease(Duration::from_secs(15))
        .expect("no DHCPv6 lease for the static host");
    assert_eq!(lease.ip.to_string(), "fd00:96::10");
    // dhclient asks for 7500 s and dnsmasq gives the shorter: the host's own hour, not the
    // range's two.
    assert_eq!(lease.valid_secs, 3600, "the host's own lease time");
    // The DHCPv6 client's name resolves in the network's domain, both ways, on the bridge.
    let ask = |kind: &str, what: &str| {
        let mut cmd = fixed.command("busybox");
        cmd.args(["nslookup", &format!("-type={kind}"), what, "fd00:96::1"]);
        let out = lab::exec::run_bounded(&mut cmd, Duration::from_secs(10)).unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let aaaa = ask("aaaa", "fixed6.lab6.example");
    assert!(aaaa.contains("fd00:96::10"), "{aaaa}");
    // And so does a dynamic client's, by the name it sent.
    let aaaa = ask("aaaa", "dyn6.lab6.example");
    assert!(aaaa.contains(&dynamic.to_string()), "{aaaa}");
    let ip: std::net::Ipv6Addr = "fd00:96::10".parse().unwrap();
    let nibbles: Vec<String> = format!("{:032x}", u128::from(ip))
        .chars()
        .rev()
        .map(String::from)
        .collect();
    let ptr = ask("ptr", &format!("{}.ip6.arpa", nibbles.join(".")));
    assert!(ptr.contains("fixed6.lab6.example"), "{ptr}");
    let by_mac = lab.add_client(BRIDGE, BY_MAC);
    let lease = by_mac
        .dhcp6_lease(Duration::from_secs(15))
        .expect("no DHCPv6 lease for the host given by MAC");
    assert_eq!(lease.ip.to_string(), "fd00:96::11");
    // IPv4 on the same bridge is still served.
    let v4 = lab.add_client(BRIDGE, "52:54:00:96:00:02");
    assert!(v4.lease().is_some(), "no IPv4 lease beside IPv6");
}
