//! A real libvirtd (Debian 12's 9.0, network driver only) inside a lab's host namespace, for
//! the hook and adopt/release tests.
//!
//! libvirtd runs in the lab's network namespace and in a private mount namespace of its own:
//! overlays on `/etc` and `/var` (their upper layers in the lab's directory) and a tmpfs on
//! `/run`, so nothing it writes reaches the host, and the host's libvirt configuration, if any,
//! is not touched. Its sockets are in the lab's directory; clients connect with
//! `network:///system?socket=...` (the network driver alone answers; no QEMU probing). The
//! networks use `<forward mode='open'/>`, for which libvirt adds no firewall rules: iptables is
//! not installed on these machines, and libvirt's other modes need it.
//!
//! Dropping a [`Libvirtd`] destroys its networks and stops it; the lab then removes the
//! namespace with whatever is left in it. Every wait is bounded.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::lab::Lab;

/// libvirt's loadable network driver (the only one this libvirtd loads), below
/// `/usr/lib/<multiarch triplet>/`.
fn network_driver() -> PathBuf {
    let tail = "libvirt/connection-driver/libvirt_driver_network.so";
    let dirs = fs::read_dir("/usr/lib").into_iter().flatten().flatten();
    dirs.map(|d| d.path().join(tail))
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("/usr/lib/x86_64-linux-gnu").join(tail))
}

/// The hook shim as packaged.
pub const SHIM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/libvirt-hook");

/// How long one virsh call may take.
const VIRSH_LIMIT: Duration = Duration::from_secs(60);

/// Sets up the mount namespace and becomes libvirtd. `$1` is the directory.
const START: &str = r#"
D=$1
for d in etc var; do mkdir -p "$D/ovl/$d-up" "$D/ovl/$d-work"; done
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$D/ovl/etc-up,workdir=$D/ovl/etc-work" /etc
mount -t overlay overlay -o "lowerdir=/var,upperdir=$D/ovl/var-up,workdir=$D/ovl/var-work" /var
mount -t tmpfs tmpfs /run
mkdir -p /etc/libvirt/hooks/network.d /var/lib/libvirt /var/cache/libvirt /var/log/libvirt
if [ -f "$D/hook" ]; then install -m 0755 "$D/hook" /etc/libvirt/hooks/network.d/virtmasq; fi
if [ -f "$D/default" ]; then install -m 0644 "$D/default" /etc/default/virtmasq; fi
export LIBVIRT_DRIVER_DIR="$D/drivers"
exec libvirtd -f "$D/libvirtd.conf"
"#;

/// The hook to install, and the lines of `/etc/default/virtmasq` that the shim reads.
pub struct Hook {
    /// `VIRTMASQ_OPTS` (global options: `--config FILE`).
    pub opts: String,
    /// `VIRTMASQ_HOOK_OPTS` (`--veto-unservable`).
    pub hook_opts: String,
}

/// A running libvirtd; see the module documentation.
pub struct Libvirtd<'a> {
    lab: &'a Lab,
    pid: u32,
    dir: PathBuf,
    /// The URI clients use.
    pub uri: String,
}

