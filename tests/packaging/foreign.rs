//! Do no harm to libvirt: networks that libvirt serves itself start and stop the same with the
//! package installed (its hook in libvirtd's hook directory, the service running) as without
//! it. The networks are valid libvirt definitions from libvirt's documented network XML
//! format, chosen for what virtmasq refuses in networks it serves itself.

use std::collections::BTreeMap;

use super::container::{write_into, BootOptions, Container, Variant};
use super::lab::Lab;
use super::{run, DEB_INSIDE};

/// libvirt's DNSmasq options namespace.
const DNSMASQ_NS: &str = "http://libvirt.org/schemas/network/dnsmasq/1.0";

/// The system dnsmasq set up the usual way to live beside libvirt's own instances: bound to
/// its interfaces only, never to libvirt's bridges (all named `vqf*` here).
const COEXIST: &str = "bind-interfaces\nexcept-interface=vqf*\nno-ping\n\
    dhcp-range=10.98.0.100,10.98.0.150,1h\n";

/// The host's own network, served by the system dnsmasq.
const SITE: &str = "vqsite0";

/// `(name, bridge, body)`: each network's `<name>`, the bridge libvirt creates and the rest
/// of its definition. Every one of them is served by libvirt's own dnsmasq (or needs none).
fn networks() -> Vec<(&'static str, &'static str, String)> {
    let v4 = |n: u8, dhcp: &str| {
        format!(
            "<ip address='10.120.{n}.1' prefix='24'><dhcp><range start='10.120.{n}.100' \
             end='10.120.{n}.150'/>{dhcp}</dhcp></ip>"
        )
    };
    vec![
        // IPv6 DHCP with a host given by name only, beside IPv4.
        (
            "vqf-v6",
            "vqf0",
            format!(
                "<forward mode='nat'/>{}<ip family='ipv6' address='fd00:120::1' prefix='64'>\
                 <dhcp><range start='fd00:120::10' end='fd00:120::ff'/>\
                 <host name='v6only' ip='fd00:120::5'/>\
                 <host id='0:3:0:1:0:16:3e:11:22:33' name='v6duid' ip='fd00:120::6'/>\
                 </dhcp></ip>",
                v4(0, "")
            ),
        ),
        // Names libvirt allows and virtmasq refuses for networks it serves.
        ("vqf with space", "vqf1", v4(1, "")),
        ("vqf.dots_and-dashes", "vqf2", v4(2, "")),
        ("vqf,comma#hash", "vqf3", v4(3, "")),
        // A host name with a space, a per-host lease, a range lease.
        (
            "vqf-hosts",
            "vqf4",
            "<ip address='10.120.4.1' netmask='255.255.255.0'><dhcp>\
             <range start='10.120.4.100' end='10.120.4.150'><lease expiry='2' unit='hours'/>\
             </range><host mac='52:54:00:12:04:01' name='a host' ip='10.120.4.10'/>\
             <host mac='52:54:00:12:04:02' name='leased' ip='10.120.4.11'>\
             <lease expiry='0'/></host></dhcp></ip>"
                .into(),
        ),
        // TFTP root with a space, a bootp URL with '&'.
        (
            "vqf-boot",
            "vqf5",
            "<ip address='10.120.5.1' prefix='24'><tftp root='/srv/tftp root'/><dhcp>\
             <range start='10.120.5.100' end='10.120.5.150'/>\
             <bootp file='http://10.120.5.1/boot.ipxe?a=1&amp;b=2' server='10.120.5.1'/>\
             </dhcp></ip>"
                .into(),
        ),
        // Routed and open networks.
        (
            "vqf-route",
            "vqf6",
            format!("<forward mode='route'/>{}", v4(6, "")),
        ),
        (
            "vqf-open",
            "vqf7",
            format!("<forward mode='open'/>{}", v4(7, "")),
        ),
        // Isolated, with DNS records, forwarders, a domain, MTU and dnsmasq options.
        (
            "vqf-dns",
            "vqf8",
            format!(
                "<mtu size='9000'/><domain name='vqf.example' localOnly='yes'/>\
                 <dns forwardPlainNames='no'><forwarder domain='corp.example' addr='127.0.0.53'/>\
                 <txt name='example' value='a, b #c'/>\
                 <host ip='10.120.8.5'><hostname>alias</hostname></host>\
                 <srv service='name' protocol='tcp' domain='test' target='.' port='1024' \
                 priority='10' weight='10'/></dns>{}\
                 <dnsmasq:options xmlns:dnsmasq='{DNSMASQ_NS}'>\
                 <dnsmasq:option value='log-queries'/></dnsmasq:options>",
                v4(8, "")
            ),
        ),
        // DNS only, no DHCP.
        (
            "vqf-dnsonly",
            "vqf9",
            "<ip address='10.120.9.1' prefix='24'/>".into(),
        ),
        // No DHCP and no DNS: libvirt starts no dnsmasq, and virtmasq has no intent for it.
        (
            "vqf-bare",
            "vqfa",
            "<dns enable='no'/><ip address='10.120.10.1' prefix='24'/>".into(),
        ),
    ]
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;")
}

