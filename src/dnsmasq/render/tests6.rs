//! The IPv6 lines, as text and as real dnsmasq reads them.

use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::dnsmasq::fragment::{render_fragment, render_hosts, FragmentContext};
use crate::model::{
    Dhcp6Range, DhcpIntent, DhcpRange, Ipv4Range, Ipv6Net, Ipv6Range, LeaseTime, StaticHost6,
};

fn range6(a: &str, b: &str, lease: Option<LeaseTime>) -> Dhcp6Range {
    Dhcp6Range {
        range: Ipv6Range::new(a.parse().unwrap(), b.parse().unwrap()).unwrap(),
        lease,
    }
}

/// IPv4 with a range, a DHCPv6 subnet with a range and hosts, a second DHCPv6 subnet with a
/// host alone, a SLAAC /64, a SLAAC /48 and a /120 without DHCPv6.
fn dual() -> ManagedNetwork {
    let subnets6: Vec<Ipv6Net> = [
        "fd00:77::1/64",
        "fd00:78::1/64",
        "fd00:79::1/64",
        "2001:db8:5:6::1/48",
        "fd00:7a::1/120",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    let intent = DhcpIntent {
        ranges: vec![DhcpRange {
            range: Ipv4Range::new(
                "10.77.0.100".parse().unwrap(),
                "10.77.0.150".parse().unwrap(),
            )
            .unwrap(),
            lease: None,
        }],
        ranges6: vec![range6(
            "fd00:77::100",
            "fd00:77::1ff",
            Some(LeaseTime::Seconds(7200)),
        )],
        hosts6: vec![
            StaticHost6::new(
                Some("00:01:00:01:2c:ab:cd:ef:52:54:00:00:00:01".parse().unwrap()),
                None,
                Some("node6".parse().unwrap()),
                "fd00:77::10".parse().unwrap(),
                Some(LeaseTime::Infinite),
            )
            .unwrap(),
            StaticHost6::new(
                None,
                Some("52:54:00:00:00:02".parse().unwrap()),
                None,
                "fd00:78::20".parse().unwrap(),
                None,
            )
            .unwrap(),
            StaticHost6::new(
                None,
                None,
                Some("byname".parse().unwrap()),
                "fd00:77::30".parse().unwrap(),
                None,
            )
            .unwrap(),
        ],
        domain: Some("lab.example".parse().unwrap()),
        dns: true,
        ..DhcpIntent::default()
    };
    ManagedNetwork::dual(
        "lab".parse().unwrap(),
        "vqbr0".parse().unwrap(),
        vec!["10.77.0.1/24".parse().unwrap()],
        subnets6,
        intent,
    )
    .unwrap()
}

fn paths() -> InstancePaths {
    InstancePaths::new(Path::new("/run/v"), Path::new("/var/lib/v"), "lab")
}

#[test]
fn each_ipv6_subnet_gets_what_libvirt_gives_it() {
    let n = dual();
    assert_eq!(
        range6_lines(&n, None),
        "dhcp-range=fd00:77::100,fd00:77::1ff,64,7200\n\
         dhcp-range=fd00:78::,static,64\n\
         dhcp-range=fd00:79::,ra-only,64\n\
         dhcp-range=2001:db8:5:6::,ra-only,64\n\
         enable-ra\n"
    );
    assert_eq!(
        range6_lines(&n, Some(&n.bridge)),
        "dhcp-range=tag:vqbr0,fd00:77::100,fd00:77::1ff,64,7200\n\
         dhcp-range=tag:vqbr0,fd00:78::,static,64\n\
         dhcp-range=tag:vqbr0,fd00:79::,ra-only,64\n\
         dhcp-range=tag:vqbr0,2001:db8:5:6::,ra-only,64\n\
         enable-ra\n"
    );
    assert_eq!(
        hosts_file(&n),
        "id:00:01:00:01:2c:ab:cd:ef:52:54:00:00:00:01,node6,[fd00:77::10],infinite\n\
         52:54:00:00:00:02,[fd00:78::20]\n\
         byname,[fd00:77::30]\n"
    );
    let slaac_only = ManagedNetwork::dual(
        "s".parse().unwrap(),
        "vqbr1".parse().unwrap(),
        vec![],
        vec!["fd00:1::1/64".parse().unwrap()],
        DhcpIntent::default(),
    )
    .unwrap();
    assert_eq!(
        range6_lines(&slaac_only, None),
        "dhcp-range=fd00:1::,ra-only,64\n"
    );
}

#[test]
fn dhcp_lease_max_counts_ipv6_and_fits_dnsmasq_s_int() {
    let r = render_private(&dual(), &paths(), &RenderOptions::default());
    // 254 IPv4 + 256 in the range + 65,536 for each of the two DHCPv6 subnets' hosts.
    assert!(r.conf.contains("\ndhcp-lease-max=131582\n"), "{}", r.conf);
    let mut huge = dual();
    huge.ranges6 = vec![range6("fd00:77::2", "fd00:77::ffff:ffff:ffff:ffff", None)];
    let r = render_private(&huge, &paths(), &RenderOptions::default());
    assert!(
        r.conf.contains("\ndhcp-lease-max=2147483647\n"),
        "{}",
        r.conf
    );
}

/// The system fragment: every IPv6 range tagged with the bridge, a domain for each IPv6
/// subnet, and with `dns = "no"` no names in the hosts file but the one a host is known by.
#[test]
fn fragment_scopes_ipv6_and_keeps_a_name_only_host_findable() {
    let ctx = FragmentContext {
        add_interface: false,
        hosts_file: "/var/lib/virtmasq/system/lab.hosts".into(),
        tag_hosts: true,
        extra_lines: vec![],
    };
    let text = render_fragment(&dual(), &ctx);
    assert!(
        text.contains("\ndhcp-range=tag:vqbr0,fd00:77::100,fd00:77::1ff,64,7200\n"),
        "{text}"
    );
    assert!(
        text.contains("\ndomain=lab.example,fd00:77::/64\n"),
        "{text}"
    );
    assert!(
        text.contains("\ndomain=lab.example,2001:db8:5::/48\n"),
        "{text}"
    );
    for line in text.lines().filter(|l| l.starts_with("dhcp-range=")) {
        assert!(line.starts_with("dhcp-range=tag:vqbr0,"), "{line}");
    }
    let mut no_dns = dual();
    no_dns.dns = false;
    assert_eq!(
        render_hosts(&no_dns, true),
        "tag:vqbr0,id:00:01:00:01:2c:ab:cd:ef:52:54:00:00:00:01,[fd00:77::10],infinite\n\
         tag:vqbr0,52:54:00:00:00:02,[fd00:78::20]\n\
         tag:vqbr0,byname,[fd00:77::30]\n"
    );
}

/// Real dnsmasq accepts every line: the private instance, its hosts file, the fragment.
#[test]
fn dnsmasq_accepts_the_ipv6_lines() {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let paths = InstancePaths::new(dir.path(), dir.path(), "lab");
    let mut net = dual();
    net.settings.isolated = true;
    let r = render_private(&net, &paths, &RenderOptions::default());
    assert!(r.conf.contains("\nra-param=vqbr0,0,0\n"), "{}", r.conf);
    std::fs::create_dir_all(paths.hosts.parent().unwrap()).unwrap();
    std::fs::write(&paths.hosts, &r.hosts).unwrap();
    let conf = r.conf.replace(
        &format!("dhcp-hostsfile={}", paths.hosts.display()),
        &r.hosts
            .lines()
            .map(|l| format!("dhcp-host={l}"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let run_as = crate::dnsmasq::process::RunAs::lookup("nobody").unwrap();
    let dnsmasq = std::path::Path::new("dnsmasq");
    crate::dnsmasq::validate::check_text(dnsmasq, dir.path(), &conf, run_as)
        .unwrap_or_else(|e| panic!("{e}\n{conf}"));
    let ctx = FragmentContext {
        add_interface: false,
        hosts_file: paths.hosts.clone(),
        tag_hosts: true,
        extra_lines: vec![],
    };
    let fragment = render_fragment(&net, &ctx);
    let tagged: String = render_hosts(&net, true)
        .lines()
        .map(|l| format!("dhcp-host={l}\n"))
        .collect();
    let text = format!("{fragment}{tagged}");
    crate::dnsmasq::validate::check_text(dnsmasq, dir.path(), &text, run_as)
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
}
