//! Private cgroups for test containers and the commands run inside them.
//!
//! `systemd-nspawn --keep-unit` does not ask a host systemd for a scope: it splits the cgroup it
//! was started in into `payload/` and `supervisor/` and leaves both behind when it exits. Two
//! containers started from the same cgroup would share (and fight over) those. So each container
//! is started in a fresh cgroup of its own, `vqct-<pid>-<n>`, created next to ours in every
//! hierarchy nspawn uses (the unified cgroup2 one and, on hybrid hosts, the named v1 `systemd`
//! one), and removed, depth first, when the container is gone. Commands run inside the container
//! get a child cgroup each, so that everything they started can be killed at once.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::process::{pid_alive, wait_for};

/// The hierarchies nspawn uses and where our process sits in each, as host paths of our cgroup.
fn own_cgroup_dirs() -> Result<Vec<PathBuf>, String> {
    let cgroups =
        fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
    let mut dirs = Vec::new();
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let wanted: fn(&str, &str) -> bool = if id == "0" && controllers.is_empty() {
            |fstype: &str, _: &str| fstype == "cgroup2"
        } else if controllers == "name=systemd" {
            |fstype: &str, opts: &str| {
                fstype == "cgroup" && opts.split(',').any(|o| o == "name=systemd")
            }
        } else {
            continue;
        };
        if let Some(dir) = mount_dir_for(&mountinfo, wanted, path) {
            dirs.push(dir);
        }
    }
    if dirs.is_empty() {
        return Err(format!(
            "no cgroup2 or name=systemd hierarchy mounted (/proc/self/cgroup: {cgroups:?})"
        ));
    }
    Ok(dirs)
}

/// Host directory of cgroup `path` in the hierarchy whose mount `wanted(fstype, super options)`
/// picks, taking the mount's own root into account (a cgroup namespace mounts a subtree).
fn mount_dir_for(mountinfo: &str, wanted: fn(&str, &str) -> bool, path: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut right = right.split_whitespace();
        let (fstype, _source, opts) = (right.next()?, right.next()?, right.next().unwrap_or(""));
        if !wanted(fstype, opts) {
            return None;
        }
        let mut left = left.split_whitespace();
        let root = left.nth(3)?;
        let mount_point = left.next()?;
        let rel = path.strip_prefix(root.trim_end_matches('/'))?;
        Some(Path::new(mount_point).join(rel.trim_start_matches('/')))
    })
}

/// Owner pid encoded in a `vqct-<pid>-<n>` name.
pub fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix(super::NAME_PREFIX)?
        .split(['-', '.'])
        .next()?
        .parse()
        .ok()
}

/// One cgroup, present in every hierarchy nspawn uses.
pub struct Cgroup {
    /// The same cgroup in each hierarchy (cgroup2 first when there is one).
    dirs: Vec<PathBuf>,
}

impl Cgroup {
    /// Creates `name` beside the cgroup this process runs in, in every relevant hierarchy.
    pub fn create(name: &str) -> Result<Cgroup, String> {
        let parents = own_cgroup_dirs()?;
        Self::create_under(&parents, name)
    }

    /// Creates a child cgroup `name` of this one.
    pub fn child(&self, name: &str) -> Result<Cgroup, String> {
        Self::create_under(&self.dirs, name)
    }

    fn create_under(parents: &[PathBuf], name: &str) -> Result<Cgroup, String> {
        let mut cgroup = Cgroup { dirs: Vec::new() };
        for parent in parents {
            let dir = parent.join(name);
            // On error, dropping `cgroup` removes what was already made.
            fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
            cgroup.dirs.push(dir);
        }
        Ok(cgroup)
    }