/// Defines, starts, stops and undefines every network; the outcome of each step by network.
fn cycle(ct: &Container) -> BTreeMap<String, String> {
    let mut outcome = BTreeMap::new();
    for (name, bridge, body) in networks() {
        let xml = format!(
            "<network><name>{}</name><bridge name='{bridge}'/>{body}</network>",
            xml_escape(name)
        );
        let file = format!("/root/{bridge}.xml");
        ct.write_file(&file, &xml, 0o644);
        let mut steps = Vec::new();
        for args in [
            vec!["net-define", file.as_str()],
            vec!["net-start", name],
            vec!["net-info", name],
            vec!["net-destroy", name],
            vec!["net-undefine", name],
        ] {
            let mut cmd = vec!["virsh", "-q"];
            cmd.extend(&args);
            let out = ct.exec(&cmd);
            let step = match out.status.success() {
                true => "ok".to_owned(),
                false => format!("failed: {}", String::from_utf8_lossy(&out.stderr).trim()),
            };
            steps.push(format!("{}: {step}", args[0]));
        }
        outcome.insert(name.to_owned(), steps.join("; "));
    }
    outcome
}

#[test]
fn networks_libvirt_serves_start_and_stop_the_same_with_the_package_installed() {
    let lab = Lab::new("packaging_foreign");
    lab.add_bridge(SITE, "10.98.0.1/24");
    let (deb, _) = super::debs().clone();
    let opts = BootOptions {
        binds_ro: vec![(deb, DEB_INSIDE.into())],
        setup: Some(Box::new(|root: &std::path::Path| {
            write_into(root, "/etc/dnsmasq.d/coexist.conf", COEXIST, 0o644);
            write_into(root, "/srv/tftp root/undionly.kpxe", "", 0o644);
        })),
    };
    let ct = Container::boot_variant(&lab, &opts, Variant::Libvirt);
    run(&ct, &["systemctl", "restart", "dnsmasq"]);

    let without = cycle(&ct);
    for (name, steps) in &without {
        assert!(
            !steps.contains("failed"),
            "without the package, libvirt could not run '{name}': {steps}\n{}",
            ct.journal("libvirtd")
        );
    }

    run(&ct, &["dpkg", "-i", DEB_INSIDE]);
    // libvirtd reads its hook directory at start.
    run(&ct, &["systemctl", "restart", "libvirtd"]);
    let with = cycle(&ct);
    let hook_log = ct.exec_ok(&[
        "journalctl",
        "-t",
        "virtmasq-hook",
        "-o",
        "cat",
        "--no-pager",
    ]);
    assert_eq!(with, without, "hook log:\n{hook_log}");
    // The hook ran for every one of them, and took none as virtmasq's.
    for (name, _, _) in networks() {
        let started = format!("network '{}' started", name.escape_debug());
        assert!(
            hook_log.contains(&started),
            "{started} missing:\n{hook_log}"
        );
    }
    assert!(!hook_log.contains("refusing"), "{hook_log}");
    assert_eq!(
        run(&ct, &["systemctl", "is-active", "virtmasq"]).trim(),
        "active"
    );
    adopt_never_takes_service_away(&lab, &ct);
    served_the_same_by_virtmasq_as_by_libvirt(&lab, &ct);
}

