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
