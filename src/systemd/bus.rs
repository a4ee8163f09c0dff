//! Connections to a D-Bus bus by address, without a thread.
//!
//! zbus connects a `unix:path=` socket in a blocking task, which starts a thread of the
//! runtime's blocking pool, and a current-thread runtime joins that thread when it shuts down:
//! a thread's start and join on the libvirt hook's path, for a `connect` that never blocks. A
//! socket on a path is connected here directly (a non-blocking connect: a bus whose backlog
//! is full is an error, not a wait), then handed to zbus for the handshake. Any other address
//! (`unix:abstract=`, `tcp:`, several addresses, a path with escapes) is left to zbus.

use std::path::PathBuf;
use std::str::FromStr;

use zbus::address::transport::{Transport, UnixSocket};
use zbus::connection::Builder;

/// The socket path of a single `unix:path=` address; None for anything else.
pub fn unix_path(address: &str) -> Option<PathBuf> {
    if address.contains(';') {
        return None;
    }
    let parsed = zbus::Address::from_str(address).ok()?;
    match parsed.transport() {
        Transport::Unix(unix) => match unix.path() {
            // zbus takes the value as it is; an escaped one is left to it, to mean the same.
            UnixSocket::File(path) if !path.to_string_lossy().contains('%') => Some(path.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// A connection builder for the bus at `address`, its socket already connected where the
/// address is a path.
pub async fn builder(address: &str) -> zbus::Result<Builder<'static>> {
    if let Some(path) = unix_path(address) {
        let stream = tokio::net::UnixStream::connect(&path).await.map_err(|e| {
            let parsed = zbus::Address::from_str(address);
            match parsed {
                Ok(parsed) => zbus::Error::Connection(std::sync::Arc::new(e), parsed),
                Err(_) => zbus::Error::InputOutput(std::sync::Arc::new(e)),
            }
        })?;
        return Ok(Builder::unix_stream(stream));
    }
    Builder::address(address)
}

/// A connection to the bus at `address`.
pub async fn connect(address: &str) -> zbus::Result<zbus::Connection> {
    builder(address).await?.build().await
}

/// A connection to the system bus (`$DBUS_SYSTEM_BUS_ADDRESS`, or the standard socket).
pub async fn system() -> zbus::Result<zbus::Connection> {
    connect(&super::system_bus_address()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_single_path_address_is_connected_here() {
        assert_eq!(
            unix_path("unix:path=/run/dbus/system_bus_socket"),
            Some(PathBuf::from("/run/dbus/system_bus_socket"))
        );
        assert_eq!(
            unix_path("unix:path=/tmp/bus,guid=0123456789abcdef0123456789abcdef"),
            Some(PathBuf::from("/tmp/bus"))
        );
        assert_eq!(unix_path("unix:path=/tmp/a%20b"), None);
        assert_eq!(unix_path("unix:abstract=/tmp/dbus-x"), None);
        assert_eq!(unix_path("tcp:host=127.0.0.1,port=1"), None);
        assert_eq!(unix_path("unix:path=/a;unix:path=/b"), None);
        assert_eq!(unix_path("garbage"), None);
    }

    /// A path with nothing listening is an error at once, like zbus's own connect.
    #[tokio::test]
    async fn a_missing_socket_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let address = format!("unix:path={}", dir.path().join("none").display());
        match connect(&address).await {
            Err(zbus::Error::Connection(e, at)) => {
                assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
                assert_eq!(at.to_string(), address);
            }
            other => panic!("expected NotFound, got {other:?}"),
        }
    }
}
