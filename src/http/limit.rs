//! Bounds on the endpoint's connections. Any guest on a served bridge can connect, and the HTTP
//! server sets no timeout of its own: without these, a guest that opens connections and sends
//! nothing would hold the daemon's file descriptors, and a shutdown (which waits for open
//! connections) forever. iPXE fetches a script in milliseconds, so both bounds are generous.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// How many connections, and for how long each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Time after which a connection is closed, whatever it is doing.
    pub lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 128,
            lifetime: Duration::from_secs(30),
        }
    }
}

/// A listener that hands out at most `max_connections` [`Bounded`] connections at a time.
pub(super) struct BoundedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    lifetime: Duration,
}

impl BoundedListener {
    pub(super) fn new(inner: TcpListener, limits: Limits) -> Self {
        Self {
            inner,
            permits: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            lifetime: limits.lifetime,
        }
    }
}

impl axum::serve::Listener for BoundedListener {
    type Io = Bounded;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Bounded, SocketAddr) {
        // The semaphore is never closed, so acquiring only waits.
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed");
        let mut pause = Duration::from_millis(10);
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let deadline = Box::pin(tokio::time::sleep(self.lifetime));
                    let io = Bounded {
                        stream,
                        deadline,
                        _permit: permit,
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
/// place among the open connections when dropped.
pub(super) struct Bounded {
    stream: TcpStream,
    deadline: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
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
