//! Bounded waits and process runs for the container harness.
//!
//! Every wait here has a deadline. Output goes through anonymous files rather than pipes, so a
//! daemon that inherits them can never block a test.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::cgroup::Cgroup;

// The lab's bounded waits serve the container harness too.
pub use crate::lab::exec::{wait_child, wait_for};

/// True while process `pid` exists (zombies included).
pub fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn read_all(mut file: File) -> Vec<u8> {
    let mut buf = Vec::new();
    if file.seek(SeekFrom::Start(0)).is_ok() {
        // A read error leaves whatever was read; callers report the output as is.
        let _ = file.read_to_end(&mut buf);
    }
    buf
}

/// Runs `cmd` with stdin closed, bounded by `timeout`.
///
/// With `cgroup`, the command must move itself into it first (see
/// [`Cgroup::enter_then_exec`]), and on timeout everything in it is killed: `nsenter` forks the
/// real command into the container's pid namespace, and killing nsenter alone would leave that
/// behind (util-linux 2.38 has no `--kill-child`), and killing both at once orphans the
/// command's zombie to the host's init. Err describes a spawn failure or a timeout,
/// with whatever the command printed.
pub fn run_bounded(
    cmd: &mut Command,
    timeout: Duration,
    cgroup: Option<&Cgroup>,
) -> Result<Output, String> {
    let out = tempfile::tempfile().map_err(|e| format!("cannot create a temp file: {e}"))?;
    let err = tempfile::tempfile().map_err(|e| format!("cannot create a temp file: {e}"))?;
    let stdout = out.try_clone().map_err(|e| format!("dup: {e}"))?;
    let stderr = err.try_clone().map_err(|e| format!("dup: {e}"))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if let Some(status) = wait_child(&mut child, timeout) {
        return Ok(Output {
            status,
            stdout: read_all(out),
            stderr: read_all(err),
        });
    }
    if let Some(cgroup) = cgroup {
        // The command first, so that nsenter reaps it and exits by itself (see kill_all_but).
        cgroup.kill_all_but(Some(child.id()), Duration::from_secs(5));
        if wait_child(&mut child, Duration::from_secs(2)).is_none() {
            cgroup.kill_all(Duration::from_secs(5));
        }
    }
    // An error means it exited meanwhile; reaping below handles both cases.
    let _ = child.kill();
    wait_child(&mut child, Duration::from_secs(5));
    Err(format!(
        "{cmd:?} still running after {timeout:?}, killed\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&read_all(out)).trim(),
        String::from_utf8_lossy(&read_all(err)).trim()
    ))
}
