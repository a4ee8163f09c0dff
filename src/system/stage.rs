//! Validation before the live conf-dir changes: a copy of the conf-dir as it would be after a
//! plan (the other files as they are, virtmasq's replaced, added or removed) is made in the
//! state directory, and the distribution's own check runs with that copy in the conf-dir's
//! place. The live conf-dir is read, never written, here.
//!
//! The copy takes the conf-dir's place where the unit names it: Debian's `CONFIG_DIR`, or a
//! `conf-dir=` line of the main file (given to the check as a rewritten copy). A conf-dir
//! named only in a file the main file includes is not replaced: the check then reads the live
//! set, and the unit's own check at the restart is what refuses a bad new one (rolled back).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::conf::{parse_args, parse_line, ConfDir};
use super::effective::{Flavor, DEBIAN_HELPER};
use super::plan::Plan;
use crate::fsutil;

/// The default main file dnsmasq reads when no `--conf-file` is given.
const MAIN_CONF: &str = "/etc/dnsmasq.conf";

/// How the system dnsmasq's configuration is checked, and where the copy goes.
#[derive(Debug, Clone)]
pub struct Checker {
    /// How the unit starts dnsmasq.
    pub flavor: Flavor,
    /// The dnsmasq binary (the plain check runs it).
    pub binary: PathBuf,
    /// The live conf-dir the plan writes into.
    pub conf_dir: PathBuf,
    /// The options the unit adds (to find a `--conf-file` given there).
    pub args: Vec<String>,
    /// Where the copy is made (emptied first); in the state directory, never read by dnsmasq.
    pub stage_dir: PathBuf,
}

/// Why a staged check could not run (the check refusing the configuration is not this).
#[derive(Debug)]
pub enum StageFailure {
    /// Making the copy failed.
    Io(&'static str, PathBuf, std::io::Error),
    /// The check refused the configuration: dnsmasq's words.
    Refused(String),
}

impl Checker {
    /// Makes the copy of the conf-dir as `plan` leaves it and runs the check against it.
    pub fn check_plan(&self, plan: &Plan) -> Result<(), StageFailure> {
        let result = self
            .stage(plan)
            .and_then(|extra| self.run(&extra).map_err(StageFailure::Refused));
        // The copy is only for the check: it goes whatever the result.
        let _ = fs::remove_dir_all(&self.stage_dir);
        result
    }

    /// Runs the check on the live configuration as it is.
    pub fn check_live(&self) -> Result<(), String> {
        self.run(&[])
    }

    fn staged_conf_dir(&self) -> PathBuf {
        self.stage_dir.join("conf-dir")
    }

