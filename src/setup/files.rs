//! Idempotent file steps of setup and teardown: a directory made only if missing, a file
//! rewritten only if its bytes differ, a link made or removed only when it is virtmasq's, and
//! the record of the directories setup created (so that teardown removes those and no other).

use std::collections::BTreeSet;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::{io_err, Layout, Report, SetupError};
use crate::fsutil;

/// Creates `dir` (and parents) if missing; true when it did.
pub fn ensure_dir(dir: &Path) -> Result<bool, SetupError> {
    if dir.is_dir() {
        return Ok(false);
    }
    fsutil::ensure_dir(dir, 0o755).map_err(io_err("create", dir))?;
    Ok(true)
}

/// Writes `text` to `path` (mode 0644) unless it already holds exactly that; true when written.
pub fn write_if_changed(path: &Path, text: &str) -> Result<bool, SetupError> {
    let now = fsutil::read_if_exists(path).map_err(io_err("read", path))?;
    if now.as_deref() == Some(text.as_bytes()) {
        return Ok(false);
    }
    fsutil::write_atomic(path, text.as_bytes(), 0o644).map_err(io_err("write", path))?;
    Ok(true)
}

/// Removes `path` if it is a file containing `mark` (one of virtmasq's); true when removed.
pub fn remove_if_contains(path: &Path, mark: &str) -> Result<bool, SetupError> {
    match fs::read_to_string(path) {
        Ok(text) if text.contains(mark) => {
            fs::remove_file(path).map_err(io_err("remove", path))?;
            Ok(true)
        }
        Ok(_) => Ok(false),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::InvalidData) => Ok(false),
        Err(e) => Err(io_err("read", path)(e)),
    }
}

/// What [`ensure_link`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// The link was made (or an old copy of the shim was replaced by it).
    Made,
    /// It was already there.
    Already,
    /// Something that is not virtmasq's is in the way; left alone.
    Foreign,
}

/// Text every version of the shim contains; a copy of it is virtmasq's too.
const SHIM_MARK: &str = "virtmasq's libvirt network hook";

/// Whether `path` is virtmasq's hook: a link to a shim, or a copy of one.
fn is_our_hook(path: &Path) -> bool {
    match fs::read_link(path) {
        Ok(target) => target.ends_with("virtmasq/libvirt-hook"),
        Err(_) => fs::read_to_string(path).is_ok_and(|t| t.contains(SHIM_MARK)),
    }
}

/// Makes `link` a symbolic link to `target` (a path as seen inside the root).
pub fn ensure_link(link: &Path, target: &Path) -> Result<Link, SetupError> {
    if link.symlink_metadata().is_ok() {
        if fs::read_link(link).is_ok_and(|now| now == target) {
            return Ok(Link::Already);
        }
        if !is_our_hook(link) {
            return Ok(Link::Foreign);
        }
    }
    // A dotfile beside it, renamed over it: libvirt never sees a missing or half-made hook.
    let tmp = link.with_file_name(".virtmasq.virtmasq-tmp");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(io_err("link", &tmp))?;
    fs::rename(&tmp, link).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err("link", link)(e)
    })?;
    Ok(Link::Made)
}

/// Removes `link` if it is virtmasq's hook; true when removed.
pub fn remove_link_if_ours(link: &Path) -> Result<bool, SetupError> {
    if link.symlink_metadata().is_err() || !is_our_hook(link) {
        return Ok(false);
    }
    fs::remove_file(link).map_err(io_err("remove", link))?;
    Ok(true)
}

/// The directories setup created, as seen inside the root, kept in a text file (one a line).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Created {
    /// The directories.
    dirs: BTreeSet<PathBuf>,
    /// As read, to write the file only when it changed.
    loaded: BTreeSet<PathBuf>,
}

impl Created {
    /// Reads the record; none yet is an empty one.
    pub fn load(path: &Path) -> Result<Self, SetupError> {
        let text = fsutil::read_if_exists(path).map_err(io_err("read", path))?;
        let dirs: BTreeSet<PathBuf> = String::from_utf8_lossy(&text.unwrap_or_default())
            .lines()
            .filter(|l| l.starts_with('/'))
            .map(PathBuf::from)
            .collect();
        Ok(Self {
            loaded: dirs.clone(),
            dirs,
        })
    }

    /// The directories recorded.
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(PathBuf::as_path)
    }

    /// Creates `dir` and its missing parents inside the root, recording each one it created.
    pub fn ensure_dirs(&mut self, layout: &Layout, dir: &Path) -> Result<(), SetupError> {
        let mut missing = Vec::new();
        let mut d = Some(dir);
        while let Some(p) = d.filter(|p| !layout.at(p).is_dir()) {
            missing.push(p.to_path_buf());
            d = p.parent();
        }
        for p in missing.into_iter().rev() {
            let host = layout.at(&p);
            fs::create_dir(&host).map_err(io_err("create", &host))?;
            self.dirs.insert(p);
        }
        Ok(())
    }

    /// Removes the recorded directories that are empty (deepest first) and forgets them, as
    /// well as those already gone.
    pub fn remove_empty(&mut self, layout: &Layout, report: &mut Report) -> Result<(), SetupError> {
        let mut deepest_first: Vec<PathBuf> = self.dirs.iter().cloned().collect();
        deepest_first.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for dir in deepest_first {
            let host = layout.at(&dir);
            let empty = match fs::read_dir(&host) {
                Ok(mut entries) => entries.next().is_none(),
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    self.dirs.remove(&dir);
                    continue;
                }
                Err(e) => return Err(io_err("read", &host)(e)),
            };
            if empty {
                fs::remove_dir(&host).map_err(io_err("remove", &host))?;
                report.changes.push(format!("removed {}", dir.display()));
                self.dirs.remove(&dir);
            }
        }
        Ok(())
    }

    /// Writes the record if it changed; an empty record is no file at all.
    pub fn save(&mut self, path: &Path) -> Result<(), SetupError> {
        if self.dirs == self.loaded {
            return Ok(());
        }
        if self.dirs.is_empty() {
            match fs::remove_file(path) {
                Err(e) if e.kind() != ErrorKind::NotFound => return Err(io_err("remove", path)(e)),
                _ => {}
            }
        } else {
            let text: String = self
                .dirs
                .iter()
                .map(|d| format!("{}\n", d.display()))
                .collect();
            if let Some(parent) = path.parent() {
                ensure_dir(parent)?;
            }
            fsutil::write_atomic(path, text.as_bytes(), 0o644).map_err(io_err("write", path))?;
        }
        self.loaded = self.dirs.clone();
        Ok(())
    }
}