/// An isolated network with an MTU, a domain, DNS records, `forwardPlainNames`, `localPtr`,
/// `<bootp>`, `<tftp>` and a raw option, side by side: what a guest gets
/// from libvirt's own dnsmasq, and from virtmasq's after `adopt` (a private instance beside the
/// system dnsmasq, which excludes `vqf*`), must be the same.
fn served_the_same_by_virtmasq_as_by_libvirt(lab: &Lab, ct: &Container) {
    let xml = "<network><name>vqf-par</name><bridge name='vqfpar'/><mtu size='7000'/>\
        <domain name='par.example' localOnly='yes'/>\
        <dns forwardPlainNames='no'><txt name='info.par.example' value='parity'/>\
        <srv service='ldap' protocol='tcp' domain='par.example' target='ldap.par.example' \
        port='389' priority='10' weight='5'/>\
        <host ip='10.120.13.7'><hostname>files</hostname></host></dns>\
        <ip address='10.120.13.1' prefix='24' localPtr='yes'><tftp root='/srv/vqtftp'/><dhcp>\
        <range start='10.120.13.100' end='10.120.13.150'/><bootp file='pxelinux.0'/></dhcp></ip>\
        <dnsmasq:options xmlns:dnsmasq='http://libvirt.org/schemas/network/dnsmasq/1.0'>\
        <dnsmasq:option value='dhcp-option=option:ntp-server,10.120.13.1'/>\
        </dnsmasq:options></network>";
    ct.write_file("/root/vqf-par.xml", xml, 0o644);
    ct.write_file("/srv/vqtftp/hello.txt", "served by TFTP\n", 0o644);
    run(ct, &["virsh", "-q", "net-define", "/root/vqf-par.xml"]);
    run(ct, &["virsh", "-q", "net-start", "vqf-par"]);
    let answers = || {
        let guest = lab.add_client("vqfpar", "52:54:00:12:0d:01");
        // libvirt's dnsmasq pings an address before offering it (~3 s).
        let offer = guest
            .probe(&super::lab::ProbeOptions {
                request_list: Some(vec![1, 3, 6, 15, 26, 42]),
                timeout: std::time::Duration::from_secs(8),
                ..super::lab::ProbeOptions::default()
            })
            .expect("an offer");
        let mut seen = vec![
            format!(
                "in range: {}",
                super::in_range(Some(offer.yiaddr), [10, 120, 13])
            ),
            format!("router: {:?}", offer.router()),
            format!("mtu: {:?}", offer.options.get(&26)),
            format!("mask: {:?}", offer.options.get(&1)),
            format!("domain: {:?}", offer.domain()),
            format!("dns server: {:?}", offer.option_ipv4(6)),
            format!("ntp: {:?}", offer.option_ipv4(42)),
            format!("boot file: {:?}", offer.boot_file()),
        ];
        guest.set_address("10.120.13.50/24");
        let got = lab.dir().join("tftp-got.txt");
        let _ = std::fs::remove_file(&got);
        let fetched = guest
            .command("busybox")
            .args(["tftp", "-g", "-r", "hello.txt", "-l", got.to_str().unwrap()])
            .arg("10.120.13.1")
            .output()
            .is_ok_and(|o| o.status.success());
        seen.push(format!(
            "tftp: {fetched} {:?}",
            std::fs::read_to_string(&got).ok()
        ));
        for (name, qtype) in [
            ("info.par.example", "TXT"),
            ("_ldap._tcp.par.example", "SRV"),
            ("files.par.example", "A"),
            ("files", "A"),
            ("nothing.par.example", "A"),
            ("99.13.120.10.in-addr.arpa", "PTR"),
            ("plainname", "A"),
        ] {
            seen.push(format!(
                "{name} {qtype}: {:?}",
                guest.dns("10.120.13.1", name, qtype)
            ));
        }
        seen
    };
    let by_libvirt = answers();
    // Not a comparison of nothings: libvirt's dnsmasq answered each of them.
    for want in [
        "in range: true",
        "router: None",
        "mtu: Some([27, 88])",
        "ntp: Some(10.120.13.1)",
        "TXT parity",
        "SRV 10 5 389 ldap.par.example.",
        "files A: Some((0, [\"A 10.120.13.7\"]))",
        "boot file: Some(\"pxelinux.0\")",
        "tftp: true Some(\"served by TFTP\\n\")",
        "99.13.120.10.in-addr.arpa PTR: Some((3, []))",
        "plainname A: Some((3, []))",
    ] {
        assert!(
            by_libvirt.iter().any(|l| l.contains(want)),
            "{want} not in {by_libvirt:?}"
        );
    }
    let out = run(ct, &["virtmasq", "adopt", "vqf-par"]);
    assert!(out.contains("restarted"), "{out}");
    super::wait(
        "virtmasq's dnsmasq for vqf-par",
        std::time::Duration::from_secs(20),
        || run(ct, &["virtmasq", "status"]).contains("vqf-par"),
    );
    let by_virtmasq = answers();
    assert_eq!(
        by_virtmasq,
        by_libvirt,
        "virtmasq serves vqf-par otherwise than libvirt did\n{}",
        ct.journal("virtmasq")
    );
    run(ct, &["virtmasq", "release", "vqf-par"]);
    run(ct, &["virsh", "-q", "net-destroy", "vqf-par"]);
}

