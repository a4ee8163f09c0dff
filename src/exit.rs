//! The one place where errors become exit codes (sysexits.h values) and printed messages.

use crate::config::ConfigError;
use crate::filter::FilterError;
use crate::libvirt::source::LibvirtError;
use crate::model::InvalidValue;
use crate::system::apply::ApplyError;

/// Bad input data (a network, a MAC, a file of MACs).
pub const DATAERR: u8 = 65;
/// A service is unavailable (libvirt, D-Bus, dnsmasq).
pub const UNAVAILABLE: u8 = 69;
/// An internal error.
pub const SOFTWARE: u8 = 70;
/// A temporary failure (another writer holds a lock): try again.
pub const TEMPFAIL: u8 = 75;
/// An I/O error.
pub const IOERR: u8 = 74;
/// A configuration error.
pub const CONFIG: u8 = 78;

/// The exit code for an error, from the first error in its chain that has a known kind.
pub fn code_for(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.is::<ConfigError>() {
            return CONFIG;
        }
        if cause.is::<crate::agent::lock::AlreadyRunning>() {
            return TEMPFAIL;
        }
        if cause.is::<InvalidValue>() {
            return DATAERR;
        }
        if let Some(e) = cause.downcast_ref::<ApplyError>() {
            return match e {
                ApplyError::Invalid { .. } => DATAERR,
                ApplyError::Io { .. } => IOERR,
                ApplyError::Restart { .. } | ApplyError::Hangup { .. } => UNAVAILABLE,
            };
        }
        if let Some(e) = cause.downcast_ref::<FilterError>() {
            return match e {
                FilterError::Duplicate { .. }
                | FilterError::Conflict { .. }
                | FilterError::BadEntry { .. }
                | FilterError::BadJson { .. } => DATAERR,
                FilterError::LockTimeout { .. } => TEMPFAIL,
                _ => IOERR,
            };
        }
        if cause.is::<crate::systemd::SystemdError>() {
            return UNAVAILABLE;
        }
        if cause.is::<crate::libvirt::adopt::AdoptError>() {
            return DATAERR;
        }
        if cause.is::<crate::libvirt::define::DefineError>() || cause.is::<LibvirtError>() {
            return UNAVAILABLE;
        }
        if cause.is::<std::io::Error>() {
            return IOERR;
        }
    }
    1
}

/// The message for an error: each cause in the chain, joined with ": ".
pub fn message(err: &anyhow::Error) -> String {
    format!("{err:#}")
}

/// An error and each of its sources, joined with ": " (for errors outside anyhow).
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
