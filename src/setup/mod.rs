//! `virtmasq setup` and `virtmasq teardown`: what a host needs beyond the files a package
//! copies, done so that running either twice changes nothing the second time.
//!
//! - setup: the state directory; the libvirt hook, a link from
//!   `/etc/libvirt/hooks/network.d/virtmasq` to the packaged shim; the system dnsmasq's drop-in
//!   that binds it to virtmasq while the PXE filter is on in system mode (and its removal when
//!   the filter is off); a `daemon-reload` when a unit file changed; then, unless told not to,
//!   `virtmasq.service` enabled and started.
//! - teardown: the drop-in removed first (so that stopping virtmasq does not stop the system
//!   dnsmasq), virtmasq stopped (and disabled unless told not to), the hook removed, then every
//!   fragment and hosts file of virtmasq's removed from the system dnsmasq's configuration and
//!   dnsmasq restarted on what remains, if it runs. State (leases, the filter's policy and
//!   hostsdir) stays: removing it is the package's purge.
//!
//! Every path is taken inside a root directory (`--root`, `/` by default), so tests run both
//! against a temporary tree; systemd is only used for the real root. Directories setup had to
//! create are recorded in the state directory and removed again by teardown when empty, and
//! only those: a directory that existed before is never removed.

mod files;
mod fragments;
mod units;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use crate::config::Config;
use crate::model::Mode;
use crate::systemd::SystemdError;

pub use files::Created;
pub use units::Units;

/// virtmasq's own unit.
pub const SERVICE: &str = "virtmasq.service";
/// Where packages install the libvirt hook shim (`packaging/libvirt-hook`).
pub const HOOK_SHIM: &str = "/usr/libexec/virtmasq/libvirt-hook";
/// The hook as libvirt (>= 6.5) looks for it.
pub const HOOK_LINK: &str = "/etc/libvirt/hooks/network.d/virtmasq";
/// Present when libvirt is installed; the hook is installed only then.
const LIBVIRT_ETC: &str = "/etc/libvirt";
/// Units that read the hook directory: the monolithic daemon and the modular network daemon.
const LIBVIRT_DAEMONS: [&str; 2] = ["libvirtd.service", "virtnetworkd.service"];
/// Administrators' unit directory, where drop-ins go.
const UNIT_DIR: &str = "/etc/systemd/system";
/// The drop-in's file name inside `<dnsmasq unit>.d/`.
pub const DROPIN_NAME: &str = "virtmasq-filter.conf";
/// The drop-in's text (`packaging/dnsmasq.service.d/virtmasq-filter.conf`).
pub const DROPIN: &str = include_str!("../../packaging/dnsmasq.service.d/virtmasq-filter.conf");
/// How long virtmasq may take to start (its first reconcile) or to stop.
const SERVICE_TIMEOUT: Duration = Duration::from_secs(90);

/// Something setup or teardown could not do. Messages name the file or unit.
#[derive(Debug, Error)]
pub enum SetupError {
    /// A file operation failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was tried: "create", "write", "remove", "read", "link".
        action: &'static str,
        /// The file (a host path).
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The shim the hook links to is not installed.
    #[error(
        "the libvirt hook shim {path} is missing: install virtmasq's package (or pass \
         --hook-shim with the shim's path)"
    )]
    MissingShim {
        /// Where it was looked for (a host path).
        path: PathBuf,
    },
    /// A systemd call failed.
    #[error("{what}")]
    Systemd {
        /// What was being done, e.g. "enabling virtmasq.service".
        what: String,
        /// systemd's error.
        #[source]
        source: SystemdError,
    },
    /// A D-Bus call to systemd failed.
    #[error("{what}")]
    Dbus {
        /// What was being done, e.g. "enabling virtmasq.service".
        what: String,
        /// The bus's error.
        #[source]
        source: Box<zbus::Error>,
    },
    /// A unit did not reach the state asked for in time.
    #[error("{unit} did not stop within {timeout:?} (it is {state})")]
    StopTimeout {
        /// The unit.
        unit: String,
        /// The bound.
        timeout: Duration,
        /// Its ActiveState when the wait gave up.
        state: String,
    },
}

pub(crate) fn io_err(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> SetupError {
    let path = path.to_owned();
    move |source| SetupError::Io {
        action,
        path,
        source,
    }
}

/// Where things are, inside a root.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The tree everything is taken in; `/` on a real host.
    pub root: PathBuf,
    /// The shim the hook links to, as seen inside the root.
    pub hook_shim: PathBuf,
}

impl Layout {
    /// The real host.
    pub fn host() -> Self {
        Self {
            root: PathBuf::from("/"),
            hook_shim: PathBuf::from(HOOK_SHIM),
        }
    }

