//! IPv6 in system mode, in a booted Debian 12 with Debian's dnsmasq service: a network's IPv6
//! lines go into the system dnsmasq scoped to its bridge, and a client on another interface of
//! that dnsmasq sees no new router advertisement and no DHCPv6 answer. Where the `enable-ra`
//! DHCPv6 needs would make the system advertise its own IPv6 range too, the network is not
//! written into the system dnsmasq: the daemon serves it from a private instance instead.

mod container;
mod lab;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use container::{write_into, BootOptions, Container};
use lab::Lab;

const BIN: &str = env!("CARGO_BIN_EXE_virtmasq");
const BRIDGE: &str = "vqsys6";
const SITE: &str = "vqsite6";
const STATIC_MAC: &str = "52:54:00:98:00:0a";

fn node_xml() -> String {
    let duid = format!("00:03:00:01:{STATIC_MAC}");
    format!(
        "<node><network><name>lab</name><forward mode='nat'/><bridge name='{BRIDGE}'/>\
         <dns enable='no'/>\
         <ip address='10.97.0.1' prefix='24'/>\
         <ip family='ipv6' address='fd00:98::1' prefix='64'/><metadata>\
         <virtmasq:dhcp xmlns:virtmasq=\"http://virtmasq.org/xmlns/network/1.0\">\
         <virtmasq:range start=\"10.97.0.100\" end=\"10.97.0.150\" lease=\"1h\"/>\
         <virtmasq:range start=\"fd00:98::100\" end=\"fd00:98::1ff\" lease=\"1h\"/>\
         <virtmasq:host id=\"{duid}\" ip=\"fd00:98::10\" name=\"fixed6\"/>\
         <virtmasq:domain name=\"sys6.example\"/>\
         </virtmasq:dhcp></metadata></network></node>"
    )
}

/// A container with the agent, network 'lab' on [`BRIDGE`], and `site` as the
/// administrator's own dnsmasq fragment for [`SITE`].
fn boot<'l>(lab: &'l Lab, site: &'static str) -> Container<'l> {
    let opts = BootOptions {
        binds_ro: vec![(PathBuf::from(BIN), "/usr/local/bin/virtmasq".into())],
        setup: Some(Box::new(move |root: &Path| {
            write_into(root, "/etc/dnsmasq.d/site.conf", site, 0o644);
            let cfg = "mode = \"auto\"\n[libvirt]\nuri = \"test:///etc/virtmasq/node.xml\"\n\
                       [dnsmasq]\nno_ping = true\n";
            write_into(root, "/etc/virtmasq/virtmasq.toml", cfg, 0o644);
            write_into(root, "/etc/virtmasq/node.xml", &node_xml(), 0o644);
        })),
    };
    Container::boot(lab, &opts)
}