impl<'a> Libvirtd<'a> {
    /// Starts libvirtd in `lab`'s host namespace, with the packaged hook shim installed when
    /// `hook` is given. Panics (the test fails) if it does not answer within 20 s.
    pub fn start(lab: &'a Lab, hook: Option<Hook>) -> Self {
        let driver = network_driver();
        for needed in [
            Path::new("/usr/sbin/libvirtd"),
            Path::new("/usr/bin/virsh"),
            &driver,
        ] {
            assert!(
                needed.exists(),
                "{} is missing: install libvirt-daemon and libvirt-clients",
                needed.display()
            );
        }
        let dir = lab.dir().join("libvirtd");
        fs::create_dir_all(dir.join("drivers")).unwrap();
        fs::create_dir_all(dir.join("sock")).unwrap();
        std::os::unix::fs::symlink(&driver, dir.join("drivers/libvirt_driver_network.so")).unwrap();
        let conf = format!(
            "unix_sock_dir = \"{}/sock\"\nunix_sock_rw_perms = \"0700\"\n\
             auth_unix_rw = \"none\"\nauth_unix_ro = \"none\"\nlog_outputs = \"3:stderr\"\n",
            dir.display()
        );
        fs::write(dir.join("libvirtd.conf"), conf).unwrap();
        if let Some(hook) = hook {
            fs::copy(SHIM, dir.join("hook")).unwrap();
            let default = format!(
                "VIRTMASQ={}\nVIRTMASQ_HOOK={}\nVIRTMASQ_OPTS=\"{}\"\nVIRTMASQ_HOOK_OPTS=\"{}\"\n",
                crate::support::BIN,
                crate::support::HOOK_BIN,
                hook.opts,
                hook.hook_opts
            );
            fs::write(dir.join("default"), default).unwrap();
        }
        let d = dir.to_str().unwrap();
        let args = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-ec",
            START,
            "sh",
            d,
        ];
        let pid = lab.spawn_host(&args);
        let lv = Libvirtd {
            lab,
            pid,
            uri: format!("network:///system?socket={d}/sock/libvirt-sock"),
            dir,
        };
        let up = Lab::wait_for(
            || lv.virsh(&["net-list", "--all"]).status.success(),
            Duration::from_secs(20),
        );
        assert!(up, "libvirtd did not answer within 20 s:\n{}", lv.log());
        lv
    }

    /// libvirtd's own log (stderr), including the hook's output when it failed.
    pub fn log(&self) -> String {
        self.lab.process_log(self.pid)
    }

    /// Runs virsh against this libvirtd, bounded.
    pub fn virsh(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .arg(VIRSH_LIMIT.as_secs().to_string())
            .args(["virsh", "-q", "-c", &self.uri])
            .args(args)
            .output()
            .expect("run virsh")
    }

    /// Runs virsh and returns its stdout; panics with its stderr if it fails.
    pub fn virsh_ok(&self, args: &[&str]) -> String {
        let out = self.virsh(args);
        assert!(
            out.status.success(),
            "virsh {args:?} failed: {}\nlibvirtd:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Defines a network from `xml`.
    pub fn define(&self, xml: &str) {
        let file = self.dir.join(format!("define-{}.xml", fastrand_suffix()));
        fs::write(&file, xml).unwrap();
        self.virsh_ok(&["net-define", file.to_str().unwrap()]);
    }

    /// The persistent definition of network `name`.
    pub fn definition(&self, name: &str) -> String {
        self.virsh_ok(&["net-dumpxml", "--inactive", name])
    }

    /// Pids of the dnsmasq this libvirtd runs for network `name` (other tests may run a
    /// libvirtd with a network of the same name: only this namespace counts).
    pub fn dnsmasq_of(&self, name: &str) -> Vec<i32> {
        let netns = |pid: i32| fs::read_link(format!("/proc/{pid}/ns/net")).ok();
        let ours = netns(self.pid as i32);
        let conf = format!("/var/lib/libvirt/dnsmasq/{name}.conf");
        let mut pids = crate::support::pids_with_arg(&conf);
        pids.retain(|p| ours.is_some() && netns(*p) == ours);
        pids
    }

    /// A file as libvirtd and its hooks see it (inside its mount namespace).
    pub fn inside(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{path}", self.pid))
    }

    /// Writes `text` to a file in the lab directory that libvirtd's clients can read.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        path
    }
}

impl Drop for Libvirtd<'_> {
    fn drop(&mut self) {
        // Networks first, so that libvirt stops its dnsmasq instances itself.
        let active = self.virsh(&["net-list", "--name"]);
        for name in String::from_utf8_lossy(&active.stdout).split_whitespace() {
            let _ = self.virsh(&["net-destroy", name]);
        }
        self.lab.stop_process(self.pid, Duration::from_secs(5));
    }
}

/// A suffix that keeps file names apart within one test.
fn fastrand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A libvirt network that libvirt serves itself: `<forward mode='open'/>` (no firewall rules),
/// an IPv4 `<ip>` with a `<dhcp>` whose inner XML is `dhcp`, and `extra` elements.
pub fn served_network(name: &str, bridge: &str, ip: &str, dhcp: &str, extra: &str) -> String {
    format!(
        "<network><name>{name}</name><forward mode='open'/><bridge name='{bridge}' stp='off'/>\
         {extra}<ip address='{ip}' prefix='24'><dhcp>{dhcp}</dhcp></ip></network>"
    )
}
