//! libvirt's client library is loaded when a command first needs it, not linked: commands that
//! never call libvirt start without it (and work on a host without it), and one that needs it
//! says clearly that it is missing.

mod lab;
mod support;

use std::path::PathBuf;
use std::process::Command;

use support::*;

/// The file `libvirt.so.0` resolves to on this machine.
fn libvirt_file() -> PathBuf {
    let dirs = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
    ];
    dirs.iter()
        .map(|d| PathBuf::from(d).join("libvirt.so.0"))
        .find(|p| p.exists())
        .expect("libvirt.so.0 is installed (scripts/install-deps.sh: libvirt0)")
        .canonicalize()
        .unwrap()
}

#[test]
fn the_binary_does_not_link_libvirt() {
    let out = Command::new("readelf")
        .args(["-d", BIN])
        .output()
        .expect("readelf");
    assert!(out.status.success());
    let dynamic = String::from_utf8_lossy(&out.stdout);
    assert!(dynamic.contains("(NEEDED)"), "{dynamic}");
    assert!(!dynamic.contains("libvirt"), "{dynamic}");
}

/// Runs `virtmasq ARGS` in a mount namespace where libvirt's library is an empty file.
fn without_libvirt(cfg: &std::path::Path, args: &[&str]) -> std::process::Output {
    let script = format!(
        "mount --bind /dev/null {} && exec \"$@\"",
        libvirt_file().display()
    );
    Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            "sh",
            BIN,
        ])
        .arg("--config")
        .arg(cfg)
        .args(args)
        .output()
        .expect("unshare")
}

#[test]
fn without_libvirt_filter_commands_work_and_libvirt_commands_say_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "test:///default", "");

    let list = without_libvirt(&cfg, &["filter", "list"]);
    assert!(
        list.status.success(),
        "filter list needs no libvirt: {}",
        String::from_utf8_lossy(&list.stderr)
    );
    assert!(String::from_utf8_lossy(&list.stdout).contains("unknown macs: allow"));

    let render = without_libvirt(&cfg, &["render", "default"]);
    let err = String::from_utf8_lossy(&render.stderr);
    assert_eq!(render.status.code(), Some(69), "{err}");
    assert!(
        err.contains("test:///default")
            && err.contains("libvirt0")
            && err.contains("cannot be loaded"),
        "{err}"
    );

    // The same command with the library there answers.
    let ok = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .args(["render", "default"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&ok.stderr).contains("cannot be loaded"),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}