    /// The host path of `path` (absolute, as seen inside the root).
    pub fn at(&self, path: impl AsRef<Path>) -> PathBuf {
        let p = path.as_ref();
        self.root.join(p.strip_prefix("/").unwrap_or(p))
    }

    /// The record of directories setup created (inside the state directory).
    fn record(&self, cfg: &Config) -> PathBuf {
        self.at(cfg.paths.state_dir.join("setup-created-dirs"))
    }

    /// The filter's drop-in for the system dnsmasq's unit, as seen inside the root.
    pub fn dropin(cfg: &Config) -> PathBuf {
        Path::new(UNIT_DIR)
            .join(format!("{}.d", cfg.system.unit))
            .join(DROPIN_NAME)
    }

    /// Its counterpart for virtmasq's own unit, as seen inside the root.
    pub fn service_dropin() -> PathBuf {
        Path::new(UNIT_DIR)
            .join(format!("{SERVICE}.d"))
            .join(DROPIN_NAME)
    }
}

/// What setup or teardown did, for a person.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Changes made, one line each; empty when nothing had to change.
    pub changes: Vec<String>,
    /// Things the administrator should know (the mode, a libvirtd restart, ...).
    pub notes: Vec<String>,
}

impl Report {
    /// The report as lines of text.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if self.changes.is_empty() {
            out.push_str("nothing to change\n");
        }
        for c in &self.changes {
            out.push_str(&format!("changed: {c}\n"));
        }
        for n in &self.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        out
    }
}

/// Options of setup.
#[derive(Debug, Clone, Copy)]
pub struct SetupOptions {
    /// Enable and start virtmasq.service.
    pub start: bool,
}

/// Options of teardown.
#[derive(Debug, Clone, Copy)]
pub struct TeardownOptions {
    /// Stop virtmasq.service.
    pub stop: bool,
    /// Disable virtmasq.service (a package leaves that to its own tools).
    pub disable: bool,
}

/// The drop-in for virtmasq.service that goes with [`DROPIN`]: the system dnsmasq stops when
/// virtmasq stops or fails, and this brings it back when virtmasq starts again (after a
/// failure too, through `Restart=`).
pub fn service_dropin_text(cfg: &Config) -> String {
    format!(
        "# Installed by `virtmasq setup` with {dropin} (the PXE filter is on): {unit} stops\n\
         # when virtmasq stops or fails, and starts again with it. Removed with it. Do not edit.\n\
         [Unit]\nWants={unit}\n",
        dropin = Layout::dropin(cfg).display(),
        unit = cfg.system.unit
    )
}

/// Whether the filter's drop-in belongs on this host.
pub fn wants_dropin(cfg: &Config, mode: Mode) -> bool {
    cfg.filter.enabled && mode == Mode::System
}

/// Prepares the host; see the module documentation. `units` is None where systemd is not to
/// be used (another root, no systemd running).
pub async fn setup(
    cfg: &Config,
    layout: &Layout,
    mode: Mode,
    units: Option<&Units>,
    opts: SetupOptions,
) -> Result<Report, SetupError> {
    let mut report = Report::default();
    let state = layout.at(&cfg.paths.state_dir);
    if files::ensure_dir(&state)? {
        report
            .changes
            .push(format!("created {}", cfg.paths.state_dir.display()));
    }
    let record = layout.record(cfg);
    let mut created = Created::load(&record)?;
    let hook_added = install_hook(layout, &mut created, &mut report)?;
    // systemd notices a changed unit file, not a drop-in added in a new directory: a drop-in
    // changed here always means a reload.
    let mut dropin_changed = false;
    for (dropin, text) in dropins(cfg) {
        dropin_changed |= if wants_dropin(cfg, mode) {
            let dir = dropin.parent().unwrap_or(Path::new("/"));
            created.ensure_dirs(layout, dir)?;
            let written = files::write_if_changed(&layout.at(&dropin), &text)?;
            if written {
                report.changes.push(format!(
                    "installed {} (the PXE filter is on: {} stops and starts with virtmasq)",
                    dropin.display(),
                    cfg.system.unit
                ));
            }
            written
        } else {
            remove_dropin(layout, &dropin, &mut created, &mut report)?
        };
    }
    created.save(&record)?;
    let Some(units) = units else {
        if opts.start {
            report.notes.push(format!(
                "systemd is not used here: enable and start {SERVICE} yourself"
            ));
        }
        return Ok(report);
    };
    units
        .reload_if_needed(&[SERVICE, &cfg.system.unit], dropin_changed, &mut report)
        .await?;
    if opts.start {
        units
            .enable_and_start(SERVICE, SERVICE_TIMEOUT, &mut report)
            .await?;
    }
    if hook_added {
        for daemon in LIBVIRT_DAEMONS {
            if units.is_active(daemon).await? {
                report.notes.push(format!(
                    "{daemon} reads its hook directory only when it starts: until it is \
                     restarted (`systemctl restart {daemon}`; running guests and networks are \
                     not affected), virtmasq follows libvirt's networks by polling every {} s",
                    cfg.libvirt.poll_interval().as_secs()
                ));
            }
        }
    }
    Ok(report)
}

