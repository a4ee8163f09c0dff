//! PXE boot profiles against a real dnsmasq (Debian 12: 2.90) in lab namespaces: DHCP clients
//! of several architectures and user classes ask, the answers must carry the right boot file
//! or iPXE URL; in dhcp mode, in a system fragment shared with another network, and in proxy
//! mode next to a separate "site" DHCP server, including UEFI clients' port 4011 exchange.
//! Needs root, dnsmasq, python3-scapy and busybox; fails, never skips, without them.

mod lab;
#[path = "fixtures/pxe/rig.rs"]
mod rig;

use std::fs;
use std::process::Command;
use std::time::Duration;

use lab::{Client, Lab, ProbeOptions};
use rig::*;
use virtmasq::dnsmasq::fragment::{render_fragment, FragmentContext};
use virtmasq::pxe::{system_side_effect, LinesFor, MachineUuid};

const URL: &str = "http://10.95.0.1:8067/boot.ipxe";

/// A DISCOVER as a PXE ROM of architecture `arch` sends it.
fn pxe(arch: u16) -> ProbeOptions {
    ProbeOptions {
        timeout: Duration::from_secs(3),
        vendor_class: Some(format!("PXEClient:Arch:{arch:05}:UNDI:003016")),
        client_arch: Some(arch),
        client_ndi: true,
        ..ProbeOptions::default()
    }
}

/// The same from iPXE: user class "iPXE" and option 175 (one of them is enough).
fn ipxe(arch: u16, user_class: bool, opt175: bool) -> ProbeOptions {
    ProbeOptions {
        user_class: user_class.then(|| "iPXE".to_owned()),
        ipxe_175: opt175,
        ..pxe(arch)
    }
}

fn boot_file(rig: &Rig, client: &Client, opts: &ProbeOptions) -> Option<String> {
    let offer = client
        .probe(opts)
        .unwrap_or_else(|| panic!("no offer for {opts:?}\n{}", rig.log()));
    offer.boot_file()
}

const PROFILE: &str = r#"
    tftp_root = "{root}"
    boot_files = { bios = "undionly.kpxe", efi_x64 = "ipxe.efi", efi_bc = "bc.efi", efi_arm64 = "arm64/snp.efi" }
"#;

/// Every kind of setting at once (dhcp mode).
const FULL: &str = r#"
    tftp_root = "{root}"
    next_server = "10.95.0.5"
    pxelinux_config_file = "pxelinux.cfg/default"
    pxelinux_path_prefix = "http://10.95.0.1/"
    boot_files = { bios = "undionly.kpxe", efi_x64 = "ipxe.efi", http_x64 = "http://10.95.0.1/ipxe.efi" }
"#;

#[test]
fn dhcp_mode_gives_each_architecture_its_file_and_ipxe_its_url() {
    let mut rig = Rig::new("pxe_dhcp_arch", "vqpx0", "10.95.0");
    let conf = rig.private_conf(&rig.profile(PROFILE));
    rig.start(&conf);
    let client = rig.lab.add_client("vqpx0", "52:54:00:95:00:01");
    let cases = [
        (pxe(0), Some("undionly.kpxe")),
        (pxe(7), Some("ipxe.efi")),
        // dnsmasq's BC_EFI: arch 9, here a file of its own to show the two apart.
        (pxe(9), Some("bc.efi")),
        (pxe(11), Some("arm64/snp.efi")),
        (pxe(6), None),
        (ipxe(0, true, true), Some(URL)),
        (ipxe(0, true, false), Some(URL)),
        (ipxe(0, false, true), Some(URL)),
        (ipxe(7, true, true), Some(URL)),
        (ProbeOptions::default(), None),
    ];
    for (opts, want) in cases {
        let got = boot_file(&rig, &client, &opts);
        assert_eq!(got.as_deref(), want, "{opts:?}\n{}", rig.log());
    }
    let offer = client.probe(&pxe(7)).unwrap();
    assert_eq!(
        offer.siaddr.to_string(),
        "10.95.0.1",
        "next server is dnsmasq itself"
    );
    assert_eq!(
        offer.yiaddr.octets()[..3],
        [10, 95, 0],
        "an address in the range too"
    );
    // The chainloaded iPXE would fetch this file over TFTP from the bridge address.
    let root = rig.tftp_root();
    assert_eq!(
        tftp_get(
            &client_with_addr(&rig, "52:54:00:95:00:02", 20),
            "10.95.0.1",
            "arm64/snp.efi"
        ),
        Some(fs::read_to_string(root.join("arm64/snp.efi")).unwrap())
    );
}

