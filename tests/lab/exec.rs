//! Bounded process execution and namespace plumbing shared by the lab.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Default time limit for short administrative commands (`ip`, `cat`, ...).
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(20);

/// Polls `cond` until it returns true or `timeout` has elapsed; true if it did.
///
/// `cond` is always evaluated at least once, and once more at the deadline.
pub fn wait_for(mut cond: impl FnMut() -> bool, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Waits at most `timeout` for `child` to exit; None if it is still running.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let mut status = None;
    wait_for(
        || match child.try_wait() {
            Ok(Some(s)) => {
                status = Some(s);
                true
            }
            Ok(None) => false,
            // Already reaped or not our child any more: nothing to wait for.
            Err(_) => true,
        },
        timeout,
    );
    status
}

/// Kills `child` (SIGKILL) and reaps it, waiting at most two seconds.
pub fn kill_child(child: &mut Child) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    // An error means the process already exited; reaping below handles it.
    let _ = child.kill();
    wait_child(child, Duration::from_secs(2))
}

fn read_all(mut file: File) -> Vec<u8> {
    let mut buf = Vec::new();
    if file.seek(SeekFrom::Start(0)).is_ok() {
        // A read error leaves whatever was read; the caller reports the output as is.
        let _ = file.read_to_end(&mut buf);
    }
    buf
}

/// Runs `cmd` to completion with stdin closed, killing it after `timeout`.
///
/// Output goes through anonymous files rather than pipes, so a daemon that
/// inherits them can never block us. Err describes a spawn failure or timeout.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Result<Output, String> {
    let out = tempfile::tempfile().map_err(|e| format!("cannot create temp file: {e}"))?;
    let err = tempfile::tempfile().map_err(|e| format!("cannot create temp file: {e}"))?;
    let stdout = out.try_clone().map_err(|e| format!("dup: {e}"))?;
    let stderr = err.try_clone().map_err(|e| format!("dup: {e}"))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let status = match wait_child(&mut child, timeout) {
        Some(status) => status,
        None => {
            kill_child(&mut child);
            return Err(format!(
                "{cmd:?} still running after {timeout:?}, killed; stderr: {}",
                String::from_utf8_lossy(&read_all(err))
            ));
        }
    };
    Ok(Output {
        status,
        stdout: read_all(out),
        stderr: read_all(err),
    })
}

/// Runs `cmd` (bounded by `timeout`) and returns its stdout; panics with the
/// command, status and stderr if it cannot run, times out or fails.
pub fn run_checked(cmd: &mut Command, timeout: Duration) -> String {
    let output = run_bounded(cmd, timeout).unwrap_or_else(|e| panic!("lab: {e}"));
    if !output.status.success() {
        panic!(
            "lab: {cmd:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `ip ARGS...`, panicking with stderr on failure.
pub fn ip(args: &[&str]) -> String {
    run_checked(Command::new("ip").args(args), ADMIN_TIMEOUT)
}

/// Runs `ip ARGS...`, returning Err(stderr) on failure instead of panicking.
pub fn ip_quiet(args: &[&str]) -> Result<String, String> {
    let output = run_bounded(Command::new("ip").args(args), ADMIN_TIMEOUT)?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

/// Pids of the processes living in namespace `ns` (empty if it is gone).
pub fn namespace_pids(ns: &str) -> Vec<u32> {
    ip_quiet(&["netns", "pids", ns])
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// SIGKILLs every process in `ns` until none is left (bounded: about two
/// seconds), then deletes the namespace. Errors are reported, not raised,
/// because this runs from Drop.
pub fn destroy_namespace(ns: &str) {
    for _ in 0..40 {
        let pids = namespace_pids(ns);
        if pids.is_empty() {
            break;
        }
        let mut kill = Command::new("kill");
        kill.arg("-KILL").args(pids.iter().map(u32::to_string));
        // Processes may exit between listing and killing; the next round rechecks.
        let _ = run_bounded(&mut kill, ADMIN_TIMEOUT);
        sleep(Duration::from_millis(50));
    }
    if let Err(e) = ip_quiet(&["netns", "del", ns]) {
        eprintln!("lab: cannot delete namespace {ns}: {e}");
    }
}

/// Effective uid of this process, from /proc/self/status.
pub fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}
