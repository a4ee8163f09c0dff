//! Rendering checked against the exact lines dnsmasq should get, and the profile checks that
//! refuse contradictions and missing boot files, each error naming the network and the value.

use std::fs;

use super::*;
use crate::model::{IfName, Ipv4Net, NetworkName};
use crate::pxe::{check_files, dnsmasq_lines, render_lines, PxeScope, ScriptEndpoint};

struct Net {
    name: NetworkName,
    bridge: IfName,
    subnet: Ipv4Net,
    endpoint: ScriptEndpoint,
}

fn net() -> Net {
    Net {
        name: "lab".parse().unwrap(),
        bridge: "virbr10".parse().unwrap(),
        subnet: "10.10.0.1/24".parse().unwrap(),
        endpoint: ScriptEndpoint {
            enabled: true,
            address: std::net::Ipv4Addr::UNSPECIFIED.into(),
            port: 8067,
        },
    }
}

impl Net {
    fn scope(&self) -> PxeScope<'_> {
        PxeScope {
            network: &self.name,
            bridge: &self.bridge,
            subnet: &self.subnet,
            endpoint: self.endpoint,
        }
    }
}

fn profile(toml_text: &str) -> PxeProfile {
    toml::from_str(toml_text).unwrap()
}

const BASIC: &str = r#"
    tftp_root = "/srv/tftp"
    boot_files = { bios = "undionly.kpxe", efi_x64 = "ipxe.efi", efi_arm64 = "arm64/snp.efi" }
"#;

#[test]
fn private_dhcp_mode() {
    let n = net();
    let lines = render_lines(&profile(BASIC), &n.scope(), LinesFor::Private).unwrap();
    let want = [
        "# PXE boot profile (dhcp mode) of network 'lab'",
        "enable-tftp=virbr10",
        "tftp-root=/srv/tftp,virbr10",
        "dhcp-userclass=set:virtmasq-ipxe,iPXE",
        "dhcp-match=set:virtmasq-ipxe,175",
        "dhcp-match=set:virtmasq-arch0,option:client-arch,0",
        "dhcp-match=set:virtmasq-arch7,option:client-arch,7",
        "dhcp-match=set:virtmasq-arch9,option:client-arch,9",
        "dhcp-match=set:virtmasq-arch11,option:client-arch,11",
        "dhcp-boot=tag:virtmasq-arch0,tag:!virtmasq-ipxe,undionly.kpxe",
        "dhcp-boot=tag:virtmasq-arch7,tag:!virtmasq-ipxe,ipxe.efi",
        "dhcp-boot=tag:virtmasq-arch9,tag:!virtmasq-ipxe,ipxe.efi",
        "dhcp-boot=tag:virtmasq-arch11,tag:!virtmasq-ipxe,arm64/snp.efi",
        "dhcp-boot=tag:virtmasq-ipxe,http://10.10.0.1:8067/boot.ipxe",
    ];
    assert_eq!(lines, want);
}

/// Lines that only set tags cannot be scoped; every other line must be.
fn sets_tags_only(line: &str) -> bool {
    [
        "dhcp-match=set:",
        "dhcp-mac=set:",
        "dhcp-userclass=set:",
        "tag-if=set:",
        "#",
    ]
    .iter()
    .any(|p| line.starts_with(p))
}

#[test]
fn system_lines_are_all_scoped_to_the_bridge() {
    let n = net();
    let p = profile(&format!(
        "{BASIC}\nnext_server = \"10.10.0.5\"\npxelinux_config_file = \"pxelinux.cfg/default\"\n\
         pxelinux_path_prefix = \"http://10.10.0.1/\"\n\
         [[hosts]]\nmac = \"52:54:00:00:00:01\"\nboot_files = {{ bios = \"pxelinux.0\" }}\n\
         [[hosts]]\nuuid = \"11223344-5566-7788-99aa-bbccddeeff00\"\nipxe_url = \"http://h/u.ipxe\""
    ));
    let lines = render_lines(&p, &n.scope(), LinesFor::System).unwrap();
    for line in &lines {
        let scoped = line
            .split_once('=')
            .is_some_and(|(_, v)| v.starts_with("tag:virbr10,"))
            || line.ends_with(",virbr10")
            || line == "enable-tftp=virbr10";
        assert!(
            scoped || sets_tags_only(line),
            "unscoped: {line}\n{lines:#?}"
        );
        assert!(
            !line.contains("net:") && !line.contains("tag:#"),
            "legacy syntax: {line}"
        );
    }
    assert!(lines.contains(&"dhcp-boot=tag:virbr10,tag:virtmasq-arch0,tag:!virtmasq-ipxe,tag:!virtmasq-virbr10-ovr-0,undionly.kpxe,,10.10.0.5".to_owned()), "{lines:#?}");
    assert!(
        lines.contains(&"dhcp-option-force=tag:virbr10,209,\"pxelinux.cfg/default\"".to_owned())
    );
}

