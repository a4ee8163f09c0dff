//! The D-Bus API `org.virtmasq.Agent1` at `/org/virtmasq/Agent1` on the system bus: report a
//! network event (the hook), reconcile now, the PXE filter, status; properties and signals.
//! The interface is described in `dbus/org.virtmasq.Agent1.xml` (a test checks the running
//! service against it); the bus policy in `dbus/` lets only root call methods that change
//! anything, and each such method checks its caller's uid too.

use std::sync::Arc;

use tokio::sync::mpsc;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{fdo, interface, Connection};

use super::status::{snapshot, SharedStatus};
use crate::filter::{DesiredLists, FilterError, ListKey, PxeFilter, SyncReport};
use crate::model::MacAddr;

/// The bus name.
pub const NAME: &str = "org.virtmasq.Agent1";
/// The object path.
pub const PATH: &str = "/org/virtmasq/Agent1";

/// What the D-Bus side asks of the daemon loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Something changed (a hook event, a filter change, a caller's request): reconcile soon.
    Reconcile {
        /// Who asked, for the log.
        why: String,
    },
}

/// The exported object.
pub struct Agent {
    /// To the daemon loop.
    pub requests: mpsc::UnboundedSender<Request>,
    /// The daemon's status.
    pub status: SharedStatus,
    /// The PXE filter (its operations lock and write the hostsdir themselves).
    pub filter: Arc<PxeFilter>,
}

/// Refuses callers other than root (the bus policy should already have).
async fn require_root(conn: &Connection, hdr: &Header<'_>) -> fdo::Result<()> {
    let sender = hdr
        .sender()
        .ok_or_else(|| fdo::Error::AccessDenied("caller unknown".into()))?;
    let uid = fdo::DBusProxy::new(conn)
        .await?
        .get_connection_unix_user(sender.clone().into())
        .await?;
    if uid != 0 {
        return Err(fdo::Error::AccessDenied(format!(
            "only root may change what virtmasq serves (caller uid {uid})"
        )));
    }
    Ok(())
}

fn parse_macs(macs: &[impl AsRef<str>]) -> fdo::Result<Vec<MacAddr>> {
    macs.iter()
        .map(|m| {
            m.as_ref()
                .parse()
                .map_err(|e| fdo::Error::InvalidArgs(format!("{e}")))
        })
        .collect()
}

/// The most [`Agent::filter_sync_from`] reads: far above 50,000 MACs as pretty-printed JSON
/// (about 1.2 MB), far below what would strain the daemon.
const MAX_LIST_BYTES: u64 = 256 << 20;

/// Reads a list handed over as a file descriptor: only a regular file (or memfd), so that
/// the daemon never waits on a pipe or a terminal held by its caller.
fn read_list(fd: std::os::fd::OwnedFd, origin: &str) -> Result<String, FilterError> {
    use std::io::Read;
    let bad = |reason: String| FilterError::BadEntry {
        origin: origin.to_owned(),
        at: "as handed over".into(),
        reason,
    };
    let file = std::fs::File::from(fd);
    let meta = file
        .metadata()
        .map_err(|e| bad(format!("cannot read what was handed over: {e}")))?;
    if !meta.file_type().is_file() {
        return Err(bad(
            "not a regular file: hand over a file or a memfd, not a pipe or a terminal".into(),
        ));
    }
    if meta.len() > MAX_LIST_BYTES {
        return Err(bad(format!(
            "{} bytes, more than the {MAX_LIST_BYTES} a list may hold",
            meta.len()
        )));
    }
    let mut text = String::with_capacity(meta.len() as usize);
    // From the start whatever the descriptor's offset: pread through a shared reference.
    let mut reader = std::io::BufReader::new(ReadAt { file: &file, at: 0 });
    reader
        .read_to_string(&mut text)
        .map_err(|e| bad(format!("cannot read it: {e}")))?;
    Ok(text)
}

/// Reads a file from offset 0 with `pread`, leaving the descriptor's own offset alone (the
/// caller may share it).
struct ReadAt<'a> {
    file: &'a std::fs::File,
    at: u64,
}

impl std::io::Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

impl Agent {
    fn ask(&self, why: String) -> fdo::Result<()> {
        self.requests
            .send(Request::Reconcile { why })
            .map_err(|_| fdo::Error::Failed("the agent is stopping".into()))
    }

    async fn filter_op(
        &self,
        macs: Vec<String>,
        op: fn(&PxeFilter, &[MacAddr]) -> Result<SyncReport, FilterError>,
        emitter: &SignalEmitter<'_>,
    ) -> fdo::Result<()> {
        let macs = parse_macs(&macs)?;
        self.filter_change(move |f| op(f, &macs), emitter)
            .await
            .map(drop)
    }