#[test]
fn uefi_http_boot_gets_a_url_and_the_httpclient_vendor_class() {
    let mut rig = Rig::new("pxe_http_boot", "vqpx0", "10.95.0");
    let with_http = PROFILE.replace(
        "efi_arm64",
        "http_x64 = \"http://10.95.0.1/ipxe.efi\", efi_arm64",
    );
    let profile = rig.profile(&with_http);
    let conf = rig.private_conf(&profile);
    rig.start(&conf);
    let client = rig.lab.add_client("vqpx0", "52:54:00:95:00:01");
    let http = ProbeOptions {
        vendor_class: Some("HTTPClient:Arch:00016:UNDI:003001".into()),
        ..pxe(16)
    };
    let offer = client.probe(&http).expect("an offer");
    assert_eq!(
        offer.boot_file().as_deref(),
        Some("http://10.95.0.1/ipxe.efi")
    );
    // UEFI firmware ignores an HTTP boot offer without this class.
    assert_eq!(offer.option_str(60).as_deref(), Some("HTTPClient"));
    let pxe7 = client.probe(&pxe(7)).expect("an offer");
    assert_eq!(pxe7.boot_file().as_deref(), Some("ipxe.efi"));
    assert_ne!(pxe7.option_str(60).as_deref(), Some("HTTPClient"));
}

/// A client with a fixed address `<prefix>.<host>` (a static host, for TFTP).
fn client_with_addr(rig: &Rig, mac: &str, host: u8) -> Client {
    let c = rig.lab.add_client(&rig.bridge, mac);
    set_addr(&c, &format!("{}/24", rig.addr(host)));
    c
}

/// The machine UUID of the FOG seed's Dell.
const UUID: &str = "4c4c4544-0038-3610-804e-c4c04f4a5831";

/// [`PROFILE`] with a UUID override for x86-64 UEFI, a MAC override for BIOS, x86-64 UEFI and
/// the iPXE URL, and pxelinux's options.
fn hosts_profile(rig: &Rig) -> virtmasq::pxe::PxeProfile {
    let mut profile = rig.profile(&format!(
        "{PROFILE}\n[[hosts]]\nuuid = \"{UUID}\"\nboot_files = {{ efi_x64 = \"uuid.efi\" }}\n\
         [[hosts]]\nmac = \"52:54:00:95:00:0a\"\n\
         boot_files = {{ bios = \"mac.kpxe\", efi_x64 = \"mac.efi\" }}\n\
         ipxe_url = \"http://10.95.0.1:8067/special.ipxe\"\n"
    ));
    profile.pxelinux_config_file = Some("pxelinux.cfg/default".parse().unwrap());
    profile.pxelinux_path_prefix = Some("http://10.95.0.1/".parse().unwrap());
    profile
}

fn with_uuid(opts: ProbeOptions, bytes: [u8; 16]) -> ProbeOptions {
    ProbeOptions {
        uuid: Some(bytes),
        ..opts
    }
}