#[test]
fn proxy_mode_uses_pxe_service_with_dnsmasq_names() {
    let n = net();
    let p = profile(&format!("mode = \"proxy\"\nprompt_timeout = 2\n{BASIC}"));
    let lines = render_lines(&p, &n.scope(), LinesFor::System).unwrap();
    let want = [
        "pxe-service=tag:virbr10,tag:!virtmasq-ipxe,x86PC,\"Network boot\",undionly.kpxe",
        "pxe-service=tag:virbr10,tag:!virtmasq-ipxe,x86-64_EFI,\"Network boot\",ipxe.efi",
        "pxe-service=tag:virbr10,tag:!virtmasq-ipxe,BC_EFI,\"Network boot\",ipxe.efi",
        "pxe-service=tag:virbr10,tag:!virtmasq-ipxe,ARM64_EFI,\"Network boot\",arm64/snp.efi",
        "dhcp-boot=tag:virbr10,tag:virtmasq-ipxe,http://10.10.0.1:8067/boot.ipxe",
        "dhcp-range=tag:virbr10,10.10.0.0,proxy,255.255.255.0",
        "pxe-prompt=tag:virbr10,\"Network boot\",2",
    ];
    for w in want {
        assert!(lines.iter().any(|l| l == w), "missing {w}\n{lines:#?}");
    }
    assert!(
        !lines.iter().any(|l| l.contains("client-arch")),
        "{lines:#?}"
    );
}

#[test]
fn host_overrides_are_exclusive() {
    let n = net();
    let p = profile(&format!(
        "{BASIC}\n[[hosts]]\nuuid = \"11223344-5566-7788-99aa-bbccddeeff00\"\n\
         boot_files = {{ efi_x64 = \"uuid.efi\" }}\n\
         [[hosts]]\nmac = \"52:54:00:00:00:01\"\nboot_files = {{ efi_x64 = \"mac.efi\" }}"
    ));
    let lines = render_lines(&p, &n.scope(), LinesFor::Private).unwrap();
    let has = |l: &str| lines.iter().any(|x| x == l);
    let t = "virtmasq-virbr10";
    for want in [
        format!("dhcp-match=set:{t}-host0,97,00:44:33:22:11:66:55:88:77:99:aa:bb:cc:dd:ee:ff:00"),
        format!("dhcp-match=set:{t}-host0,97,00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00"),
        format!("dhcp-mac=set:{t}-host1,52:54:00:00:00:01"),
        format!("tag-if=set:{t}-ovr-7,tag:{t}-host0"),
        format!("tag-if=set:{t}-ovr-7,tag:{t}-host1"),
        format!("tag-if=set:{t}-movr-7,tag:{t}-host1"),
        format!("dhcp-boot=tag:virtmasq-arch7,tag:!virtmasq-ipxe,tag:!{t}-ovr-7,ipxe.efi"),
        format!("dhcp-boot=tag:virtmasq-arch7,tag:!virtmasq-ipxe,tag:{t}-host0,tag:!{t}-movr-7,uuid.efi"),
        format!("dhcp-boot=tag:virtmasq-arch7,tag:!virtmasq-ipxe,tag:{t}-host1,mac.efi"),
        // Arch 9 follows the hosts' x86-64 files too.
        format!("dhcp-boot=tag:virtmasq-arch9,tag:!virtmasq-ipxe,tag:{t}-host1,mac.efi"),
    ] {
        assert!(has(&want), "missing {want}\n{lines:#?}");
    }
    // BIOS is not overridden: no override tag on its line.
    assert!(has(
        "dhcp-boot=tag:virtmasq-arch0,tag:!virtmasq-ipxe,undionly.kpxe"
    ));
}

#[test]
fn http_boot_gets_the_httpclient_vendor_class() {
    let n = net();
    let p = profile("boot_files = { http_x64 = \"http://10.10.0.1/ipxe.efi\" }\nipxe = \"http://10.10.0.1/s.ipxe\"");
    let lines = render_lines(&p, &n.scope(), LinesFor::Private).unwrap();
    assert!(
        lines.contains(
            &"dhcp-boot=tag:virtmasq-arch16,tag:!virtmasq-ipxe,http://10.10.0.1/ipxe.efi"
                .to_owned()
        ),
        "{lines:#?}"
    );
    assert!(lines.contains(&"dhcp-option-force=tag:virtmasq-arch16,60,HTTPClient".to_owned()));
    assert!(!lines.iter().any(|l| l.starts_with("enable-tftp")));
}

#[test]
fn ipxe_only_profile_for_virtual_machines() {
    let n = net();
    let lines = render_lines(&profile(""), &n.scope(), LinesFor::Private).unwrap();
    assert_eq!(
        lines.last().unwrap(),
        "dhcp-boot=tag:virtmasq-ipxe,http://10.10.0.1:8067/boot.ipxe"
    );
}