/// Undoes [`setup`]; see the module documentation.
pub async fn teardown(
    cfg: &Config,
    layout: &Layout,
    units: Option<&Units>,
    opts: TeardownOptions,
) -> Result<Report, SetupError> {
    let mut report = Report::default();
    let record = layout.record(cfg);
    let mut created = Created::load(&record)?;
    let mut dropin_removed = false;
    for (dropin, _) in dropins(cfg) {
        dropin_removed |= remove_dropin(layout, &dropin, &mut created, &mut report)?;
    }
    if let Some(units) = units {
        units
            .reload_if_needed(&[SERVICE, &cfg.system.unit], dropin_removed, &mut report)
            .await?;
        if opts.stop {
            units.stop(SERVICE, SERVICE_TIMEOUT, &mut report).await?;
        }
        if opts.disable {
            units.disable(SERVICE, &mut report).await?;
        }
    }
    remove_hook(layout, &mut created, &mut report)?;
    created.save(&record)?;
    fragments::remove_all(cfg, layout, units, &mut report).await?;
    report.notes.extend(adopted_notes(cfg, layout));
    Ok(report)
}

/// Where `adopt` records the networks it moved over, under the state directory.
pub const ADOPTED_DIR: &str = "adopted";

/// The networks virtmasq adopted and has not released: without virtmasq nothing serves them
/// (libvirt no longer does). Teardown does not give them back itself, because that restarts
/// each network and cuts its guests off; it says what to run.
fn adopted_notes(cfg: &Config, layout: &Layout) -> Vec<String> {
    let dir = layout.at(cfg.paths.state_dir.join(ADOPTED_DIR));
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            format!(
                "network '{n}' was adopted by virtmasq: without virtmasq nothing serves its DHCP \
                 or DNS; give it back to libvirt with `virtmasq release {n}` before removing \
                 virtmasq (or after reinstalling it)"
            )
        })
        .collect()
}

/// Links the hook when libvirt is installed; true when the link was made now.
fn install_hook(
    layout: &Layout,
    created: &mut Created,
    report: &mut Report,
) -> Result<bool, SetupError> {
    if !layout.at(LIBVIRT_ETC).is_dir() {
        report.notes.push(format!(
            "libvirt is not installed ({LIBVIRT_ETC} is absent): no hook; run `virtmasq setup` \
             again once it is"
        ));
        return Ok(false);
    }
    let shim = layout.at(&layout.hook_shim);
    if !shim.is_file() {
        return Err(SetupError::MissingShim { path: shim });
    }
    let link = Path::new(HOOK_LINK);
    created.ensure_dirs(layout, link.parent().unwrap_or(Path::new("/")))?;
    match files::ensure_link(&layout.at(link), &layout.hook_shim)? {
        files::Link::Made => {
            report.changes.push(format!(
                "installed the libvirt hook {HOOK_LINK} -> {}",
                layout.hook_shim.display()
            ));
            Ok(true)
        }
        files::Link::Already => Ok(false),
        files::Link::Foreign => {
            report.notes.push(format!(
                "{HOOK_LINK} exists and is not virtmasq's: left alone, so libvirt does not run \
                 virtmasq's hook"
            ));
            Ok(false)
        }
    }
}

fn remove_hook(
    layout: &Layout,
    created: &mut Created,
    report: &mut Report,
) -> Result<(), SetupError> {
    let link = Path::new(HOOK_LINK);
    if files::remove_link_if_ours(&layout.at(link))? {
        report
            .changes
            .push(format!("removed the libvirt hook {HOOK_LINK}"));
    }
    created.remove_empty(layout, report)
}

/// The filter's drop-ins (paths inside the root) and their text.
fn dropins(cfg: &Config) -> [(PathBuf, String); 2] {
    [
        (Layout::dropin(cfg), DROPIN.to_owned()),
        (Layout::service_dropin(), service_dropin_text(cfg)),
    ]
}

/// Removes the drop-in if it is there; true when it was.
fn remove_dropin(
    layout: &Layout,
    dropin: &Path,
    created: &mut Created,
    report: &mut Report,
) -> Result<bool, SetupError> {
    let removed = files::remove_if_contains(&layout.at(dropin), "virtmasq setup")?;
    if removed {
        report.changes.push(format!("removed {}", dropin.display()));
    }
    created.remove_empty(layout, report)?;
    Ok(removed)
}
