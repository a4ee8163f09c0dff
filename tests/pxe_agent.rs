//! PXE through the agent itself: a network whose PXE profile lives in the configuration, the
//! daemon's private dnsmasq answering by client architecture and user class, and the daemon's
//! HTTP endpoint handing iPXE clients their script.

mod lab;
mod support;

use std::time::Duration;

use lab::{Lab, ProbeOptions};
use support::*;

fn probe(arch: u16, ipxe: bool) -> ProbeOptions {
    ProbeOptions {
        timeout: Duration::from_secs(3),
        vendor_class: Some(format!("PXEClient:Arch:{arch:05}:UNDI:003001")),
        client_arch: Some(arch),
        client_ndi: true,
        user_class: ipxe.then(|| "iPXE".to_owned()),
        ipxe_175: ipxe,
        ..Default::default()
    }
}

#[test]
fn boot_files_by_architecture_and_scripts_for_ipxe() {
    let lab = Lab::new("pxe_agent");
    lab.add_bridge("vqp0", "10.88.0.1/24");
    let tftp = lab.dir().join("tftp");
    std::fs::create_dir(&tftp).unwrap();
    for f in ["undionly.kpxe", "ipxe.efi"] {
        std::fs::write(tftp.join(f), b"boot image").unwrap();
    }
    let uri = write_node(
        lab.dir(),
        "node.xml",
        &[TestNet {
            name: "lab",
            bridge: "vqp0",
            ip: "10.88.0.1/24",
            dhcp: None,
        }],
    );
    let extra = format!(
        "[http]\nenabled = true\naddress = \"10.88.0.1\"\nport = 8067\n\
         rules = [{{ mac = \"52:54:00:88:00:03\", chain = \"http://10.88.0.1:8067/second.ipxe\" }}]\n\
         [networks.lab]\ndns = false\nranges = [{{ start = \"10.88.0.100\", end = \"10.88.0.150\" }}]\n\
         [networks.lab.pxe]\ntftp_root = \"{}\"\nboot_files = {{ bios = \"undionly.kpxe\", efi_x64 = \"ipxe.efi\" }}\n\
         ipxe = \"endpoint\"\n",
        tftp.display()
    );
    let cfg = write_config(lab.dir(), &uri, &extra);
    lab.spawn_host(&[BIN, "--config", cfg.to_str().unwrap(), "daemon"]);
    let pid_file = lab.dir().join("run/lab/pid/dnsmasq.pid");
    assert!(
        wait_until(Duration::from_secs(10), || live_pid(&pid_file).is_some()),
        "no dnsmasq for the PXE network:\n{}",
        std::fs::read_to_string(lab.dir().join("virtmasq-0.log")).unwrap_or_default()
    );

    let bios = lab.add_client("vqp0", "52:54:00:88:00:01");
    let offer = bios
        .probe(&probe(0, false))
        .expect("an offer for a BIOS PXE client");
    assert_eq!(
        offer.boot_file().as_deref(),
        Some("undionly.kpxe"),
        "{offer:?}"
    );
    let efi = lab.add_client("vqp0", "52:54:00:88:00:02");
    let offer = efi
        .probe(&probe(7, false))
        .expect("an offer for an x86-64 UEFI client");
    assert_eq!(offer.boot_file().as_deref(), Some("ipxe.efi"), "{offer:?}");
    // Already iPXE: the script URL, not the iPXE binary again (no chainloading loop).
    let ipxe = lab.add_client("vqp0", "52:54:00:88:00:03");
    let offer = ipxe
        .probe(&probe(7, true))
        .expect("an offer for an iPXE client");
    let url = offer.boot_file().unwrap_or_default();
    assert!(url.starts_with("http://10.88.0.1:8067/"), "{offer:?}");

    // The endpoint answers that client with its rule, over the lab bridge (the probe leaves
    // the client without an address: give it the one it was offered).
    let addr = format!("{}/24", offer.yiaddr);
    let set = ipxe
        .command("ip")
        .args(["addr", "add", &addr, "dev", "eth0"])
        .status()
        .unwrap();
    assert!(set.success());
    let (code, script) = fetch(
        &ipxe,
        "http://10.88.0.1:8067/boot.ipxe?mac=52:54:00:88:00:03",
    );
    assert_eq!(code, 200, "{script}");
    assert!(script.starts_with("#!ipxe"), "{script}");
    assert!(
        script.contains("chain http://10.88.0.1:8067/second.ipxe"),
        "{script}"
    );
    let (code, _) = fetch(&ipxe, "http://10.88.0.1:8067/boot.ipxe?mac=zz");
    assert_eq!(code, 400, "a bad MAC must get a 400");
}

/// GET `url` from the client's namespace (Debian's python; busybox wget crashes here): the
/// status code and the body.
fn fetch(client: &lab::Client, url: &str) -> (u16, String) {
    let code = "import sys, urllib.request, urllib.error\n\
        try:\n    r = urllib.request.urlopen(sys.argv[1], timeout=5); print(r.status); print(r.read().decode(), end='')\n\
        except urllib.error.HTTPError as e:\n    print(e.code)\n";
    let out = client
        .command("/usr/bin/python3")
        .args(["-c", code, url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (status, body) = text.split_once('\n').unwrap_or((text.as_str(), ""));
    let status = status.trim().parse().unwrap_or_else(|_| {
        panic!(
            "no HTTP answer from {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (status, body.to_owned())
}
