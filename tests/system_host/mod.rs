//! Helpers for the system transaction's fault tests: a booted Debian (real systemd, Debian's
//! dnsmasq unit) with the agent, a libvirt test-driver node of several networks, runs of the
//! agent with a failpoint, and snapshots of the conf-dir and hosts files with their modes.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::container::{write_into, BootOptions, Container};
use crate::lab::Lab;

/// The agent binary cargo built for these tests (a debug build: failpoints compiled in).
pub const BIN: &str = env!("CARGO_BIN_EXE_virtmasq");
/// The site's own LAN, served by the system dnsmasq from the administrator's file.
pub const SITE: &str = "vqsite0";
/// The administrator's own file in the conf-dir.
pub const SITE_CONF: &str =
    "# the site's own LAN\nno-ping\ndhcp-range=10.98.0.100,10.98.0.150,1h\n";
/// What the snapshots cover: the conf-dir and virtmasq's hosts files.
pub const DIRS: &[&str] = &["/etc/dnsmasq.d", "/var/lib/virtmasq/system"];

/// A managed network: name, bridge, third octet of its 10.x.y.0/24, range start and end.
pub type Net = (&'static str, &'static str, u8, u8, u8);

/// A libvirt test-driver node with `nets`.
pub fn node_xml(nets: &[Net]) -> String {
    let mut out = String::from("<node>");
    for (name, bridge, o3, lo, hi) in nets {
        out.push_str(&format!(
            "<network><name>{name}</name><forward mode='nat'/><bridge name='{bridge}'/>\
             <dns enable='no'/>\
             <ip address='10.{o3}.0.1' prefix='24'/><metadata>\
             <virtmasq:dhcp xmlns:virtmasq=\"http://virtmasq.org/xmlns/network/1.0\">\
             <virtmasq:range start=\"10.{o3}.0.{lo}\" end=\"10.{o3}.0.{hi}\" lease=\"1h\"/>\
             </virtmasq:dhcp></metadata></network>"
        ));
    }
    out + "</node>"
}

/// A lab with the site's bridge and `bridges` (name, address/prefix).
pub fn lab(name: &str, bridges: &[(&str, &str)]) -> Lab {
    let lab = Lab::new(name);
    lab.add_bridge(SITE, "10.98.0.1/24");
    for (b, cidr) in bridges {
        lab.add_bridge(b, cidr);
    }
    lab
}

/// A booted Debian with the agent in system mode, the site's file, `nets` in the node file,
/// and `files` (path, contents) written before boot (drop-ins).
pub fn boot<'l>(lab: &'l Lab, nets: &[Net], files: Vec<(String, String)>) -> Container<'l> {
    let node = node_xml(nets);
    let opts = BootOptions {
        binds_ro: vec![(PathBuf::from(BIN), "/usr/local/bin/virtmasq".into())],
        setup: Some(Box::new(move |root: &Path| {
            write_into(root, "/etc/dnsmasq.d/site.conf", SITE_CONF, 0o644);
            let cfg = "mode = \"system\"\n[libvirt]\nuri = \"test:///etc/virtmasq/node.xml\"\n";
            write_into(root, "/etc/virtmasq/virtmasq.toml", cfg, 0o644);
            write_into(root, "/etc/virtmasq/node.xml", &node, 0o644);
            for (path, text) in &files {
                write_into(root, path, text, 0o644);
            }
        })),
    };
    Container::boot(lab, &opts)
}

/// Points the node file at `nets`.
pub fn set_nets(ct: &Container, nets: &[Net]) {
    ct.write_file("/etc/virtmasq/node.xml", &node_xml(nets), 0o644);
}

/// Runs the agent inside with `args`, and `VIRTMASQ_FAILPOINT=<fp>` when given.
pub fn agent(ct: &Container, failpoint: Option<&str>, args: &[&str]) -> Output {
    let fp = format!("VIRTMASQ_FAILPOINT={}", failpoint.unwrap_or(""));
    let mut all = vec!["env", fp.as_str(), "virtmasq"];
    all.extend_from_slice(args);
    ct.exec(&all)
}

/// Runs `virtmasq sync` and fails the test unless it succeeds.
pub fn sync_ok(ct: &Container) -> String {
    let out = agent(ct, None, &["sync"]);
    assert!(out.status.success(), "{}", text(&out));
    text(&out)
}

/// Whether the process died of SIGKILL (as itself, or as nsenter passes it on).
pub fn killed(o: &Output) -> bool {
    o.status.signal() == Some(9) || o.status.code() == Some(137)
}

/// Status, stdout and stderr, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// One file of a snapshot: bytes, permission bits, owner and group.
pub type FileState = (Vec<u8>, u32, u32, u32);

/// Every file under the container directories `dirs` (dotfiles included), with its state.
pub fn snapshot(ct: &Container, dirs: &[&str]) -> BTreeMap<PathBuf, FileState> {
    let mut out = BTreeMap::new();
    for d in dirs {
        for p in walk(&ct.host_path(d)) {
            let m = std::fs::metadata(&p).unwrap();
            let state = (
                std::fs::read(&p).unwrap_or_default(),
                m.mode() & 0o7777,
                m.uid(),
                m.gid(),
            );
            out.insert(p, state);
        }
    }
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The names and first differing file of two snapshots, for assertion messages.
pub fn diff(a: &BTreeMap<PathBuf, FileState>, b: &BTreeMap<PathBuf, FileState>) -> String {
    let names = |s: &BTreeMap<PathBuf, FileState>| {
        s.keys()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
    };
    let first = a
        .iter()
        .find(|(p, s)| b.get(*p) != Some(s))
        .map(|(p, (bytes, mode, ..))| {
            format!(
                "{} ({mode:o}):\n{}",
                p.display(),
                String::from_utf8_lossy(bytes)
            )
        });
    format!(
        "{:?}\nvs\n{:?}\nfirst difference: {first:?}",
        names(a),
        names(b)
    )
}

/// The main PID of dnsmasq.service.
pub fn main_pid(ct: &Container) -> String {
    ct.exec_ok(&["systemctl", "show", "-P", "MainPID", "dnsmasq"])
        .trim()
        .to_owned()
}

/// `systemctl is-active dnsmasq`.
pub fn active(ct: &Container) -> String {
    let o = ct.exec(&["systemctl", "is-active", "dnsmasq"]);
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// The check Debian's unit runs before it starts dnsmasq (`ExecStartPre=`), with its output.
pub fn unit_check(ct: &Container) -> Result<(), String> {
    let o = ct.exec(&[
        "sh",
        "-c",
        ". /usr/share/dnsmasq/init-system-common && \
         $DAEMON --test ${CONFIG_DIR:+ -7 ${CONFIG_DIR}} ${DNSMASQ_OPTS:+ ${DNSMASQ_OPTS}}",
    ]);
    match o.status.success() {
        true => Ok(()),
        false => Err(text(&o)),
    }
}

/// Whether `ip` lies in 10.<net>.0.<lo..=hi>.
pub fn within(ip: Option<Ipv4Addr>, net: u8, lo: u8, hi: u8) -> bool {
    ip.is_some_and(|ip| ip.octets()[..3] == [10, net, 0] && (lo..=hi).contains(&ip.octets()[3]))
}