#[test]
fn host_overrides_by_mac_and_uuid_and_pxelinux_options() {
    let mut rig = Rig::new("pxe_dhcp_hosts", "vqpx0", "10.95.0");
    let conf = rig.private_conf(&hosts_profile(&rig));
    rig.start(&conf);
    let uuid: MachineUuid = UUID.parse().unwrap();
    let (guid, plain) = (uuid.guid_bytes(), uuid.bytes());
    let by_mac = rig.lab.add_client("vqpx0", "52:54:00:95:00:0a");
    let other = rig.lab.add_client("vqpx0", "52:54:00:95:00:0b");
    let special = "http://10.95.0.1:8067/special.ipxe";
    let cases = [
        (&by_mac, pxe(0), Some("mac.kpxe")),
        (&by_mac, pxe(7), Some("mac.efi")),
        (&by_mac, ipxe(0, true, true), Some(special)),
        // Option 97 as PXE firmware and iPXE send it (GUID layout), and in RFC 4122 order.
        (&other, with_uuid(pxe(7), guid), Some("uuid.efi")),
        (&other, with_uuid(pxe(7), plain), Some("uuid.efi")),
        (&other, with_uuid(pxe(0), guid), Some("undionly.kpxe")),
        (&other, pxe(7), Some("ipxe.efi")),
        (&other, with_uuid(ipxe(7, true, true), guid), Some(URL)),
        // MAC and UUID overrides both match: the MAC one wins.
        (&by_mac, with_uuid(pxe(7), guid), Some("mac.efi")),
    ];
    for (client, opts, want) in cases {
        let got = boot_file(&rig, client, &opts);
        let mac = client.mac();
        assert_eq!(got.as_deref(), want, "{mac} {opts:?}\n{}", rig.log());
    }
    let offer = other.probe(&pxe(0)).unwrap();
    let pxelinux = (offer.option_str(209), offer.option_str(210));
    let want = ("pxelinux.cfg/default", "http://10.95.0.1/");
    assert_eq!(pxelinux, (Some(want.0.into()), Some(want.1.into())));
}

#[test]
fn system_fragment_serves_pxe_and_tftp_on_its_bridge_only() {
    let mut rig = Rig::new("pxe_system_scope", "vqpx0", "10.95.0");
    rig.lab.add_bridge("vqpx1", "10.96.0.1/24");
    let net = rig.network();
    let ctx = FragmentContext {
        add_interface: false,
        hosts_file: rig.path("system.hosts"),
        tag_hosts: true,
        extra_lines: rig.lines(&rig.profile(PROFILE), LinesFor::System),
    };
    fs::write(rig.path("system.hosts"), "").unwrap();
    // A system dnsmasq with a network of its own (vqpx1) and no interface restriction.
    let system = format!(
        "port=0\nexcept-interface=lo\nbind-dynamic\nno-ping\nlog-dhcp\n\
         dhcp-leasefile={}\ndhcp-range=tag:vqpx1,10.96.0.100,10.96.0.150,255.255.255.0\n{}",
        rig.path("leases").display(),
        render_fragment(&net, &ctx)
    );
    rig.start(&system);
    let ours = client_with_addr(&rig, "52:54:00:95:00:01", 20);
    let theirs = rig.lab.add_client("vqpx1", "52:54:00:96:00:01");
    set_addr(&theirs, "10.96.0.20/24");
    assert_eq!(boot_file(&rig, &ours, &pxe(7)).as_deref(), Some("ipxe.efi"));
    assert_eq!(
        boot_file(&rig, &ours, &ipxe(0, true, true)).as_deref(),
        Some(URL)
    );
    for opts in [pxe(0), pxe(7), ipxe(0, true, true)] {
        assert_eq!(
            boot_file(&rig, &theirs, &opts),
            None,
            "leaked to vqpx1: {opts:?}"
        );
    }
    // dhcp mode leaves dnsmasq's PXE handling off: nothing PXE-specific reaches vqpx1.
    let offer = theirs.probe(&pxe(7)).expect("the system's own offer");
    assert!(!offer.options.contains_key(&43) && !offer.options.contains_key(&60));
    assert!(
        tftp_get(&ours, "10.95.0.1", "ipxe.efi").is_some(),
        "{}",
        rig.log()
    );
    assert_eq!(
        tftp_get(&theirs, "10.96.0.1", "ipxe.efi"),
        None,
        "TFTP answered on vqpx1"
    );
}