/// Both bridges carry IPv4 and IPv6 addresses; the site's is an interface the system
/// dnsmasq listens on.
fn lab(name: &str) -> Lab {
    let lab = Lab::new(name);
    lab.add_bridge(BRIDGE, "10.97.0.1/24");
    lab.add_ipv6(BRIDGE, "fd00:98::1/64");
    lab.add_bridge(SITE, "10.98.0.1/24");
    lab.add_ipv6(SITE, "fd00:99::1/64");
    lab
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The bridge is served: advertisements with M and O for its prefix, a lease from the range,
/// the host found by its DUID at its fixed address.
fn assert_bridge_served(lab: &Lab, why: &dyn Fn() -> String) {
    let guest = lab.add_client(BRIDGE, "52:54:00:98:00:01");
    let ra = guest
        .router_advert(5)
        .unwrap_or_else(|| panic!("no RA on {BRIDGE}\n{}", why()));
    assert!(ra.managed && ra.other, "{}", ra.text);
    assert_eq!(
        ra.prefixes,
        [("fd00:98::/64".to_owned(), false)],
        "{}",
        ra.text
    );
    let lease = guest.dhcp6_lease(Duration::from_secs(15));
    let ip = lease
        .unwrap_or_else(|| panic!("no DHCPv6 lease on {BRIDGE}\n{}", why()))
        .ip;
    let last = u128::from(ip) & 0xffff;
    assert!(
        ip.segments()[..4] == [0xfd00, 0x98, 0, 0] && (0x100..=0x1ff).contains(&last),
        "{ip}"
    );
    let fixed = lab.add_client(BRIDGE, STATIC_MAC);
    let lease = fixed
        .dhcp6_lease(Duration::from_secs(15))
        .expect("static host");
    assert_eq!(lease.ip.to_string(), "fd00:98::10");
}

/// The site's client: no router advertisement, and no DHCPv6 answer unless the site's own.
fn site_advert(lab: &Lab, mac: &str) -> Option<lab::RouterAdvert> {
    lab.add_client(SITE, mac).router_advert(3)
}

/// The site has IPv4 only in the system dnsmasq: the fragment's `enable-ra` and IPv6 ranges
/// change nothing on the site's interface.
#[test]
fn ipv6_fragment_is_scoped_to_the_bridge() {
    let lab = lab("system_ipv6_scoped");
    let site = "# the site's own LAN\nno-ping\ndhcp-range=10.98.0.100,10.98.0.150,1h\n";
    let ct = boot(&lab, site);
    let sync = ct.exec(&["virtmasq", "sync"]);
    assert!(sync.status.success(), "{}", text(&sync));
    let fragment =
        std::fs::read_to_string(ct.host_path("/etc/dnsmasq.d/virtmasq-lab.conf")).unwrap();
    assert!(fragment.contains("\nenable-ra\n"), "{fragment}");
    assert!(
        fragment.contains("\ndhcp-range=tag:vqsys6,fd00:98::100,fd00:98::1ff,64,3600\n"),
        "{fragment}"
    );
    assert_bridge_served(&lab, &|| ct.journal("dnsmasq"));
    let other = lab.add_client(SITE, "52:54:00:99:00:01");
    let ra = other.router_advert(3);
    assert!(ra.is_none(), "the system now advertises on {SITE}: {ra:?}");
    let answer = other.dhcp6_lease(Duration::from_secs(8));
    assert!(
        answer.is_none(),
        "the system now answers DHCPv6 on {SITE}: {answer:?}"
    );
    assert!(
        other.lease().is_some(),
        "the site's IPv4 is no longer served"
    );
}

/// The site serves DHCPv6 without advertisements (a router elsewhere sends them): an
/// `enable-ra` would start the system advertising there. `sync` refuses the network by name
/// and writes nothing; the daemon serves it from a private instance beside the system
/// dnsmasq, and the site's client still sees no advertisement.
#[test]
fn ipv6_that_would_widen_the_system_goes_to_a_private_instance() {
    let lab = lab("system_ipv6_private");
    let site = "# the site's own LAN\nno-ping\nbind-interfaces\n\
                dhcp-range=10.98.0.100,10.98.0.150,1h\n\
                dhcp-range=fd00:99::100,fd00:99::1ff,64,1h\n";
    let ct = boot(&lab, site);
    assert!(
        site_advert(&lab, "52:54:00:99:00:01").is_none(),
        "no RA before"
    );
    let sync = ct.exec(&["virtmasq", "sync"]);
    let out = text(&sync);
    assert!(
        out.contains("enable-ra") && out.contains("fd00:99::100"),
        "{out}"
    );
    assert!(
        !ct.host_path("/etc/dnsmasq.d/virtmasq-lab.conf").exists(),
        "{out}"
    );
    ct.exec_ok(&[
        "systemd-run",
        "--unit=virtmasq",
        "/usr/local/bin/virtmasq",
        "daemon",
    ]);
    // /run is the container's own tmpfs: asked from inside.
    let conf = ["test", "-e", "/run/virtmasq/lab/dnsmasq.conf"];
    assert!(
        Lab::wait_for(|| ct.exec(&conf).status.success(), Duration::from_secs(10)),
        "no private instance for 'lab':\n{}",
        ct.journal("virtmasq")
    );
    assert_bridge_served(&lab, &|| ct.journal("virtmasq"));
    let other = lab.add_client(SITE, "52:54:00:99:00:02");
    let ra = other.router_advert(3);
    assert!(ra.is_none(), "something now advertises on {SITE}: {ra:?}");
    let lease = other
        .dhcp6_lease(Duration::from_secs(15))
        .expect("the site's DHCPv6");
    assert!(lease.ip.segments()[..2] == [0xfd00, 0x99], "{}", lease.ip);
    assert!(!ct.host_path("/etc/dnsmasq.d/virtmasq-lab.conf").exists());
    ct.exec(&["systemctl", "stop", "virtmasq"]);
}

/// Leases survive a move from the system dnsmasq to a private instance: a guest that had a
/// DHCPv6 lease from the system keeps its address when the site starts serving DHCPv6 of its
/// own (so the network's `enable-ra` would now widen the system) and the daemon moves the
/// network to a private instance.
#[test]
fn a_dhcpv6_lease_survives_the_move_to_a_private_instance() {
    let lab = lab("system_ipv6_leases");
    let site = "# the site's own LAN\nno-ping\nbind-interfaces\n\
                dhcp-range=10.98.0.100,10.98.0.150,1h\n";
    let ct = boot(&lab, site);
    let sync = ct.exec(&["virtmasq", "sync"]);
    assert!(sync.status.success(), "{}", text(&sync));
    let fragment = ct.host_path("/etc/dnsmasq.d/virtmasq-lab.conf");
    assert!(fragment.exists(), "{}", text(&sync));
    let guest = lab.add_client(BRIDGE, "52:54:00:98:00:05");
    let before = guest
        .dhcp6_lease(Duration::from_secs(15))
        .expect("no DHCPv6 lease from the system dnsmasq")
        .ip;
    let site6 = format!("{site}dhcp-range=fd00:99::100,fd00:99::1ff,64,1h\n");
    ct.write_file("/etc/dnsmasq.d/site.conf", &site6, 0o644);
    ct.exec_ok(&[
        "systemd-run",
        "--unit=virtmasq",
        "/usr/local/bin/virtmasq",
        "daemon",
    ]);
    let conf = ["test", "-e", "/run/virtmasq/lab/dnsmasq.conf"];
    assert!(
        Lab::wait_for(
            || ct.exec(&conf).status.success() && !fragment.exists(),
            Duration::from_secs(10)
        ),
        "the network did not move to a private instance:\n{}",
        ct.journal("virtmasq")
    );
    let leases = ct.exec_ok(&["cat", "/var/lib/virtmasq/leases/lab.leases"]);
    assert!(
        leases.contains(&before.to_string()),
        "not carried:\n{leases}"
    );
    let after = guest.dhcp6_lease(Duration::from_secs(15));
    let after = after
        .unwrap_or_else(|| {
            panic!(
                "no DHCPv6 lease from the private dnsmasq:\n{leases}\n{}",
                ct.journal("virtmasq")
            )
        })
        .ip;
    assert_eq!(after, before, "the guest got another address");
    ct.exec(&["systemctl", "stop", "virtmasq"]);
}
