//! What a private instance's files are and who may write them: root writes the configuration,
//! hosts and lease directories (0755, root's own); dnsmasq writes only its pid file, in a
//! directory of its own, and the lease file root hands it with `fchown`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{io_err, PrivateError};
use crate::dnsmasq::process::{self, RunAs};
use crate::dnsmasq::render::{InstancePaths, PrivateRender};
use crate::fsutil;
use crate::model::NetworkName;

/// Writes the hosts file and, with `conf`, the configuration after `dnsmasq --test` (as
/// `run_as`) accepted it. dnsmasq runs unprivileged, so directories and files are
/// world-readable; only root writes them.
pub(super) fn write_files(
    binary: &Path,
    name: &NetworkName,
    paths: &InstancePaths,
    render: &PrivateRender,
    conf: bool,
    run_as: RunAs,
) -> Result<(), PrivateError> {
    let conf_dir = paths.conf.parent().unwrap_or(Path::new("."));
    for dir in [Some(conf_dir), paths.leases.parent()]
        .into_iter()
        .flatten()
    {
        root_dir(dir).map_err(|e| io_err(name, dir, e))?;
    }
    fsutil::write_atomic(&paths.hosts, render.hosts.as_bytes(), 0o644)
        .map_err(|e| io_err(name, &paths.hosts, e))?;
    if conf {
        crate::dnsmasq::validate::check_text(binary, conf_dir, &render.conf, run_as).map_err(
            |message| PrivateError::Invalid {
                network: name.clone(),
                message,
            },
        )?;
        fsutil::write_atomic(&paths.conf, render.conf.as_bytes(), 0o644)
            .map_err(|e| io_err(name, &paths.conf, e))?;
    }
    Ok(())
}

/// A directory only the agent writes (its configuration, hosts and lease files): owned by the
/// agent's own user and group, mode 0755. An older layout (group-writable, with dnsmasq's
/// shared primary group) is taken back.
pub(super) fn root_dir(dir: &Path) -> std::io::Result<()> {
    let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    fsutil::secure_dir(dir, 0o755, uid.as_raw(), gid.as_raw())
}

/// What dnsmasq itself writes. Its pid file goes in [`InstancePaths::own_dir`], owned by its
/// user and the agent's group (mode 0770: the agent removes a stale pid file with no
/// CAP_DAC_OVERRIDE; no other account can enter). Its lease file lies in a directory of the
/// agent's and is handed over alone: created by the agent if missing, given to dnsmasq's
/// account with `fchown` on the descriptor (dnsmasq rewrites it in place).
pub(super) fn prepare_writable(
    name: &NetworkName,
    paths: &InstancePaths,
    run_as: RunAs,
) -> Result<(), (PathBuf, std::io::Error)> {
    let gid = nix::unistd::getegid().as_raw();
    fsutil::secure_dir(&paths.own_dir, 0o770, run_as.uid, gid)
        .map_err(|e| (paths.own_dir.clone(), e))?;
    let file = open_lease_file(name, &paths.leases).map_err(|e| (paths.leases.clone(), e))?;
    std::os::unix::fs::fchown(&file, Some(run_as.uid), Some(run_as.gid))
        .map_err(|e| (paths.leases.clone(), e))
}

/// The lease file, opened without following a symlink or blocking on a FIFO. Anything but a
/// regular file with a single link (what an older, group-writable layout may hold) is not a
/// lease file of ours: it is removed and an empty one made.
fn open_lease_file(name: &NetworkName, path: &Path) -> std::io::Result<std::fs::File> {
    match fsutil::open_regular(path, true) {
        Ok(f) => return Ok(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            let meta = path.symlink_metadata()?;
            if meta.file_type().is_file() && std::os::unix::fs::MetadataExt::nlink(&meta) == 1 {
                return Err(e);
            }
            tracing::warn!(network = %name, path = %path.display(), "not a lease file: replaced by an empty one");
            std::fs::remove_file(path)?;
        }
    }
    fsutil::create_new(path, 0o644)
}

/// Removes an instance's runtime files and directories (its lease file stays).
pub(super) fn remove_runtime_files(paths: &InstancePaths) -> Result<(), (PathBuf, std::io::Error)> {
    for path in [&paths.conf, &paths.hosts, &paths.pid] {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err((path.clone(), e)),
            _ => {}
        }
    }
    let _ = std::fs::remove_dir(&paths.own_dir);
    if let Some(dir) = paths.conf.parent() {
        let _ = std::fs::remove_dir(dir);
    }
    Ok(())
}

/// Removes what an earlier run (a crash, a SIGKILL) left in the run directory for networks
/// that are no longer served: a stray dnsmasq of ours is stopped, its files removed. Lease
/// files stay.
pub(super) fn sweep_leftovers(run_dir: &Path, state_dir: &Path, wanted: &BTreeSet<NetworkName>) {
    for entry in std::fs::read_dir(run_dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(net) = name.parse::<NetworkName>() else {
            continue;
        };
        let paths = InstancePaths::new(run_dir, state_dir, net.as_str());
        if wanted.contains(&net) || !entry.path().join("dnsmasq.conf").exists() {
            continue;
        }
        if process::stop_stale(&paths.pid, &paths.conf) {
            tracing::warn!(network = %net, "stopped a dnsmasq left by an earlier run");
        }
        let _ = remove_runtime_files(&paths);
        tracing::info!(network = %net, "removed the runtime files of a network no longer served");
    }
}
