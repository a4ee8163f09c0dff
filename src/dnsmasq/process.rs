//! Starting and stopping one dnsmasq process: tied to the agent's life with PR_SET_PDEATHSIG,
//! and never leaving a stale instance of ours behind from an earlier run.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// The unprivileged account a private dnsmasq runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

impl RunAs {
    /// Looks up `user`, falling back to `nobody` when it does not exist.
    pub fn lookup(user: &str) -> std::io::Result<Self> {
        let found = nix::unistd::User::from_name(user)
            .ok()
            .flatten()
            .or_else(|| nix::unistd::User::from_name("nobody").ok().flatten())
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("neither user '{user}' nor 'nobody' exists"),
                )
            })?;
        Ok(Self {
            uid: found.uid.as_raw(),
            gid: found.gid.as_raw(),
        })
    }
}

/// CAP_NET_BIND_SERVICE (ports 53, 67), CAP_NET_ADMIN (DHCP's ARP injection), CAP_NET_RAW
/// (the ping check): what dnsmasq keeps itself when it drops root.
const DNSMASQ_CAPS: [u32; 3] = [10, 12, 13];

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// The command that runs dnsmasq in the foreground on `conf`, logging to its stderr (which the
/// supervisor forwards to the agent's log).
///
/// The child must die with the agent, even on SIGKILL: that is PR_SET_PDEATHSIG. The kernel
/// clears it when a process changes its user ids, which dnsmasq does when started as root, so
/// the child drops to `run_as` itself before exec, keeping only dnsmasq's network
/// capabilities as ambient capabilities, and sets PR_SET_PDEATHSIG after that; dnsmasq,
/// started unprivileged, changes nothing (it only drops root when its uid is 0).
///
/// PR_SET_PDEATHSIG is delivered when the *thread* that forked the child exits, so children
/// must be spawned from a thread that lives as long as the agent: the agent runs its event loop
/// on a current-thread runtime, on the main thread, for this reason.
pub fn dnsmasq_command(binary: &Path, conf: &Path, run_as: RunAs) -> Command {
    let mut cmd = Command::new(binary);
    cmd.arg("--keep-in-foreground")
        .arg(format!("--conf-file={}", conf.display()))
        .arg("--log-facility=-")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let parent = std::process::id() as i32;
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // async-signal-safe system calls (prctl, setgroups, setresgid, setresuid, capset, getppid,
    // _exit) on values computed before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            drop_to(run_as)?;
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

/// In the forked child: become `run_as` with only [`DNSMASQ_CAPS`], as ambient capabilities so
/// they survive exec. A no-op when the agent itself is not root (tests as a user, where
/// dnsmasq then has no privileges to drop either).
///
/// # Safety
/// Only to be called between fork and exec.
unsafe fn drop_to(run_as: RunAs) -> std::io::Result<()> {
    if libc::getuid() != 0 {
        return Ok(());
    }
    let check = |rc: libc::c_long| {
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    check(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0).into())?;
    check(libc::setgroups(0, std::ptr::null()).into())?;
    check(libc::setresgid(run_as.gid, run_as.gid, run_as.gid).into())?;
    check(libc::setresuid(run_as.uid, run_as.uid, run_as.uid).into())?;
    let mask = DNSMASQ_CAPS.iter().fold(0u32, |m, c| m | 1 << c);
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: mask,
            permitted: mask,
            inheritable: mask,
        },
        CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        },
    ];
    check(libc::syscall(libc::SYS_capset, &header, data.as_ptr()))?;
    for cap in DNSMASQ_CAPS {
        check(
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                cap as libc::c_ulong,
                0,
                0,
            )
            .into(),
        )?;
    }
    Ok(())
}

/// Makes `cmd` run as `run_as` with no capability at all (setuid without PR_SET_KEEPCAPS
/// drops them): for `dnsmasq --test`, which needs none, and which would run a `conf-script=`
/// of what it parses. A no-op when the agent is not root.
pub fn run_unprivileged(cmd: &mut std::process::Command, run_as: RunAs) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // async-signal-safe system calls (getuid, setgroups, setresgid, setresuid) on values
    // computed before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::getuid() != 0 {
                return Ok(());
            }
            let ok = libc::setgroups(0, std::ptr::null()) == 0
                && libc::setresgid(run_as.gid, run_as.gid, run_as.gid) == 0
                && libc::setresuid(run_as.uid, run_as.uid, run_as.uid) == 0;
            if ok {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
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

/// The pid in a dnsmasq pid file. dnsmasq writes it in a directory of its own: whatever is
/// there is read as a regular file only, never through a symlink, never waiting on a FIFO.
pub fn read_pid(pid_file: &Path) -> Option<i32> {
    use std::io::Read;
    let mut text = String::new();
    crate::fsutil::open_regular(pid_file, false)
        .ok()?
        .take(32)
        .read_to_string(&mut text)
        .ok()?;
    text.trim().parse().ok().filter(|p| *p > 0)
}

/// Stops a dnsmasq left running by an earlier agent with this configuration file (its pid file
/// names it and its command line names our conf file: a recycled pid is left alone). Returns
/// whether one was stopped.
pub fn stop_stale(pid_file: &Path, conf: &Path) -> bool {
    let Some(pid) = read_pid(pid_file) else {
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
