//! The daemon's systemd notifications as a test reads them: a notify socket whose STATUS=
//! lines a thread collects as they come (an unread socket would fill up and block the daemon,
//! as under a stalled systemd), and a wait for the next line that says something.

use std::cell::Cell;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every STATUS= line received so far, and how many a wait has looked at.
#[derive(Default)]
pub struct StatusLines {
    lines: Arc<Mutex<Vec<String>>>,
    seen: Cell<usize>,
}

impl StatusLines {
    /// Binds a notify socket at `path` (a stale one is replaced) and collects its STATUS=
    /// lines here, after those of earlier sockets.
    pub fn listen(&self, path: &Path) {
        let _ = std::fs::remove_file(path);
        let notify = UnixDatagram::bind(path).unwrap();
        let sink = self.lines.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = notify.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let status = msg.lines().filter(|l| l.starts_with("STATUS="));
                sink.lock().unwrap().extend(status.map(String::from));
            }
        });
    }

    /// Waits for a STATUS= line containing `want`, after those already looked at; the line.
    /// Panics after `within` with every line and `context()` (the daemon's log).
    pub fn wait(&self, want: &str, within: Duration, context: impl Fn() -> String) -> String {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            {
                let all = self.lines.lock().unwrap();
                if let Some(i) = (self.seen.get()..all.len()).find(|&i| all[i].contains(want)) {
                    self.seen.set(i + 1);
                    return all[i].clone();
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let all = self.lines.lock().unwrap();
        panic!(
            "no STATUS= with {want:?} within {within:?}: {all:?}\n{}",
            context()
        );
    }
}