#[test]
fn system_fragment_in_proxy_mode_answers_its_bridge_only() {
    let mut rig = Rig::new("pxe_system_proxy", "vqpx0", "10.95.0");
    rig.lab.add_bridge("vqpx1", "10.96.0.1/24");
    let profile = rig.profile(&format!("mode = \"proxy\"\n{PROFILE}"));
    let system = format!(
        "port=0\nexcept-interface=lo\nbind-dynamic\nno-ping\nlog-dhcp\n\
         dhcp-leasefile={}\ndhcp-range=tag:vqpx1,10.96.0.100,10.96.0.150,255.255.255.0\n{}\n",
        rig.path("leases").display(),
        rig.lines(&profile, LinesFor::System).join("\n")
    );
    rig.start(&system);
    let ours = rig.lab.add_client("vqpx0", "52:54:00:95:00:01");
    let theirs = rig.lab.add_client("vqpx1", "52:54:00:96:00:01");
    let x = pxe_exchange(&ours, &["--arch", "7"]);
    let proxy = x
        .proxy_offer()
        .unwrap_or_else(|| panic!("{:?}\n{}", x.offers, rig.log()));
    assert_eq!(proxy["siaddr"], "10.95.0.1");
    let x = pxe_exchange(&theirs, &["--arch", "7"]);
    assert!(
        x.proxy_offer().is_none(),
        "proxy answer on vqpx1: {:?}",
        x.offers
    );
    let offer = x.address_offer().expect("the system's own offer on vqpx1");
    assert!(offer["file"].is_null(), "{offer}");
    // The documented side effect (virtmasq::pxe::system_side_effect): with pxe-service in
    // the configuration, the system's offers to PXE clients elsewhere carry PXEClient.
    assert_eq!(option_text(offer, 60).as_deref(), Some("PXEClient"));
    assert!(system_side_effect(&profile).is_some());
}

