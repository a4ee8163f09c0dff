//! The cached Debian root, the throwaway copy each container boots, and writing files into it.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::process::{pid_alive, run_bounded, wait_child};

/// The cached root built by scripts/build-test-rootfs.sh (its default destination).
pub const DEFAULT_ROOTFS: &str = "/var/cache/virtmasq-tests/rootfs-bookworm-v1";
/// Overrides [`DEFAULT_ROOTFS`], e.g. to keep the cache on a bigger disk.
pub const ROOTFS_ENV: &str = "VIRTMASQ_TEST_ROOTFS";
const BUILD_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-test-rootfs.sh");
/// debootstrap takes about a minute; a slow mirror may take several.
const BUILD_LIMIT: Duration = Duration::from_secs(15 * 60);
/// Makes the temporary names of concurrent [`write_into`] calls distinct.
static WRITE_COUNTER: AtomicUsize = AtomicUsize::new(0);
/// Bound on the fallback full copy of the root (~220 MB).
const COPY_LIMIT: Duration = Duration::from_secs(5 * 60);

/// The libvirt variant's cached root (`build-test-rootfs.sh --variant libvirt`).
pub const LIBVIRT_ROOTFS: &str = "/var/cache/virtmasq-tests/rootfs-bookworm-libvirt-v1";
/// Overrides [`LIBVIRT_ROOTFS`].
pub const LIBVIRT_ROOTFS_ENV: &str = "VIRTMASQ_TEST_ROOTFS_LIBVIRT";

/// Which cached root a container boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Variant {
    /// systemd, dbus, Debian's dnsmasq service, libvirt0.
    #[default]
    Base,
    /// The base plus libvirt-daemon-system and libvirt-clients: a real libvirtd.
    Libvirt,
}

/// Path of the cached base root, after building it if it is missing.
pub fn ensure_rootfs() -> PathBuf {
    ensure_variant(Variant::Base)
}

/// Path of a cached root, after building it if it is missing. The script renames the root
/// into place only when complete, so an existing directory is a complete one.
pub fn ensure_variant(variant: Variant) -> PathBuf {
    let (env, default, flag): (&str, &str, &[&str]) = match variant {
        Variant::Base => (ROOTFS_ENV, DEFAULT_ROOTFS, &[]),
        Variant::Libvirt => (
            LIBVIRT_ROOTFS_ENV,
            LIBVIRT_ROOTFS,
            &["--variant", "libvirt"],
        ),
    };
    let root = std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from);
    if root.is_dir() {
        return root;
    }
    eprintln!(
        "container: building the test root {} (once)",
        root.display()
    );
    let started = Instant::now();
    let mut cmd = Command::new("bash");
    // Its own process group, so that a timeout also ends debootstrap and holds no lock.
    cmd.arg(BUILD_SCRIPT)
        .args(flag)
        .arg(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("container: cannot run {BUILD_SCRIPT}: {e}"));
    let status = wait_child(&mut child, BUILD_LIMIT).unwrap_or_else(|| {
        // SIGTERM lets the script stop debootstrap and remove its half-built root.
        let group = Pid::from_raw(child.id() as i32);
        let _ = killpg(group, Signal::SIGTERM);
        if wait_child(&mut child, Duration::from_secs(20)).is_none() {
            let _ = killpg(group, Signal::SIGKILL);
            wait_child(&mut child, Duration::from_secs(5));
        }
        panic!("container: {BUILD_SCRIPT} did not finish within {BUILD_LIMIT:?}; stopped")
    });
    assert!(
        status.success() && root.is_dir(),
        "container: {BUILD_SCRIPT} {} failed ({status}); see its output above",
        root.display()
    );
    eprintln!("container: test root built in {:.1?}", started.elapsed());
    root
}

/// How a container's root was made from the cached one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootKind {
    /// overlayfs: the cached root as lowerdir, upper and work dirs in the container's temp dir.
    /// Instant and ~100 KB per container; the default.
    Overlay,
    /// A full `cp -a --reflink=auto` copy, used when overlayfs is refused (e.g. the cache or the
    /// temp dir is itself on overlayfs, as inside some CI containers). Seconds and ~220 MB.
    Copy,
}

