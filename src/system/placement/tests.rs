use super::*;
use crate::model::{DhcpIntent, DhcpRange, Ipv4Range};

fn effective(conf: &str) -> EffectiveConfig {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    std::fs::write(dir.path().join("etc/dnsmasq.conf"), conf).unwrap();
    EffectiveConfig::read(dir.path())
}

fn network(bridge: &str) -> ManagedNetwork {
    let range = Ipv4Range::new("10.50.0.10".parse().unwrap(), "10.50.0.20".parse().unwrap());
    let intent = DhcpIntent {
        ranges6: Vec::new(),
        hosts6: Vec::new(),
        ranges: vec![DhcpRange {
            range: range.unwrap(),
            lease: None,
        }],
        hosts: vec![],
        domain: None,
        dns: true,
        pxe: None,
    };
    let subnets = vec!["10.50.0.1/24".parse().unwrap()];
    ManagedNetwork::new(
        "lab".parse().unwrap(),
        bridge.parse().unwrap(),
        subnets,
        intent,
    )
    .unwrap()
}

#[test]
fn each_network_is_served_by_what_can_serve_it() {
    let coexist = effective("bind-interfaces\nexcept-interface=virbr*\n");
    assert_eq!(place(&network("vqbr0"), &coexist, None), Placement::System);
    let Placement::Private(r) = place(&network("virbr0"), &coexist, None) else {
        panic!()
    };
    assert!(r.why.contains("except-interface=virbr*"), "{}", r.why);
    assert!(
        !r.dns_elsewhere,
        "except-interface keeps the system's DNS off the bridge"
    );

    // A setting a shared instance cannot scope: private, with DNS left to the system.
    let dynamic = effective("bind-dynamic\n");
    let Placement::Private(r) = place(&network("vqbr0"), &dynamic, Some("proxy".into())) else {
        panic!()
    };
    assert_eq!(r.why, "proxy");
    assert!(r.dns_elsewhere);
    let no_dhcp = effective("bind-interfaces\nno-dhcp-interface=vqbr0\n");
    let Placement::Private(r) = place(&network("vqbr0"), &no_dhcp, None) else {
        panic!()
    };
    assert!(r.why.contains("no-dhcp-interface=vqbr0") && r.dns_elsewhere);

    // A default-mode system dnsmasq holds udp/67 on every address: nothing can serve it.
    let wildcard = effective("except-interface=virbr0\n");
    let Placement::Nowhere(why) = place(&network("virbr0"), &wildcard, None) else {
        panic!()
    };
    assert!(why.contains("except-interface=virbr0") && why.contains("bind-interfaces"));
    assert_eq!(place(&network("vqbr0"), &wildcard, None), Placement::System);
}

/// A network with DHCPv6 needs `enable-ra`: it goes to the system dnsmasq only where that
/// changes nothing elsewhere (no IPv6 range of the system's own would start advertising).
#[test]
fn dhcpv6_goes_private_where_enable_ra_would_widen_the_system() {
    let intent = DhcpIntent {
        ranges6: vec![crate::model::Dhcp6Range {
            range: crate::model::Ipv6Range::new(
                "fd00:50::100".parse().unwrap(),
                "fd00:50::1ff".parse().unwrap(),
            )
            .unwrap(),
            lease: None,
        }],
        ..DhcpIntent::default()
    };
    let v6 = |intent: DhcpIntent| {
        ManagedNetwork::dual(
            "lab6".parse().unwrap(),
            "vqbr6".parse().unwrap(),
            vec![],
            vec!["fd00:50::1/64".parse().unwrap()],
            intent,
        )
        .unwrap()
    };
    let dhcp6 = v6(intent);
    let slaac = v6(DhcpIntent::default());
    let theirs = "bind-interfaces\ndhcp-range=tag:eth1,2001:db8:1::100,2001:db8:1::1ff,64\n";
    for (conf, net, system) in [
        ("bind-interfaces\n", &dhcp6, true),
        (
            "bind-interfaces\ndhcp-range=2001:db8:1::,ra-only\n",
            &dhcp6,
            true,
        ),
        (
            "bind-interfaces\ndhcp-range=::,constructor:eth1,ra-stateless\n",
            &dhcp6,
            true,
        ),
        (&format!("{theirs}enable-ra\n"), &dhcp6, true),
        (theirs, &slaac, true),
        (theirs, &dhcp6, false),
        (
            "bind-interfaces\ndhcp-range=::1,::400,constructor:eth1\n",
            &dhcp6,
            false,
        ),
    ] {
        match place(net, &effective(conf), None) {
            Placement::System => assert!(system, "{conf}"),
            Placement::Private(r) => {
                assert!(!system, "{conf}: {}", r.why);
                assert!(r.why.contains("enable-ra"), "{}", r.why);
            }
            Placement::Nowhere(why) => panic!("{conf}: {why}"),
        }
    }
    // With dns = "no", a host known by its name alone would put that name in the host's DNS.
    let by_name = crate::model::StaticHost6::new(
        None,
        None,
        Some("byname".parse().unwrap()),
        "fd00:50::10".parse().unwrap(),
        None,
    )
    .unwrap();
    let mut quiet = v6(DhcpIntent {
        hosts6: vec![by_name],
        dns: false,
        ..DhcpIntent::default()
    });
    let Placement::Private(r) = place(&quiet, &effective("bind-interfaces\n"), None) else {
        panic!()
    };
    assert!(
        r.why.contains("name byname") && r.why.contains("dns"),
        "{}",
        r.why
    );
    quiet.dns = true;
    assert_eq!(
        place(&quiet, &effective("bind-interfaces\n"), None),
        Placement::System
    );
}