/// The site's own DHCP server, in a namespace of its own on the bridge (`<prefix>.2`).
fn start_site_dhcp(rig: &Rig) {
    let site = client_with_addr(rig, "52:54:00:95:00:02", 2);
    let mut cmd = site.command(DNSMASQ);
    cmd.args([
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--port=0",
        "--no-ping",
    ])
    .args(["--bind-interfaces", "--interface=eth0", "--log-dhcp"])
    .arg("--dhcp-range=10.95.0.100,10.95.0.150,255.255.255.0,1h")
    .arg(format!(
        "--dhcp-leasefile={}",
        rig.path("site.leases").display()
    ))
    .arg(format!("--log-facility={}", rig.path("site.log").display()));
    rig.lab.spawn(&mut cmd);
    let listening = Lab::wait_for(
        || {
            let udp = Command::new("ip")
                .args(["netns", "exec", site.ns(), "cat", "/proc/net/udp"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            udp.contains(":0043 ")
        },
        Duration::from_secs(10),
    );
    assert!(
        listening,
        "site dnsmasq did not start: {:?}",
        fs::read_to_string(rig.path("site.log"))
    );
}

/// A proxy-DHCP dnsmasq from [`PROFILE`] (plus a MAC override) on the lab host, and the
/// site's DHCP server beside it.
fn proxy_rig() -> Rig {
    let mut rig = Rig::new("pxe_proxy", "vqpx0", "10.95.0");
    let profile = rig.profile(&format!(
        "mode = \"proxy\"\n{PROFILE}\n[[hosts]]\nmac = \"52:54:00:95:00:0a\"\n\
         boot_files = {{ efi_x64 = \"mac.efi\" }}\n"
    ));
    let conf = format!(
        "bind-dynamic\ninterface=vqpx0\nexcept-interface=lo\nport=0\nlog-dhcp\n{}\n",
        rig.lines(&profile, LinesFor::Private).join("\n")
    );
    rig.start(&conf);
    start_site_dhcp(&rig);
    rig
}

/// One PXE client of architecture `arch` at `ip`: offers from both servers, then its boot file
/// from the proxy's port 4011 (UEFI) or from the menu item it picked there (BIOS).
fn check_proxy_boot(rig: &Rig, client: &Client, ip: &str, arch: &str, file: &str) {
    let x = pxe_exchange(client, &["--arch", arch, "--ip", ip]);
    let proxy = x
        .proxy_offer()
        .unwrap_or_else(|| panic!("no proxy offer: {:?}\n{}", x.offers, rig.log()));
    assert!(x.address_offer().is_some(), "no site offer: {:?}", x.offers);
    assert_eq!(option_text(proxy, 60).as_deref(), Some("PXEClient"));
    // dnsmasq redirects UEFI clients (arch >= 6) to itself on port 4011 through siaddr;
    // BIOS clients find the boot server in the menu's option 43 instead.
    let want_siaddr = if arch == "0" { "0.0.0.0" } else { "10.95.0.1" };
    assert_eq!(proxy["siaddr"], want_siaddr, "arch {arch}: {proxy}");
    assert!(
        proxy["file"].is_null(),
        "arch {arch}: file in the offer: {proxy}"
    );
    let ack = x
        .ack
        .unwrap_or_else(|| panic!("arch {arch}: no answer on port 4011\n{}", rig.log()));
    assert_eq!(ack["file"], file, "arch {arch}: {ack}");
    assert_eq!(ack["siaddr"], "10.95.0.1");
    let menu = !ack["menu_item"].is_null();
    assert_eq!(menu, arch == "0", "a menu for BIOS only: {ack}");
}

#[test]
fn proxy_mode_with_a_site_dhcp_server_and_the_4011_exchange() {
    let rig = proxy_rig();
    let client = rig.lab.add_client("vqpx0", "52:54:00:95:00:01");
    // A plain client gets its address from the site; the proxy ignores non-PXE clients.
    let lease = client.lease().expect("a lease from the site's server");
    let server = lease.server_id.map(|a| a.to_string());
    assert_eq!(server.as_deref(), Some("10.95.0.2"));
    set_addr(&client, &format!("{}/24", lease.ip));
    let ip = lease.ip.to_string();
    for (arch, file) in [
        ("7", "ipxe.efi"),
        ("9", "bc.efi"),
        ("11", "arm64/snp.efi"),
        ("0", "undionly.kpxe"),
    ] {
        check_proxy_boot(&rig, &client, &ip, arch, file);
    }
    // iPXE gets its script URL right in the proxy offer, never the iPXE binary again.
    let ipxe_bios = ["--arch", "0", "--user-class", "iPXE", "--ipxe-175"];
    let x = pxe_exchange(&client, &ipxe_bios);
    let offered = x.proxy_offer().map(|o| o["file"].clone());
    assert_eq!(offered, Some(URL.into()), "{:?}", x.offers);
    let x = pxe_exchange(
        &client,
        &["--arch", "7", "--user-class", "iPXE", "--ip", &ip],
    );
    assert_eq!(x.ack.map(|a| a["file"].clone()), Some(URL.into()));
    // The per-host override holds in proxy mode too, alone in its menu.
    let host = rig.lab.add_client("vqpx0", "52:54:00:95:00:0a");
    set_addr(&host, "10.95.0.30/24");
    let x = pxe_exchange(&host, &["--arch", "7", "--ip", "10.95.0.30"]);
    let file = x.ack.map(|a| a["file"].clone());
    assert_eq!(file, Some("mac.efi".into()), "{}", rig.log());
}

#[test]
fn dnsmasq_accepts_every_kind_of_line() {
    let rig = Rig::new("pxe_syntax", "vqpx0", "10.95.0");
    let uuid = "11223344-5566-7788-99aa-bbccddeeff00";
    let hosts = format!(
        "[[hosts]]\nuuid = \"{uuid}\"\nboot_files = {{ efi_x64 = \"uuid.efi\" }}\nipxe_url = \"http://h/u\"\n\
         [[hosts]]\nmac = \"52:54:00:95:00:0a\"\nboot_files = {{ efi_x64 = \"mac.efi\" }}\nipxe_url = \"http://h/m\"\n"
    );
    for (profile, mode) in [
        (format!("{FULL}\n{hosts}"), LinesFor::System),
        (format!("{FULL}\n{hosts}"), LinesFor::Private),
        (
            format!("mode = \"proxy\"\n{PROFILE}\n{hosts}"),
            LinesFor::System,
        ),
    ] {
        let lines = rig.lines(&rig.profile(&profile), mode);
        let file = rig.path("syntax.conf");
        fs::write(&file, lines.join("\n") + "\n").unwrap();
        let out = Command::new(DNSMASQ)
            .args(["--test", &format!("--conf-file={}", file.display())])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            lines.join("\n")
        );
    }
}