/// A running network on a bridge the system dnsmasq excludes (`except-interface=vqf*`): the
/// system dnsmasq cannot serve it, so after `adopt` a private dnsmasq beside it does (per-network
/// mode), while the host's own network stays with the system dnsmasq. With nothing to run that
/// instance, adopt refuses and changes nothing. The guest keeps its address throughout, and
/// `release` gives the network back to libvirt's dnsmasq.
fn adopt_never_takes_service_away(lab: &Lab, ct: &Container) {
    let xml = "<network><name>vqf-adopt</name><forward mode='nat'/><bridge name='vqfb'/>\
        <ip address='10.120.11.1' prefix='24'><dhcp><range start='10.120.11.100' \
        end='10.120.11.150'/></dhcp></ip></network>";
    ct.write_file("/root/vqf-adopt.xml", xml, 0o644);
    run(ct, &["virsh", "-q", "net-define", "/root/vqf-adopt.xml"]);
    run(ct, &["virsh", "-q", "net-start", "vqf-adopt"]);
    // libvirt's dnsmasq pings an address before offering it (~3 s).
    // A new port each time: a restart of the network makes a new bridge, and libvirt only
    // plugs its own guests back in.
    let lease = || {
        let guest = lab.add_client("vqfb", "52:54:00:12:0b:01");
        guest.lease_with_args(&["-t", "8"]).map(|l| l.ip)
    };
    let before = lease();
    assert!(super::in_range(before, [10, 120, 11]), "{before:?}");
    let definition = run(ct, &["virsh", "net-dumpxml", "--inactive", "vqf-adopt"]);
    let mode = run(ct, &["virtmasq", "detect", "--json"]);
    assert!(mode.contains("\"mode\": \"system\""), "{mode}");
    let libvirt_serves = || {
        let procs = run(ct, &["busybox", "ps", "-o", "args"]);
        procs.contains("/var/lib/libvirt/dnsmasq/vqf-adopt.conf")
    };

    // Nothing to run a private dnsmasq: refused, nothing changed.
    run(ct, &["systemctl", "disable", "--now", "virtmasq"]);
    let adopt = ct.exec(&["virtmasq", "adopt", "vqf-adopt"]);
    let stderr = String::from_utf8_lossy(&adopt.stderr);
    assert!(!adopt.status.success(), "{stderr}");
    assert!(
        stderr.contains("needs a private dnsmasq") && stderr.contains("virtmasq daemon"),
        "{stderr}"
    );
    assert_eq!(
        run(ct, &["virsh", "net-dumpxml", "--inactive", "vqf-adopt"]),
        definition
    );
    assert!(libvirt_serves());
    assert_eq!(lease(), before, "the guest lost its address");

    // With the service: handed over to a private dnsmasq beside the system one.
    run(ct, &["systemctl", "enable", "--now", "virtmasq"]);
    let out = run(ct, &["virtmasq", "adopt", "vqf-adopt"]);
    assert!(out.contains("restarted"), "{out}");
    assert!(!libvirt_serves(), "libvirt's dnsmasq still runs");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(40);
    let mut after = lease();
    while after.is_none() && std::time::Instant::now() < until {
        after = lease();
    }
    assert!(
        after.is_some(),
        "no lease from virtmasq's dnsmasq\n{}\n{}",
        run(ct, &["virtmasq", "status"]),
        ct.journal("virtmasq")
    );
    assert_eq!(
        after,
        before,
        "the guest's address changed\n{}",
        ct.journal("virtmasq")
    );
    listed_by_libvirt(ct, "vqf-adopt", "52:54:00:12:0b:01", after.unwrap());
    let status = run(ct, &["virtmasq", "status"]);
    assert!(status.contains("per network"), "{status}");
    let render = run(ct, &["virtmasq", "render", "vqf-adopt"]);
    assert!(
        render.contains("a private dnsmasq beside the system one")
            && render.contains("interface=vqfb"),
        "{render}"
    );
    let detect: serde_json::Value =
        serde_json::from_str(&run(ct, &["virtmasq", "detect", "--json"])).unwrap();
    let placed = &detect["networks"][0];
    assert_eq!(placed["name"], "vqf-adopt", "{detect}");
    assert_eq!(placed["served_by"], "private", "{detect}");
    assert!(placed["reason"]
        .as_str()
        .unwrap()
        .contains("except-interface=vqf*"));
    assert!(super::in_range(
        super::lease(lab, SITE, "52:54:00:98:0b:01"),
        [10, 98, 0]
    ));
    readme_network_is_served_by_the_system_dnsmasq(lab, ct);

    let out = run(ct, &["virtmasq", "release", "vqf-adopt"]);
    assert!(out.contains("released"), "{out}");
    assert!(libvirt_serves(), "libvirt's dnsmasq is not back");
    assert_eq!(lease(), before, "the guest's address changed on release");
    assert_eq!(
        run(ct, &["virsh", "net-dumpxml", "--inactive", "vqf-adopt"]),
        definition
    );
    run(ct, &["virsh", "-q", "net-destroy", "vqf-adopt"]);
}