    /// Runs one change of the filter off the event loop, then announces it.
    async fn filter_change(
        &self,
        change: impl FnOnce(&PxeFilter) -> Result<SyncReport, FilterError> + Send + 'static,
        emitter: &SignalEmitter<'_>,
    ) -> fdo::Result<SyncReport> {
        let filter = self.filter.clone();
        let report = tokio::task::spawn_blocking(move || change(&filter))
            .await
            .map_err(|e| fdo::Error::Failed(e.to_string()))?
            .map_err(|e| match e.is_bad_input() {
                true => fdo::Error::InvalidArgs(crate::error::chain(&e)),
                false => fdo::Error::Failed(crate::error::chain(&e)),
            })?;
        // A sync that found everything in line (a periodic one with the same list) changes
        // nothing anyone sees: no signal, and no reconcile competing with the next call.
        if report.did_anything() {
            Agent::filter_changed(emitter).await?;
            self.ask("filter changed over D-Bus".into())?;
        }
        Ok(report)
    }
}

#[interface(name = "org.virtmasq.Agent1")]
impl Agent {
    /// A libvirt network changed (`op` as libvirt's hook names it): reconcile soon.
    async fn report_network_event(
        &self,
        network: &str,
        op: &str,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> fdo::Result<()> {
        require_root(conn, &hdr).await?;
        self.ask(format!("network {network:?} {op}"))
    }

    /// Reconcile now.
    async fn reconcile(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> fdo::Result<()> {
        require_root(conn, &hdr).await?;
        self.ask("asked over D-Bus".into())
    }

    /// Allows these MACs (written to the hostsdir before the call returns).
    async fn filter_allow(
        &self,
        macs: Vec<String>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> fdo::Result<()> {
        require_root(conn, &hdr).await?;
        self.filter_op(macs, PxeFilter::allow, &emitter).await
    }

    /// Denies these MACs.
    async fn filter_deny(
        &self,
        macs: Vec<String>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> fdo::Result<()> {
        require_root(conn, &hdr).await?;
        self.filter_op(macs, PxeFilter::deny, &emitter).await
    }

    /// Returns these MACs to the policy for unknown MACs.
    async fn filter_forget(
        &self,
        macs: Vec<String>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> fdo::Result<()> {
        require_root(conn, &hdr).await?;
        self.filter_op(macs, PxeFilter::forget, &emitter).await
    }

    /// Replaces both lists (`filter sync`); MACs in neither fall back to the policy for
    /// unknown MACs. Only the files of MACs whose entry changes are written. The lists are
    /// read where they lie in the message; the same two lists as the last applied, with the
    /// policy unchanged since (a periodic sync), are answered without being parsed.
    async fn filter_sync(
        &self,
        allow: Vec<&str>,
        deny: Vec<&str>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> fdo::Result<()> {
        require_root(conn, &hdr).await?;
        let key = ListKey::of_lists(&allow, &deny);
        let unchanged = self
            .filter
            .unchanged_since(key)
            .map_err(|e| fdo::Error::Failed(crate::error::chain(&e)))?;
        if unchanged {
            return Ok(());
        }
        let desired = DesiredLists::new(&parse_macs(&allow)?, &parse_macs(&deny)?)
            .map_err(|e| fdo::Error::InvalidArgs(crate::error::chain(&e)))?;
        self.filter_change(move |f| f.replace_all_as(desired, key), &emitter)
            .await
            .map(drop)
    }

    /// Replaces both lists with those in `input`, an open regular file (or memfd) holding
    /// the list the CLI's `filter sync` reads from its file (JSON or one MAC a line); `origin` names it
    /// in errors. The daemon reads and parses it: a list of any length costs no D-Bus
    /// message of its size. Returns the files written and the time the change took (µs).
    #[zbus(out_args("written", "elapsed_us"))]
    async fn filter_sync_from(
        &self,
        input: zbus::zvariant::OwnedFd,
        origin: &str,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> fdo::Result<(u32, u64)> {
        require_root(conn, &hdr).await?;
        let origin = origin.to_owned();
        let report = self
            .filter_change(
                move |f| {
                    let read = crate::timing::phase("filter list read");
                    let text = read_list(std::os::fd::OwnedFd::from(input), &origin)?;
                    drop(read);
                    let _change = crate::timing::phase("filter list applied");
                    f.replace_all_from(&text, &origin)
                },
                &emitter,
            )
            .await?;
        Ok((
            u32::try_from(report.applied.written).unwrap_or(u32::MAX),
            u64::try_from(report.elapsed.as_micros()).unwrap_or(u64::MAX),
        ))
    }

    /// The allowed MACs, the denied MACs and the policy for the others.
    #[zbus(out_args("allowed", "denied", "unknown"))]
    async fn filter_list(&self) -> fdo::Result<(Vec<String>, Vec<String>, String)> {
        let filter = self.filter.clone();
        let policy = tokio::task::spawn_blocking(move || filter.list_cached())
            .await
            .map_err(|e| fdo::Error::Failed(e.to_string()))?
            .map_err(|e| fdo::Error::Failed(crate::error::chain(&e)))?;
        Ok((
            policy.allow.iter().map(|m| m.to_string()).collect(),
            policy.deny.iter().map(|m| m.to_string()).collect(),
            format!("{:?}", policy.unknown).to_lowercase(),
        ))
    }

    /// The status as JSON (the schema of the JSON output of `virtmasq status`).
    #[zbus(out_args("status"))]
    async fn status(&self) -> fdo::Result<String> {
        serde_json::to_string(&snapshot(&self.status))
            .map_err(|e| fdo::Error::Failed(e.to_string()))
    }

    /// `system` or `private`.
    #[zbus(property)]
    async fn mode(&self) -> String {
        format!("{:?}", snapshot(&self.status).mode).to_lowercase()
    }

    /// The networks served.
    #[zbus(property)]
    async fn managed_networks(&self) -> Vec<String> {
        snapshot(&self.status)
            .networks
            .into_iter()
            .map(|n| n.name)
            .collect()
    }

    /// MACs allowed and denied by the filter.
    #[zbus(property)]
    async fn filter_counts(&self) -> (u32, u32) {
        let f = snapshot(&self.status).filter;
        (f.allowed, f.denied)
    }

    /// The set of served networks changed.
    #[zbus(signal)]
    async fn networks_changed(
        emitter: &SignalEmitter<'_>,
        networks: Vec<String>,
    ) -> zbus::Result<()>;

    /// The filter's policy changed.
    #[zbus(signal)]
    async fn filter_changed(emitter: &SignalEmitter<'_>) -> zbus::Result<()>;
}

/// The D-Bus API, served from a thread of its own with a runtime of its own: a call is
/// answered while the daemon's loop is busy (a reconcile, a private dnsmasq's restart), so
/// the libvirt hook, which waits for its report's answer while libvirtd waits for the hook,
/// never waits for a reconcile. The loop reaches the bus through [`Served::connection`].
/// Dropping it releases the name and stops the thread.
pub struct Served {
    /// The connection; zbus's tasks for it run on the thread.
    conn: Option<Connection>,
    /// Dropped to end the thread's runtime.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The thread.
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    /// The bus connection (signals are sent through it from any thread).
    pub fn connection(&self) -> &Connection {
        self.conn
            .as_ref()
            .expect("the connection lives as long as Served")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.conn.take();
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Exports the object and takes the name, on a thread of its own ([`Served`]). Fails when
/// there is no system bus or the name is taken (another daemon runs).
pub async fn serve(agent: Agent, address: Option<&str>) -> zbus::Result<Served> {
    let address = address.map_or_else(crate::systemd::system_bus_address, str::to_owned);
    let (ready, built) = tokio::sync::oneshot::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let io = |e: std::io::Error| zbus::Error::InputOutput(Arc::new(e));
    let thread = std::thread::Builder::new()
        .name("virtmasq-dbus".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let runtime = match runtime {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready.send(Err(io(e)));
                    return;
                }
            };
            runtime.block_on(async move {
                let conn = async {
                    let builder = crate::systemd::bus::builder(&address).await?;
                    builder.name(NAME)?.serve_at(PATH, agent)?.build().await
                };
                let conn = conn.await;
                let serving = conn.is_ok();
                if ready.send(conn).is_ok() && serving {
                    let _ = stopped.await;
                }
            });
        })
        .map_err(io)?;
    let conn = match built.await {
        Ok(conn) => conn?,
        Err(_) => {
            let _ = thread.join();
            return Err(zbus::Error::Failure(
                "the D-Bus thread ended before the bus was reached".into(),
            ));
        }
    };
    Ok(Served {
        conn: Some(conn),
        stop: Some(stop),
        thread: Some(thread),
    })
}

/// Tells listeners the served networks changed (signal and property).
pub async fn announce_networks(conn: &Connection, networks: Vec<String>) -> zbus::Result<()> {
    let iface = conn.object_server().interface::<_, Agent>(PATH).await?;
    let emitter = iface.signal_emitter();
    Agent::networks_changed(emitter, networks).await?;
    let agent = iface.get().await;
    agent.managed_networks_changed(emitter).await?;
    Ok(())
}
