//! Helpers shared by the end-to-end tests: a libvirt test-driver node file, a configuration
//! under the lab's directory, and the agent binary run inside the lab's host namespace.
#![allow(dead_code)]

pub mod bus;
pub mod notify;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// The agent binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_virtmasq");

/// The hook's own binary (no libvirt loaded), which the packaged shim runs.
pub const HOOK_BIN: &str = env!("CARGO_BIN_EXE_virtmasq-hook");

/// A network for the libvirt test driver's node file.
pub struct TestNet<'a> {
    /// libvirt name.
    pub name: &'a str,
    /// Bridge.
    pub bridge: &'a str,
    /// `address/prefix` of the bridge.
    pub ip: &'a str,
    /// Inner XML of `<virtmasq:dhcp>` (ranges, hosts), or None for no metadata.
    pub dhcp: Option<&'a str>,
}

/// Escapes the five XML special characters.
pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

/// The `<network>` element of one test network.
pub fn network_xml(net: &TestNet) -> String {
    let (addr, prefix) = net.ip.split_once('/').expect("ip as address/prefix");
    let meta = net
        .dhcp
        .map(|inner| {
            format!(
                "<metadata><virtmasq:dhcp xmlns:virtmasq=\"http://virtmasq.org/xmlns/network/1.0\" dns=\"no\">{inner}</virtmasq:dhcp></metadata>"
            )
        })
        .unwrap_or_default();
    format!(
        "<network><name>{}</name><bridge name='{}'/><dns enable='no'/><ip address='{addr}' prefix='{prefix}'/>{meta}</network>",
        xml_escape(net.name),
        xml_escape(net.bridge)
    )
}

/// Writes a test-driver node file with these networks and returns its `test://` URI.
pub fn write_node(dir: &Path, file: &str, nets: &[TestNet]) -> String {
    let body: String = nets.iter().map(network_xml).collect();
    let path = dir.join(file);
    fs::write(&path, format!("<node>{body}</node>")).expect("write node.xml");
    format!("test://{}", path.display())
}

/// Writes a configuration whose paths all lie under `dir`; `extra` is appended verbatim.
pub fn write_config(dir: &Path, uri: &str, extra: &str) -> PathBuf {
    let path = dir.join("virtmasq.toml");
    let text = format!(
        "mode = \"private\"\n[paths]\nstate_dir = \"{d}/state\"\nrun_dir = \"{d}/run\"\nconf_dir = \"{d}/dnsmasq.d\"\n\
         [libvirt]\nuri = \"{uri}\"\npoll_interval_secs = 1\nlease_status_dir = \"{d}/libvirt-dnsmasq\"\n[dnsmasq]\nno_ping = true\n{extra}",
        d = dir.display()
    );
    fs::write(&path, text).expect("write config");
    path
}

/// The pid in a pid file, if the file holds one and that process lives.
pub fn live_pid(pid_file: &Path) -> Option<i32> {
    let pid: i32 = fs::read_to_string(pid_file).ok()?.trim().parse().ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

/// Sends `sig` to process `pid` (a test's agent), panicking if it cannot.
pub fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig)
        .unwrap_or_else(|e| panic!("signal {sig} to {pid}: {e}"));
}

/// Pids of every process whose command line contains `needle`.
pub fn pids_with_arg(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = fs::read(entry.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmd).contains(needle) {
                out.push(pid);
            }
        }
    }
    out
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs the agent binary to completion (bounded by `timeout` via coreutils `timeout`).
pub fn run_agent(args: &[&str], timeout: Duration) -> Output {
    Command::new("timeout")
        .arg(timeout.as_secs().to_string())
        .arg(BIN)
        .args(args)
        .output()
        .expect("run virtmasq")
}

/// Lists every file below `dir` (relative paths), sorted.
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap_or(&p).display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
