//! The service manager notification protocol (`sd_notify(3)`) without libsystemd: one
//! datagram of `KEY=value` lines to the socket named by `$NOTIFY_SOCKET`, a filesystem path or
//! an abstract socket written with a leading `@`. Outside a `Type=notify` unit the variable is
//! unset and every call is a cheap `Ok(false)`.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Sends `state` (newline-separated `KEY=value` assignments) to the service manager. Ok(false)
/// when `$NOTIFY_SOCKET` is unset, i.e. not running under a manager that listens.
pub fn notify(state: &str) -> io::Result<bool> {
    notify_to(std::env::var_os("NOTIFY_SOCKET").as_deref(), state)
}

/// [`notify`] with the socket given: `None` (or empty) sends nothing and gives Ok(false).
pub fn notify_to(socket: Option<&OsStr>, state: &str) -> io::Result<bool> {
    let Some(socket) = socket.filter(|s| !s.is_empty()) else {
        return Ok(false);
    };
    let addr = socket_addr(socket)?;
    let sock = UnixDatagram::unbound()?;
    // The daemon's loop runs on one thread: a manager that does not read (its queue full)
    // costs a notification, never the loop.
    sock.set_nonblocking(true)?;
    let sent = sock.send_to_addr(state.as_bytes(), &addr)?;
    if sent != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!(
                "notification to {socket:?} truncated: {sent} of {} bytes",
                state.len()
            ),
        ));
    }
    Ok(true)
}

/// The socket address of a `$NOTIFY_SOCKET` value: `@name` is abstract, anything else must be
/// an absolute path (as sd_notify requires).
fn socket_addr(socket: &OsStr) -> io::Result<SocketAddr> {
    let bytes = socket.as_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        return SocketAddr::from_abstract_name(name);
    }
    if bytes.first() != Some(&b'/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("NOTIFY_SOCKET={socket:?} is neither an absolute path nor @abstract"),
        ));
    }
    SocketAddr::from_pathname(socket)
}

/// Start-up is finished (`READY=1`).
pub fn ready() -> io::Result<bool> {
    notify("READY=1")
}

/// The service is shutting down (`STOPPING=1`).
pub fn stopping() -> io::Result<bool> {
    notify("STOPPING=1")
}

/// A one-line status for `systemctl status` (`STATUS=...`). Newlines in `text` would start new
/// assignments, so they become spaces.
pub fn status(text: &str) -> io::Result<bool> {
    notify(&status_line(text))
}

/// The `STATUS=` assignment for `text`, on one line.
fn status_line(text: &str) -> String {
    format!("STATUS={}", text.replace(['\n', '\r'], " "))
}

/// Keep-alive for `WatchdogSec=` (`WATCHDOG=1`).
pub fn watchdog() -> io::Result<bool> {
    notify("WATCHDOG=1")
}

/// The watchdog period the manager expects pings within, from `$WATCHDOG_USEC`; None when the
/// watchdog is off or meant for another process (`$WATCHDOG_PID`). Ping at half of it.
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_interval_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

/// [`watchdog_interval`] from the two variables' values and our own PID.
fn watchdog_interval_from(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != own_pid {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn receive(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).expect("a notification datagram");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    /// A receiver that never reads: once its queue is full, a notification fails at once
    /// instead of blocking the caller (the daemon's one-thread loop).
    #[test]
    fn a_full_socket_fails_the_notification_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let _server = UnixDatagram::bind(&path).unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        let target = path.clone();
        std::thread::spawn(move || {
            let mut failed = false;
            for _ in 0..100_000 {
                if notify_to(Some(target.as_os_str()), "STATUS=filling").is_err() {
                    failed = true;
                    break;
                }
            }
            let _ = done.send(failed);
        });
        let failed = finished
            .recv_timeout(Duration::from_secs(10))
            .expect("a notification blocked on a full socket");
        assert!(failed, "the queue never filled");
    }

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let sent = notify_to(Some(path.as_os_str()), "READY=1\nSTATUS=serving 2 networks").unwrap();
        assert!(sent);
        assert_eq!(receive(&server), "READY=1\nSTATUS=serving 2 networks");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "virtmasq-notify-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let server =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let socket = format!("@{name}");
        assert!(notify_to(Some(OsStr::new(&socket)), "WATCHDOG=1").unwrap());
        assert_eq!(receive(&server), "WATCHDOG=1");
    }

    #[test]
    fn unset_or_empty_socket_sends_nothing() {
        assert!(!notify_to(None, "READY=1").unwrap());
        assert!(!notify_to(Some(OsStr::new("")), "READY=1").unwrap());
    }

    #[test]
    fn relative_path_is_refused() {
        let err = notify_to(Some(OsStr::new("run/notify")), "READY=1").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn missing_socket_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nobody-listens");
        let err = notify_to(Some(path.as_os_str()), "READY=1").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn status_stays_on_one_line() {
        assert_eq!(status_line("a\nb\r\nc"), "STATUS=a b  c");
    }

    #[test]
    fn watchdog_interval_table() {
        let table: &[(Option<&str>, Option<&str>, Option<Duration>)] = &[
            (None, None, None),
            (Some("30000000"), None, Some(Duration::from_secs(30))),
            (Some("30000000"), Some("77"), Some(Duration::from_secs(30))),
            (Some("30000000"), Some("78"), None),
            (Some("0"), None, None),
            (Some("soon"), None, None),
            (Some("5000"), Some("pid"), None),
        ];
        for (usec, pid, want) in table {
            assert_eq!(
                watchdog_interval_from(*usec, *pid, 77),
                *want,
                "{usec:?} {pid:?}"
            );
        }
    }
}
