//! Starting and stopping one dnsmasq process: tied to the agent's life with PR_SET_PDEATHSIG,
//! and never leaving a stale instance of ours behind from an earlier run.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// The command that runs dnsmasq in the foreground on `conf`, logging to its stderr (which the
/// supervisor forwards to the agent's log).
///
/// PR_SET_PDEATHSIG is delivered when the *thread* that forked the child exits, so children
/// must be spawned from a thread that lives as long as the agent: the agent runs its event loop
/// on a current-thread runtime, on the main thread, for this reason.
pub fn dnsmasq_command(binary: &Path, conf: &Path) -> Command {
    let mut cmd = Command::new(binary);
    cmd.arg("--keep-in-foreground")
        .arg(format!("--conf-file={}", conf.display()))
        .arg("--log-facility=-")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let parent = std::process::id() as i32;
    // SAFETY: the closure runs in the child between fork and exec and only makes the
    // async-signal-safe system calls prctl(2), getppid(2) and _exit(2).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The agent may have died between fork and prctl: then nothing would stop us.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    cmd
}

/// Asks a child to stop with SIGTERM and waits up to `grace` before SIGKILL.
pub async fn terminate(child: &mut Child, grace: Duration) {
    if let Some(pid) = child.id() {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        if tokio::time::timeout(grace, child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.kill().await;
}

/// Sends SIGHUP (dnsmasq re-reads hosts files and hostsdirs).
pub fn hangup(child: &Child) -> nix::Result<()> {
    match child.id() {
        Some(pid) => kill(Pid::from_raw(pid as i32), Signal::SIGHUP),
        None => Err(nix::Error::ESRCH),
    }
}

/// Stops a dnsmasq left running by an earlier agent with this configuration file (its pid file
/// names it and its command line names our conf file: a recycled pid is left alone). Returns
/// whether one was stopped.
pub fn stop_stale(pid_file: &Path, conf: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(pid_file) else {
        return false;
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return false;
    };
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let wanted = format!("--conf-file={}", conf.display());
    if !cmdline
        .split(|b| *b == 0)
        .any(|arg| arg == wanted.as_bytes())
    {
        return false;
    }
    let pid = Pid::from_raw(pid);
    let _ = kill(pid, Signal::SIGTERM);
    for _ in 0..40 {
        if kill(pid, None).is_err() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = kill(pid, Signal::SIGKILL);
    true
}
