//! The RPM: built from packaging/rpm/virtmasq.spec with Debian's rpmbuild, and checked for
//! the same scriptlets and files as the Debian package.

use std::process::Command;

use super::{assets, BIN, MANIFEST};

/// The RPM builds from packaging/rpm/virtmasq.spec (Debian's rpmbuild, with the systemd
/// macros Fedora would provide) and carries the same scriptlets and files.
#[test]
fn rpm_builds_from_the_spec() {
    let assets = assets();
    let work = tempfile::tempdir().unwrap();
    for part in ["packaging", "dbus", "conf.d", "README.md"] {
        let out = Command::new("cp")
            .args(["-a", &format!("{MANIFEST}/{part}")])
            .arg(work.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "cp {part}: {out:?}");
    }
    let top = work.path().join("rpmbuild");
    let out = Command::new("rpmbuild")
        .current_dir(work.path())
        .args(["-bb", "--build-in-place", "--nodeps"])
        .args(["--load", "packaging/rpm/macros.systemd-debian"])
        .args(["-D", &format!("_topdir {}", top.display())])
        .args(["-D", &format!("prebuilt_bin {BIN}")])
        .args(["-D", &format!("prebuilt_assets {}", assets.display())])
        // Fast: the test build's binary is large and unstripped.
        .args(["-D", "__strip /bin/true", "-D", "debug_package %{nil}"])
        .args(["-D", "_binary_payload w1.gzdio"])
        .arg("packaging/rpm/virtmasq.spec")
        .output()
        .expect("rpmbuild must be installed (scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "rpmbuild failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rpm = top.join("RPMS/x86_64/virtmasq-0.1.0-1.x86_64.rpm");
    let query = |what: &str| {
        let out = Command::new("rpm")
            .args(["-qp", what])
            .arg(&rpm)
            .output()
            .unwrap();
        assert!(out.status.success(), "rpm -qp {what}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let scripts = query("--scripts");
    for needle in [
        "virtmasq setup --no-start",
        "virtmasq teardown --keep-enabled",
        "preset virtmasq.service",
        "try-restart virtmasq.service",
    ] {
        assert!(scripts.contains(needle), "{needle} missing:\n{scripts}");
    }
    let list = query("--list");
    for path in [
        "/usr/bin/virtmasq",
        "/usr/lib/systemd/system/virtmasq.service",
        "/usr/libexec/virtmasq/libvirt-hook",
        "/usr/libexec/virtmasq/virtmasq-hook",
        "/usr/share/dbus-1/system.d/org.virtmasq.Agent1.conf",
        "/usr/share/man/man1/virtmasq.1.gz",
        "/var/lib/virtmasq",
    ] {
        assert!(list.lines().any(|l| l == path), "{path} missing:\n{list}");
    }
    assert_eq!(query("--configfiles").trim(), "/etc/virtmasq/virtmasq.toml");
    // Loaded at run time: rpm's dependency generator cannot see it.
    let requires = query("--requires");
    assert!(
        requires.lines().any(|l| l.starts_with("libvirt-libs")),
        "{requires}"
    );
}