    /// This cgroup's directory in each hierarchy.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.dirs.clone()
    }

    /// Arguments that make `/bin/sh` move itself into this cgroup and then exec the command
    /// that follows them: `sh -c <script> sh <procs files...> -- <command...>`.
    pub fn enter_then_exec(&self) -> Vec<String> {
        let script =
            r#"while [ "$1" != -- ]; do echo $$ >"$1" || exit 125; shift; done; shift; exec "$@""#;
        let mut args = vec!["-c".to_string(), script.to_string(), "sh".to_string()];
        args.extend(
            self.dirs
                .iter()
                .map(|d| d.join("cgroup.procs").to_string_lossy().into_owned()),
        );
        args.push("--".to_string());
        args
    }

    /// Every pid in this cgroup and its descendants.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        if let Some(dir) = self.dirs.first() {
            collect_pids(dir, &mut pids);
        }
        pids
    }

    /// SIGKILLs everything in this cgroup and below until it is empty (at most `timeout`).
    /// True if it is empty.
    pub fn kill_all(&self, timeout: Duration) -> bool {
        self.kill_all_but(None, timeout)
    }

    /// SIGKILLs everything in this cgroup and below except `spare`, until nothing else is left
    /// (at most `timeout`). True if nothing else is left.
    ///
    /// Sparing nsenter lets it reap the command it forked: a command killed together with its
    /// nsenter is orphaned as a zombie to the *host's* init, and an init that reaps lazily (as
    /// on some VMs) leaves it in the container's pid namespace, where it holds up the halt.
    pub fn kill_all_but(&self, spare: Option<u32>, timeout: Duration) -> bool {
        // cgroup.kill (Linux 5.14+) also catches processes forking meanwhile.
        let kill_file = self
            .dirs
            .first()
            .map(|d| d.join("cgroup.kill"))
            .filter(|f| spare.is_none() && f.exists());
        wait_for(
            || {
                let pids: Vec<u32> = self
                    .pids()
                    .into_iter()
                    .filter(|&p| Some(p) != spare)
                    .collect();
                if pids.is_empty() {
                    return true;
                }
                if let Some(file) = &kill_file {
                    let _ = fs::write(file, "1");
                }
                for pid in pids {
                    // It may be gone already; the next round rechecks.
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                }
                false
            },
            timeout,
        )
    }

    /// Removes the cgroup tree (after killing what is left in it), retrying while processes exit.
    pub fn remove(&mut self) -> Result<(), String> {
        if self.dirs.is_empty() {
            return Ok(());
        }
        self.kill_all(Duration::from_secs(5));
        let mut last_error = String::new();
        let removed = wait_for(
            || {
                self.dirs.retain(|dir| match remove_tree(dir) {
                    Ok(()) => false,
                    Err(e) => {
                        last_error = e;
                        true
                    }
                });
                self.dirs.is_empty()
            },
            Duration::from_secs(3),
        );
        if removed {
            Ok(())
        } else {
            Err(last_error)
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            eprintln!("container: cannot remove cgroup: {e}");
        }
    }
}

fn collect_pids(dir: &Path, pids: &mut Vec<u32>) {
    if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    for sub in subdirs(dir) {
        collect_pids(&sub, pids);
    }
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// rmdir of a cgroup and its descendants, deepest first (cgroupfs only allows rmdir).
fn remove_tree(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        return Ok(());
    }
    for sub in subdirs(dir) {
        remove_tree(&sub)?;
    }
    fs::remove_dir(dir).map_err(|e| format!("rmdir {}: {e}", dir.display()))
}

/// Kills and removes `vqct-*` cgroups whose creating process is gone (a crashed or killed test
/// run; its nspawn and container may still be running). Returns how many it removed.
pub fn sweep_stale() -> usize {
    let Ok(parents) = own_cgroup_dirs() else {
        return 0;
    };
    let mut removed = 0;
    for parent in &parents {
        for dir in subdirs(parent) {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if owner_pid(&name).is_some_and(|pid| !pid_alive(pid)) {
                // Another sweeper may be racing us; whoever fails just leaves it to the other.
                let mut stale = Cgroup { dirs: vec![dir] };
                if stale.remove().is_ok() {
                    removed += 1;
                }
            }
        }
    }
    removed
}
