//! systemd, as the system dnsmasq's service manager and as ours.
//!
//! - [`Systemd`]: a D-Bus client of `org.freedesktop.systemd1` on the system bus (or any bus
//!   address, so tests can reach a container's systemd). It answers `detect`'s questions about
//!   a unit ([`Systemd::unit_status`]), restarts a unit and waits for the outcome
//!   ([`Systemd::restart_and_wait`]), and sends SIGHUP to a unit's main process
//!   ([`Systemd::hangup`]).
//! - [`manager`]: the zbus proxies those calls are made through.
//! - [`bus`]: connections to a bus by address, a socket path connected without a thread.
//! - [`notify`]: `sd_notify` for the agent's own unit, without libsystemd.
//!
//! A host without systemd is a normal case for `detect`: it shows up as the one matchable
//! [`SystemdError::NotRunning`], never as a generic failure.

pub mod bus;
mod client;
mod error;
pub mod limit;
pub mod manager;
pub mod notify;
mod restart;

pub use client::{
    system_bus_address, Systemd, UnitStatus, DEFAULT_SYSTEM_BUS_ADDRESS, SYSTEMD_BUS_NAME,
};
pub use error::{SystemdError, UnitFailure};
pub use restart::RestartReport;