    /// Writes the copy; returns the options that point the check at it (a rewritten main
    /// file when the main file names the conf-dir).
    fn stage(&self, plan: &Plan) -> Result<Vec<String>, StageFailure> {
        let io = |what, p: &Path| {
            let p = p.to_owned();
            move |e| StageFailure::Io(what, p, e)
        };
        match fs::remove_dir_all(&self.stage_dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io("remove", &self.stage_dir)(e))
            }
            _ => {}
        }
        let dir = self.staged_conf_dir();
        fsutil::ensure_dir(&dir, 0o700).map_err(io("create", &dir))?;
        if let Ok(entries) = fs::read_dir(&self.conf_dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                // dnsmasq reads regular files (through symlinks) and never dotfiles, `~` or
                // `#...#` names, whatever the conf-dir's filter: those are not copied.
                let name = entry.file_name().to_string_lossy().into_owned();
                let never_read = !ConfDir::parse("").accepts(&name);
                if never_read || !fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                    continue;
                }
                let bytes = fs::read(&path).map_err(io("read", &path))?;
                let to = dir.join(entry.file_name());
                fs::write(&to, bytes).map_err(io("write", &to))?;
            }
        }
        for (path, text) in &plan.writes {
            if let Some(name) = self.in_conf_dir(path) {
                let to = dir.join(name);
                fs::write(&to, text).map_err(io("write", &to))?;
            }
        }
        for path in &plan.removals {
            if let Some(name) = self.in_conf_dir(path) {
                let to = dir.join(name);
                fs::remove_file(&to)
                    .or_else(not_found_ok)
                    .map_err(io("remove", &to))?;
            }
        }
        self.stage_main()
    }

    /// The file name of `path` if it lies directly in the conf-dir.
    fn in_conf_dir<'p>(&self, path: &'p Path) -> Option<&'p std::ffi::OsStr> {
        (path.parent()? == self.conf_dir).then_some(path.file_name()?)
    }

    /// A copy of the main file with its `conf-dir=` lines for the live conf-dir pointed at
    /// the copy, when it has any (Fedora and others name the conf-dir there).
    fn stage_main(&self) -> Result<Vec<String>, StageFailure> {
        let main = parse_args(&self.args)
            .into_iter()
            .rev()
            .find(|o| o.name == "conf-file")
            .and_then(|o| o.value)
            .map_or_else(|| PathBuf::from(MAIN_CONF), PathBuf::from);
        let Ok(text) = fs::read_to_string(&main) else {
            return Ok(Vec::new());
        };
        let staged = self.staged_conf_dir();
        let mut changed = false;
        let lines: Vec<String> = text
            .lines()
            .map(|line| match parse_line(line) {
                Some((name, Some(value))) if name == "conf-dir" => {
                    let d = ConfDir::parse(&value);
                    if same_dir(&d.path, &self.conf_dir) {
                        changed = true;
                        let rest = value.split_once(',').map(|(_, r)| r);
                        let dir = staged.display();
                        rest.map_or(format!("conf-dir={dir}"), |r| format!("conf-dir={dir},{r}"))
                    } else {
                        line.to_owned()
                    }
                }
                _ => line.to_owned(),
            })
            .collect();
        if !changed {
            return Ok(Vec::new());
        }
        let to = self.stage_dir.join("dnsmasq.conf");
        fs::write(&to, lines.join("\n") + "\n")
            .map_err(|e| StageFailure::Io("write", to.clone(), e))?;
        Ok(vec![format!("--conf-file={}", to.display())])
    }

    /// The check the distribution's unit runs before starting dnsmasq, with its output kept,
    /// and the live conf-dir replaced by the copy when there is one.
    fn run(&self, extra: &[String]) -> Result<(), String> {
        let staged = self.staged_conf_dir();
        let staged = staged.exists().then_some(staged);
        let out = match self.flavor {
            // Debian's ExecStartPre is `systemd-helper checkconfig`, which runs
            // `dnsmasq --test -7 $CONFIG_DIR $DNSMASQ_OPTS` with output thrown away: the same
            // command, from the same shell library, with its output kept and the conf-dir
            // part of CONFIG_DIR (its filters stay) replaced by the copy.
            Flavor::Debian => Command::new("sh")
                .arg("-c")
                .arg(format!(
                    ". {DEBIAN_HELPER} && d=\"${{CONFIG_DIR%%,*}}\" && \
                     if [ -n \"$VIRTMASQ_STAGE\" ] && [ \"${{d%/}}\" = \"$VIRTMASQ_LIVE\" ]; \
                     then CONFIG_DIR=\"$VIRTMASQ_STAGE${{CONFIG_DIR#\"$d\"}}\"; fi && \
                     exec \"$DAEMON\" --test ${{CONFIG_DIR:+-7 \"$CONFIG_DIR\"}} $DNSMASQ_OPTS \"$@\""
                ))
                .arg("sh")
                .args(extra)
                .env("VIRTMASQ_LIVE", trim_slash(&self.conf_dir))
                .env("VIRTMASQ_STAGE", staged.unwrap_or_default())
                .output(),
            // The unit adds nothing on these systems; options given here (tests) go along,
            // except a main file that the copy replaces.
            Flavor::Plain => Command::new(&self.binary)
                .arg("--test")
                .args(match extra.is_empty() {
                    true => self.args.clone(),
                    false => without_conf_file(&self.args),
                })
                .args(extra)
                .output(),
        }
        .map_err(|e| format!("cannot run the configuration check: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        Err(if text.is_empty() {
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        } else {
            text
        })
    }
}

/// `words` without their `--conf-file`/`-C` options.
fn without_conf_file(words: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = words.iter();
    while let Some(w) = it.next() {
        if w == "-C" || w == "--conf-file" {
            it.next();
        } else if !(w.starts_with("--conf-file=") || w.starts_with("-C")) {
            out.push(w.clone());
        }
    }
    out
}

fn trim_slash(p: &Path) -> String {
    let s = p.to_string_lossy();
    match s.trim_end_matches('/') {
        "" => "/".to_owned(),
        t => t.to_owned(),
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    trim_slash(a) == trim_slash(b)
}

fn not_found_ok(e: std::io::Error) -> std::io::Result<()> {
    match e.kind() {
        std::io::ErrorKind::NotFound => Ok(()),
        _ => Err(e),
    }
}

#[cfg(test)]
mod tests;
