use std::path::Path;

use super::*;

fn net(name: &str, active: bool, body: &str) -> LibvirtNetwork {
    LibvirtNetwork {
        name: name.into(),
        active,
        xml: format!("<network><name>{name}</name>{body}</network>"),
    }
}

const META: &str = r#"<metadata><virtmasq:dhcp xmlns:virtmasq="http://virtmasq.org/xmlns/network/1.0">
<virtmasq:range start="10.77.0.100" end="10.77.0.150"/></virtmasq:dhcp></metadata>"#;

fn cfg(text: &str) -> Config {
    Config::parse(text, Path::new("t.toml")).unwrap()
}

#[test]
fn sorts_networks_into_served_and_skipped() {
    let nets = vec![
        net(
            "meta",
            true,
            &format!("{META}<bridge name='vqbr0'/><dns enable='no'/><ip address='10.77.0.1' prefix='24'/>"),
        ),
        net(
            "conf",
            true,
            "<bridge name='vqbr1'/><dns enable='no'/><ip address='10.78.0.1' prefix='24'/>",
        ),
        net(
            "libvirts",
            true,
            "<bridge name='virbr0'/><ip address='192.168.122.1' prefix='24'><dhcp><range start='192.168.122.2' end='192.168.122.254'/></dhcp></ip>",
        ),
        net("down", false, "<bridge name='vqbr2'/>"),
        net("nointent", true, "<bridge name='vqbr3'/><dns enable='no'/><ip address='10.79.0.1' prefix='24'/>"),
        net(
            "outside",
            true,
            "<bridge name='vqbr4'/><dns enable='no'/><ip address='10.80.0.1' prefix='24'/>",
        ),
    ];
    let c = cfg(r#"
[networks.conf]
ranges = [{ start = "10.78.0.10", end = "10.78.0.20" }]
[networks.outside]
ranges = [{ start = "10.99.0.10", end = "10.99.0.20" }]
"#);
    let d = desired(&nets, &c);
    let served: Vec<_> = d
        .served
        .iter()
        .map(|s| (s.network.name.as_str(), s.source))
        .collect();
    assert_eq!(
        served,
        vec![
            ("conf", IntentSource::Config),
            ("meta", IntentSource::Metadata)
        ]
    );
    let skip = |n: &str| {
        d.skipped
            .iter()
            .find(|(name, _)| name == n)
            .unwrap()
            .1
            .clone()
    };
    assert_eq!(skip("libvirts"), Skip::ServedByLibvirt);
    assert_eq!(skip("down"), Skip::Inactive);
    assert_eq!(skip("nointent"), Skip::NoIntent);
    let Skip::Invalid(msg) = skip("outside") else {
        panic!()
    };
    assert!(
        msg.contains("outside") && msg.contains("10.99.0.10-10.99.0.20"),
        "{msg}"
    );
}

#[test]
fn hostile_xml_is_refused_with_its_value() {
    let c = cfg("");
    let intent = "<dns enable='no'/><ip address='10.0.0.1' prefix='24'/><metadata>\
        <v:dhcp xmlns:v='http://virtmasq.org/xmlns/network/1.0'/></metadata>";
    let bridge = "<bridge name='br0'/>";
    for (name, extra, want) in [
        ("a\nb", bridge.to_owned(), "a\\nb".to_owned()),
        ("a,b", bridge.to_owned(), "a,b".to_owned()),
        (
            "x",
            format!("<bridge name='{}'/>", "b".repeat(40)),
            "b".repeat(40),
        ),
    ] {
        let xml = format!("<network><name>{name}</name>{extra}{intent}</network>");
        let Err(Skip::Invalid(msg)) = managed(&xml, &c) else {
            panic!("{xml}")
        };
        assert!(msg.contains(&want), "{msg} lacks {want}");
        // Without virtmasq's intent the same network is simply not virtmasq's.
        let xml = format!("<network><name>{name}</name>{extra}</network>");
        assert_eq!(managed(&xml, &c).unwrap_err(), Skip::NoIntent, "{xml}");
    }
}
