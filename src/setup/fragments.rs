//! Teardown's last step: virtmasq's fragments out of the system dnsmasq's conf-dir, dnsmasq
//! restarted on what remains (only if it runs: teardown never starts a dnsmasq that was
//! stopped), then the hosts files those fragments named.
//!
//! Only files that carry virtmasq's mark are removed; the administrator's files are never
//! touched. A restart that fails is reported and does not fail teardown: what remains is the
//! administrator's own configuration, and a package must stay removable.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{io_err, Layout, Report, SetupError, Units};
use crate::config::Config;
use crate::fsutil::FileLock;
use crate::system::apply::observe;

/// How long teardown waits for a `sync` or the hook that holds the system-mode lock.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// Removes every fragment and hosts file of virtmasq's; see the module documentation.
pub async fn remove_all(
    cfg: &Config,
    layout: &Layout,
    units: Option<&Units>,
    report: &mut Report,
) -> Result<(), SetupError> {
    let conf_dir = layout.at(&cfg.paths.conf_dir);
    let hosts_dir = layout.at(cfg.paths.state_dir.join("system"));
    let state = layout.at(&cfg.paths.state_dir);
    // The same lock as `sync`, the hook and the daemon take before they write these files.
    let _lock = match state.is_dir() {
        true => {
            let path = state.join("system.lock");
            Some(FileLock::acquire(&path, LOCK_WAIT).map_err(io_err("lock", &path))?)
        }
        false => None,
    };
    // Everything of virtmasq's goes: an interrupted change is forgotten, not finished later.
    crate::system::recover::discard(&state, &conf_dir, &hosts_dir)
        .map_err(io_err("remove", &state))?;
    let (fragments, hosts) = ours(&conf_dir, &hosts_dir)?;
    for path in &fragments {
        fs::remove_file(path).map_err(io_err("remove", path))?;
        report
            .changes
            .push(format!("removed {}", inside(layout, path).display()));
    }
    if !fragments.is_empty() {
        restart_if_running(cfg, units, report).await?;
    }
    for path in &hosts {
        fs::remove_file(path).map_err(io_err("remove", path))?;
        report
            .changes
            .push(format!("removed {}", inside(layout, path).display()));
    }
    Ok(())
}

/// virtmasq's fragments and hosts files (host paths).
fn ours(conf_dir: &Path, hosts_dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>), SetupError> {
    if conf_dir.is_dir() {
        let observed = observe(conf_dir, hosts_dir).map_err(|e| SetupError::Io {
            action: "read",
            path: conf_dir.to_owned(),
            source: std::io::Error::other(crate::error::chain(&e)),
        })?;
        return Ok((
            observed.fragments.into_keys().collect(),
            observed.hosts.into_keys().collect(),
        ));
    }
    let hosts = match fs::read_dir(hosts_dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "hosts"))
            .collect(),
        Err(_) => Vec::new(),
    };
    Ok((Vec::new(), hosts))
}

async fn restart_if_running(
    cfg: &Config,
    units: Option<&Units>,
    report: &mut Report,
) -> Result<(), SetupError> {
    let unit = &cfg.system.unit;
    let Some(units) = units else {
        return Ok(());
    };
    if !units.is_active(unit).await? {
        report.notes.push(format!(
            "{unit} is not running: it reads the remaining configuration when it starts"
        ));
        return Ok(());
    }
    match units.restart(unit, cfg.system.restart_timeout()).await {
        Ok(took) => report.changes.push(format!(
            "restarted {unit} on the remaining configuration in {} ms",
            took.as_millis()
        )),
        Err(e) => report.notes.push(format!(
            "warning: {unit} did not restart on the remaining configuration (which is not \
             virtmasq's): {}",
            crate::error::chain(&e)
        )),
    }
    Ok(())
}

/// `path` as seen inside the root.
fn inside(layout: &Layout, path: &Path) -> PathBuf {
    match path.strip_prefix(&layout.root) {
        Ok(rel) => Path::new("/").join(rel),
        Err(_) => path.to_owned(),
    }
}
