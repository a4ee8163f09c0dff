//! Syslog over `/dev/log` (the journal under systemd), beside tracing's stderr: libvirt
//! throws a hook's output away unless it fails, so the hook writes here too.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

/// Syslog over `/dev/log` (the journal under systemd), beside tracing's stderr: libvirt
/// throws the hook's output away unless it fails.
pub struct Journal {
    socket: Option<(UnixDatagram, PathBuf)>,
}

impl Journal {
    /// Logs to `/dev/log` if it exists, else to stderr only.
    pub fn open() -> Self {
        Self::at(Path::new("/dev/log"))
    }

    /// Logs to the syslog socket at `path`.
    pub fn at(path: &Path) -> Self {
        let socket = UnixDatagram::unbound().ok().filter(|_| path.exists());
        Self {
            socket: socket.map(|s| (s, path.to_owned())),
        }
    }

    /// A line at syslog `severity` (3 error, 4 warning, 6 information).
    pub fn send(&self, severity: u8, msg: &str) {
        // Facility daemon (3); RFC 3164 without a timestamp, which the receiver adds.
        let pri = 3 * 8 + severity;
        if let Some((socket, path)) = &self.socket {
            let line = format!("<{pri}>virtmasq-hook[{}]: {msg}", std::process::id());
            let _ = socket.send_to(line.as_bytes(), path);
        }
    }

    /// An error.
    pub fn error(&self, msg: &str) {
        tracing::error!("{msg}");
        self.send(3, msg);
    }

    /// A warning.
    pub fn warn(&self, msg: &str) {
        tracing::warn!("{msg}");
        self.send(4, msg);
    }

    /// Information.
    pub fn info(&self, msg: &str) {
        tracing::info!("{msg}");
        self.send(6, msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_gets_syslog_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let server = UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        Journal::at(&path).warn("network 'a': hello");
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).unwrap();
        let line = String::from_utf8_lossy(&buf[..n]);
        assert!(line.starts_with("<28>virtmasq-hook["), "{line}");
        assert!(line.ends_with("]: network 'a': hello"), "{line}");
        // No socket: stderr only, and no error.
        Journal::at(&dir.path().join("absent")).info("x");
    }
}