/// Beside them, a network defined the README's way (no `<dhcp>`, DNS off, virtmasq's intent in
/// its metadata) on a bridge the system dnsmasq does not exclude: served by the system dnsmasq.
fn readme_network_is_served_by_the_system_dnsmasq(lab: &Lab, ct: &Container) {
    let xml = "<network><name>vqm-readme</name><bridge name='vqm0'/><dns enable='no'/>\
        <ip address='10.120.12.1' prefix='24'/><metadata>\
        <virtmasq:dhcp xmlns:virtmasq='http://virtmasq.org/xmlns/network/1.0' dns='no'>\
        <virtmasq:range start='10.120.12.100' end='10.120.12.150'/></virtmasq:dhcp>\
        </metadata></network>";
    ct.write_file("/root/vqm-readme.xml", xml, 0o644);
    run(ct, &["virsh", "-q", "net-define", "/root/vqm-readme.xml"]);
    run(ct, &["virsh", "-q", "net-start", "vqm-readme"]);
    let fragment = ct.host_path("/etc/dnsmasq.d/virtmasq-vqm-readme.conf");
    super::wait("its fragment", std::time::Duration::from_secs(20), || {
        fragment.exists()
    });
    let ip = lab
        .add_client("vqm0", "52:54:00:12:0c:01")
        .lease_with_args(&["-t", "8"])
        .map(|l| l.ip);
    assert!(
        super::in_range(ip, [10, 120, 12]),
        "{ip:?}\n{}",
        ct.journal("virtmasq")
    );
    listed_by_libvirt(ct, "vqm-readme", "52:54:00:12:0c:01", ip.unwrap());
    let detect = run(ct, &["virtmasq", "detect", "--json"]);
    assert!(detect.contains("\"vqm-readme\""), "{detect}");
    run(ct, &["virsh", "-q", "net-destroy", "vqm-readme"]);
}

/// `virsh net-dhcp-leases` lists the guest's lease on `network`, served by virtmasq (the status
/// file the daemon keeps is read within a second or two of the lease).
fn listed_by_libvirt(ct: &Container, network: &str, mac: &str, ip: std::net::Ipv4Addr) {
    let started = std::time::Instant::now();
    loop {
        let out = run(ct, &["virsh", "-q", "net-dhcp-leases", network]);
        let want = format!("{ip}/24");
        if out.lines().any(|l| l.contains(mac) && l.contains(&want)) {
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "virsh net-dhcp-leases {network} does not list {mac} {ip}:\n{out}\n{}",
            ct.journal("virtmasq")
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}
