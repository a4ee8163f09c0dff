//! Bounds on the endpoint's connections. Any guest on a served bridge can connect, and the HTTP
//! server sets no timeout of its own: without these, a guest that opens connections and sends
//! nothing would hold the daemon's file descriptors, and a shutdown (which waits for open
//! connections) forever. iPXE fetches a script in milliseconds, so the bounds are generous.
//!
//! A connection is accepted first and then counted: one over its peer's share or over the total
//! is closed at once, so a guest holding idle sockets uses up its own share only, and the
//! kernel's accept queue never fills up behind it, starving PXE on every bridge.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

use super::summary::{Event, Summary};

/// How many connections, and for how long each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once, from all peers; more are closed at once.
    pub max_connections: usize,
    /// Connections open at once from one address; more are closed at once.
    pub max_per_peer: usize,
    /// Time after which a connection is closed, whatever it is doing.
    pub lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 128,
            max_per_peer: 8,
            lifetime: Duration::from_secs(30),
        }
    }
}

/// Open connections per peer address.
type PeerCounts = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// A listener that hands out at most `max_connections` [`Bounded`] connections at a time, at
/// most `max_per_peer` of them to one address.
pub(super) struct BoundedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    peers: PeerCounts,
    max_per_peer: usize,
    lifetime: Duration,
    summary: Arc<Summary>,
}

impl BoundedListener {
    pub(super) fn new(inner: TcpListener, limits: Limits, summary: Arc<Summary>) -> Self {
        Self {
            inner,
            permits: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            peers: PeerCounts::default(),
            max_per_peer: limits.max_per_peer.max(1),
            lifetime: limits.lifetime,
            summary,
        }
    }

    /// The places `addr` takes, or the reason it gets none.
    fn admit(&self, addr: &SocketAddr) -> Result<(OwnedSemaphorePermit, PeerSlot), Event> {
        let slot = PeerSlot::take(&self.peers, addr.ip().to_canonical(), self.max_per_peer)
            .ok_or(Event::OverPeerCap)?;
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| Event::OverTotalCap)?;
        Ok((permit, slot))
    }
}

/// One connection counted against its peer's share, given back when dropped.
struct PeerSlot {
    peers: PeerCounts,
    ip: IpAddr,
}

impl PeerSlot {
    fn take(peers: &PeerCounts, ip: IpAddr, max: usize) -> Option<Self> {
        let mut map = peers.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Self {
            peers: peers.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut map = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

impl axum::serve::Listener for BoundedListener {
    type Io = Bounded;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Bounded, SocketAddr) {
        let mut pause = Duration::from_millis(10);
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let (permit, slot) = match self.admit(&addr) {
                        Ok(places) => places,
                        Err(event) => {
                            tracing::debug!(client = %addr, ?event, "closed an HTTP connection");
                            self.summary.record(event);
                            continue;
                        }
                    };
                    let deadline = Box::pin(tokio::time::sleep(self.lifetime));
                    let io = Bounded {
                        stream,
                        deadline,
                        _permit: permit,
                        _slot: slot,
                    };
                    return (io, addr);
                }
                Err(e) => {
                    // Out of descriptors, or a connection reset before accept: wait, retry.
                    tracing::warn!(error = %e, "cannot accept an HTTP connection");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection that fails every read and write once its lifetime is over, and gives back its
/// places among the open connections (all, and its peer's) when dropped.
pub(super) struct Bounded {
    stream: TcpStream,
    deadline: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
    _slot: PeerSlot,
}

impl Bounded {
    /// The address the client reached us on.
    pub(super) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.local_addr()
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "HTTP connection lifetime is over")
}

impl AsyncRead for Bounded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.expired(cx) {
            return Poll::Ready(Err(timed_out()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Bounded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.expired(cx) {
            return Poll::Ready(Err(timed_out()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
