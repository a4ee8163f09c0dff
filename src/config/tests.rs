use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("test.toml"))
}

#[test]
fn empty_file_gives_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c.paths.dnsmasq, Path::new("/usr/sbin/dnsmasq"));
    assert_eq!(c.libvirt.uri, "qemu:///system");
    assert!(c.networks.is_empty());
}

#[test]
fn full_network_section() {
    let c = parse(
        r#"
[paths]
state_dir = "/tmp/s"
[networks.lab]
domain = "lab.example"
dns = false
ranges = [{ start = "10.77.0.100", end = "10.77.0.150", lease = "2h" }]
hosts = [{ mac = "52-54-00-AA-BB-CC", ip = "10.77.0.10", name = "node1" }]
"#,
    )
    .unwrap();
    assert_eq!(c.paths.state_dir, Path::new("/tmp/s"));
    assert_eq!(c.paths.run_dir, Path::new("/run/virtmasq"));
    let net = &c.networks[&"lab".parse().unwrap()];
    let intent = net.intent();
    assert!(!intent.dns);
    assert_eq!(
        intent.ranges[0].lease,
        Some(crate::model::LeaseTime::Seconds(7200))
    );
    assert_eq!(intent.hosts[0].mac.to_string(), "52:54:00:aa:bb:cc");
}

/// Each bad file names the problem, and where toml can tell, the line.
#[test]
fn errors_name_the_input_and_line() {
    let cases: &[(&str, &[&str])] = &[
        ("[paths]\nstate_dri = \"/x\"\n", &["line 2", "state_dri"]),
        ("[networks.\"a,b\"]\n", &["network name", "a,b"]),
        ("[networks.\"../x\"]\n", &["network name", "../x"]),
        (
            "[networks.lab]\nhosts = [{ mac = \"zz:00:00:00:00:00\" }]\n",
            &["line 2", "zz:00:00:00:00:00"],
        ),
        (
            "[networks.lab]\nranges = [{ start = \"10.0.0.9\", end = \"10.0.0.2\" }]\n",
            &["line 2", "start is after its end"],
        ),
        (
            "[networks.lab]\nranges = [{ start = \"10.0.0.2\", end = \"10.0.0.9\", lease = \"5x\" }]\n",
            &["line 2", "5x"],
        ),
        ("[networks.lab]\ndomain = \"a b\"\n", &["line 2", "DNS name"]),
        ("[libvirt\nuri = 1\n", &["line 1"]),
        (
            "[paths]\nstate_dir = \"/var/lib/a #b\"\n",
            &["line 2", "state_dir", "/var/lib/a #b", "'#'"],
        ),
        (
            "[paths]\nrun_dir = \"/run/a,b\"\n",
            &["line 2", "run_dir", "/run/a,b", "','"],
        ),
        (
            "[paths]\nconf_dir = \"/etc/d q\\\"\"\n",
            &["line 2", "conf_dir", "invalid path"],
        ),
        (
            "[filter]\nhostsdir = \"/var/lib/h\\\\x\"\n",
            &["line 2", "hostsdir", "invalid path"],
        ),
    ];
    for (text, wants) in cases {
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains("test.toml"), "{err}");
        for want in *wants {
            assert!(err.contains(want), "{text:?}: {err:?} lacks {want:?}");
        }
    }
}

#[test]
fn missing_default_file_is_not_an_error_but_missing_explicit_is() {
    let missing = Path::new("/nonexistent/virtmasq.toml");
    assert!(Config::load_or_default(missing, false).is_ok());
    let err = Config::load_or_default(missing, true).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/virtmasq.toml"));
}

#[test]
fn shipped_default_configuration_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf.d/virtmasq.toml");
    let c = Config::load(&path).unwrap();
    assert_eq!(c.libvirt.uri, "qemu:///system");
}

/// IPv6 ranges and DHCPv6 hosts sit beside the IPv4 ones in `ranges` and `hosts`, told apart
/// by their addresses, and a mistake names its line.
#[test]
fn ipv6_ranges_and_hosts() {
    let c = parse(
        r#"
[networks.lab]
ranges = [
  { start = "10.77.0.100", end = "10.77.0.150" },
  { start = "fd00:77::100", end = "fd00:77::1ff", lease = "2h" },
]
hosts = [
  { mac = "52:54:00:aa:bb:cc", ip = "10.77.0.10" },
  { id = "0:1:0:1:AB:cd", ip = "fd00:77::10", name = "node6", lease = "1d" },
  { mac = "52:54:00:aa:bb:cd", ip = "fd00:77::11" },
]
"#,
    )
    .unwrap();
    let section = &c.networks[&"lab".parse().unwrap()];
    let intent = section.intent();
    assert_eq!((intent.ranges.len(), intent.ranges6.len()), (1, 1));
    assert_eq!((intent.hosts.len(), intent.hosts6.len()), (1, 2));
    let h = &intent.hosts6[0];
    assert_eq!(h.id.as_ref().unwrap().as_str(), "00:01:00:01:ab:cd");
    assert_eq!(h.lease, Some(crate::model::LeaseTime::Seconds(86_400)));
    assert_eq!(NetworkConfig::from_intent(&intent), *section);
    for (text, needles) in [
        (
            "[networks.lab]\nranges = [{ start = \"fd00::9\", end = \"10.0.0.9\" }]\n",
            &["line 2", "different address families"][..],
        ),
        (
            "[networks.lab]\nhosts = [{ id = \"00:01\" }]\n",
            &["line 2", "needs an IPv6 ip"],
        ),
        (
            "[networks.lab]\nhosts = [{ id = \"00-01\", ip = \"fd00::5\" }]\n",
            &["line 2", "DUID"],
        ),
    ] {
        let err = format!("{:#}", parse(text).unwrap_err());
        for n in needles {
            assert!(err.contains(n), "{text}\n{err}\nmissing {n:?}");
        }
    }
}