#[test]
fn contradictions_are_refused_naming_the_value() {
    let n = net();
    let cases = [
        ("mode = \"proxy\"\nboot_files = { http_x64 = \"http://h/x.efi\" }", "http_x64"),
        ("mode = \"proxy\"\npxelinux_config_file = \"a\"\nipxe = \"http://h/x\"", "209"),
        ("ipxe = \"boot-files\"", "gives no client anything"),
        ("boot_files = { bios = \"pxelinux.0\" }", "\"pxelinux.0\""),
        ("tftp_root = \"/t\"\nipxe = \"boot-files\"\nboot_files = { bios = \"undionly.kpxe\" }", "forever"),
        ("tftp_root = \"srv/tftp\"", "srv/tftp"),
        ("tftp_root = \"/srv/a,b\"", "/srv/a,b"),
        ("[[hosts]]\nmac = \"52:54:00:00:00:01\"\nipxe_url = \"http://h/a\"\n[[hosts]]\nmac = \"52:54:00:00:00:01\"\nipxe_url = \"http://h/b\"", "two host overrides"),
        ("ipxe = \"boot-files\"\nnext_server = \"10.0.0.5\"\nboot_files = { bios = \"pxelinux.0\" }\n[[hosts]]\nmac = \"52:54:00:00:00:01\"\nipxe_url = \"http://h/a\"", "ipxe_url"),
    ];
    for (text, needle) in cases {
        let err = render_lines(&profile(text), &n.scope(), LinesFor::Private)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("PXE profile of network 'lab'") && err.contains(needle),
            "{text}: {err}"
        );
    }
    let mut off = net();
    off.endpoint.address = "127.0.0.1".parse().unwrap();
    let err = render_lines(&profile(""), &off.scope(), LinesFor::Private)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("iPXE script URL") && err.contains("127.0.0.1"),
        "{err}"
    );
}

#[test]
fn boot_files_must_be_in_the_tftp_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir(root.join("arm64")).unwrap();
    for f in ["undionly.kpxe", "ipxe.efi", "arm64/snp.efi", "pxelinux.0"] {
        fs::write(root.join(f), b"x").unwrap();
    }
    let n = net();
    let with_root = |extra: &str| profile(&format!("tftp_root = \"{}\"\n{extra}", root.display()));
    let p = with_root("boot_files = { bios = \"undionly.kpxe\", efi_x64 = \"ipxe.efi\", efi_arm64 = \"arm64/snp.efi\" }");
    assert!(dnsmasq_lines(&p, &n.scope(), LinesFor::Private).is_ok());
    let cases = [
        (
            "boot_files = { efi_x64 = \"missing.efi\" }",
            "\"missing.efi\" for efi_x64 (option 93 = 7) does not exist",
        ),
        ("boot_files = { bios = \"arm64\" }", "is not a regular file"),
        // Proxy mode: dnsmasq sends "pxelinux.0" for a basename without a dot.
        (
            "mode = \"proxy\"\nboot_files = { bios = \"undionly\" }",
            "\"undionly.0\"",
        ),
        (
            "[[hosts]]\nmac = \"52:54:00:00:00:01\"\nboot_files = { bios = \"nope.0\" }",
            "of host mac 52:54:00:00:00:01",
        ),
    ];
    for (extra, needle) in cases {
        let err = dnsmasq_lines(&with_root(extra), &n.scope(), LinesFor::Private)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(needle) && err.contains(&root.display().to_string()),
            "{extra}: {err}"
        );
    }
    let ok = with_root("mode = \"proxy\"\nboot_files = { bios = \"pxelinux\" }");
    assert!(check_files(&ok, &n.name).is_ok(), "pxelinux.0 exists");
    let gone = profile("tftp_root = \"/nonexistent/virtmasq-test\"");
    let err = check_files(&gone, &n.name).unwrap_err().to_string();
    assert!(
        err.contains("/nonexistent/virtmasq-test") && err.contains("cannot be read"),
        "{err}"
    );
}

#[test]
fn a_system_wide_enable_tftp_is_not_narrowed() {
    let n = net();
    let scope = n.scope();
    let sys = render_lines(&profile(BASIC), &scope, LinesFor::SystemTftpEverywhere).unwrap();
    assert!(
        !sys.iter().any(|l| l.starts_with("enable-tftp")),
        "{sys:#?}"
    );
    assert!(sys.contains(&"tftp-root=/srv/tftp,virbr10".to_owned()));
    assert!(
        sys.iter().any(|l| l.starts_with("dhcp-boot=tag:virbr10,")),
        "still scoped"
    );
    assert!(system_side_effect(&profile(BASIC)).is_none());
    let proxy = profile(&format!("mode = \"proxy\"\n{BASIC}"));
    assert!(system_side_effect(&proxy).unwrap().contains("PXEClient"));
}