/// Makes `dir/merged` a writable view of `lower`: an overlay mount, or a copy if that fails.
pub fn prepare(lower: &Path, dir: &Path) -> RootKind {
    let merged = dir.join("merged");
    let (upper, work) = (dir.join("upper"), dir.join("work"));
    for d in [&merged, &upper, &work] {
        fs::create_dir(d).unwrap_or_else(|e| panic!("container: mkdir {}: {e}", d.display()));
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let mut mount = Command::new("mount");
    mount
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(&merged);
    match run_bounded(&mut mount, Duration::from_secs(20), None) {
        Ok(out) if out.status.success() => return RootKind::Overlay,
        Ok(out) => eprintln!(
            "container: overlay mount failed ({}), copying the root instead",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => eprintln!("container: overlay mount failed ({e}), copying the root instead"),
    }
    let mut copy = Command::new("cp");
    copy.args(["-a", "--reflink=auto", "-T"])
        .arg(lower)
        .arg(&merged);
    let out = run_bounded(&mut copy, COPY_LIMIT, None)
        .unwrap_or_else(|e| panic!("container: copying {}: {e}", lower.display()));
    assert!(
        out.status.success(),
        "container: cp -a {} failed: {}",
        lower.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    RootKind::Copy
}

/// Mount points at or below `dir`, deepest first, from our mount table.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = table
        .lines()
        .filter_map(|line| line.split_whitespace().nth(4))
        // mountinfo escapes blanks as \040; our paths never contain any.
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}

/// Unmounts everything at or below `dir`: a plain umount, retried for a few seconds while
/// processes let go, then a lazy one. True if nothing is mounted there any more.
pub fn unmount_all(dir: &Path) -> bool {
    for point in mounts_under(dir) {
        let umount = |lazy: bool| {
            let mut cmd = Command::new("umount");
            if lazy {
                cmd.arg("-l");
            }
            cmd.arg(&point);
            run_bounded(&mut cmd, Duration::from_secs(20), None).is_ok_and(|o| o.status.success())
        };
        let done = super::process::wait_for(|| umount(false), Duration::from_secs(3));
        if !done && !umount(true) {
            eprintln!("container: cannot unmount {}", point.display());
        }
    }
    mounts_under(dir).is_empty()
}

/// Removes the temp dirs (`$TMPDIR/vqct-<pid>-<n>.*`) of containers whose test process is gone,
/// unmounting their roots first; a dir still mounted is left alone rather than recursed into.
pub fn sweep_stale_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let dead = super::cgroup::owner_pid(&name).is_some_and(|pid| !pid_alive(pid));
        if dead && entry.file_type().is_ok_and(|t| t.is_dir()) && unmount_all(&entry.path()) {
            // Best effort: another test process may be sweeping the same dir.
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// The host path of `path` inside the tree `root`, resolving symlinks as the container would:
/// absolute link targets are taken relative to `root`, `..` never climbs above it. Components
/// that do not exist yet are kept as they are. Panics on a relative `path` or a symlink loop.
pub fn resolve(root: &Path, path: &str) -> PathBuf {
    assert!(
        path.starts_with('/'),
        "container: path {path:?} must be absolute (as seen inside the container)"
    );
    let mut pending: Vec<OsString> = components(Path::new(path));
    pending.reverse();
    let mut resolved: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved
            .iter()
            .fold(root.to_path_buf(), |p, c| p.join(c))
            .join(&part);
        match fs::read_link(&candidate) {
            Ok(target) => {
                links += 1;
                assert!(
                    links <= 40,
                    "container: too many symlinks resolving {path:?}"
                );
                if target.is_absolute() {
                    resolved.clear();
                }
                pending.extend(components(&target).into_iter().rev());
            }
            Err(_) => resolved.push(part),
        }
    }
    resolved.iter().fold(root.to_path_buf(), |p, c| p.join(c))
}

fn components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// Writes `contents` to `path_in_container` under the tree `root` with permission bits `mode`,
/// creating parent directories. The file is written as a dotfile beside the target and renamed
/// over it, so that dnsmasq's conf-dir and inotify watchers (which skip dotfiles) only ever see
/// the complete file.
pub fn write_into(root: &Path, path_in_container: &str, contents: &str, mode: u32) {
    let target = resolve(root, path_in_container);
    let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else {
        panic!("container: cannot write to {path_in_container:?}: no file name");
    };
    fs::create_dir_all(parent)
        .unwrap_or_else(|e| panic!("container: mkdir -p {}: {e}", parent.display()));
    let seq = WRITE_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = parent.join(format!(
        ".{}.tmp-{}-{seq}",
        name.to_string_lossy(),
        std::process::id()
    ));
    fs::write(&tmp, contents)
        .and_then(|()| fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)))
        .and_then(|()| fs::rename(&tmp, &target))
        .unwrap_or_else(|e| {
            let _ = fs::remove_file(&tmp);
            panic!("container: writing {}: {e}", target.display())
        });
}
