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
                ApplyError::Io { .. }
                | ApplyError::NotRestored { .. }
                | ApplyError::Interrupted
                | ApplyError::Journal(_) => IOERR,
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
        if let Some(code) = code_of_module_errors(cause) {
            return code;
        }
        if cause.is::<std::io::Error>() {
            return IOERR;
        }
    }
    1
}

/// The codes of the other modules' errors.
fn code_of_module_errors(cause: &(dyn std::error::Error + 'static)) -> Option<u8> {
    use crate::dnsmasq::private::PrivateError;
    use crate::setup::SetupError;
    if let Some(e) = cause.downcast_ref::<PrivateError>() {
        return Some(match e {
            PrivateError::Io { .. } => IOERR,
            PrivateError::Invalid { .. } => DATAERR,
        });
    }
    if let Some(e) = cause.downcast_ref::<SetupError>() {
        return Some(match e {
            SetupError::Io { .. } => IOERR,
            SetupError::MissingShim { .. }
            | SetupError::Systemd { .. }
            | SetupError::Dbus { .. }
            | SetupError::StopTimeout { .. } => UNAVAILABLE,
        });
    }
    if let Some(e) = cause.downcast_ref::<crate::filter::etcd::EtcdError>() {
        use crate::filter::etcd::EtcdError;
        return Some(match e {
            EtcdError::Tls { .. } => CONFIG,
            EtcdError::TooMany { .. } => DATAERR,
            EtcdError::Apply(_) => IOERR,
            EtcdError::Request { .. }
            | EtcdError::Timeout { .. }
            | EtcdError::Compacted { .. }
            | EtcdError::WatchEnded { .. } => UNAVAILABLE,
        });
    }
    // A PXE profile is configuration; libvirt's XML is data. (An iPXE query's error is an
    // HTTP 400 and never reaches here.)
    if cause.is::<crate::pxe::PxeError>() {
        return Some(CONFIG);
    }
    if cause.is::<crate::libvirt::xml::XmlError>() {
        return Some(DATAERR);
    }
    if cause.is::<crate::http::HttpError>() {
        return Some(UNAVAILABLE);
    }
    None
}

/// The message for an error: each cause in the chain, joined with ": ".
pub fn message(err: &anyhow::Error) -> String {
    format!("{err:#}")
}

pub use crate::error::chain;

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Every error a command can end with has one of the documented codes, never a bare 1.
    #[test]
    fn every_error_enum_has_a_documented_code() {
        let io = || std::io::Error::other("x");
        let net: crate::model::NetworkName = "lab".parse().unwrap();
        let cases: Vec<(anyhow::Error, u8)> = vec![
            (
                crate::filter::etcd::EtcdError::Tls {
                    path: PathBuf::from("/ca.pem"),
                    source: io(),
                }
                .into(),
                CONFIG,
            ),
            (
                crate::filter::etcd::EtcdError::Timeout {
                    endpoint: "http://127.0.0.1:2379".into(),
                    what: "connect",
                }
                .into(),
                UNAVAILABLE,
            ),
            (
                crate::dnsmasq::private::PrivateError::Io {
                    network: net.clone(),
                    path: PathBuf::from("/x"),
                    source: io(),
                }
                .into(),
                IOERR,
            ),
            (
                crate::dnsmasq::private::PrivateError::Invalid {
                    network: net.clone(),
                    message: "bad".into(),
                }
                .into(),
                DATAERR,
            ),
            (
                crate::setup::SetupError::MissingShim {
                    path: PathBuf::from("/x"),
                }
                .into(),
                UNAVAILABLE,
            ),
            (
                crate::setup::SetupError::Io {
                    action: "write",
                    path: PathBuf::from("/x"),
                    source: io(),
                }
                .into(),
                IOERR,
            ),
            (
                crate::pxe::PxeError::Profile {
                    network: net,
                    reason: "x".into(),
                }
                .into(),
                CONFIG,
            ),
            (
                crate::libvirt::xml::NetworkXml::parse("<nope/>")
                    .unwrap_err()
                    .into(),
                DATAERR,
            ),
            (
                crate::http::HttpError::Bind {
                    addr: "127.0.0.1:1".parse().unwrap(),
                    source: io(),
                }
                .into(),
                UNAVAILABLE,
            ),
        ];
        for (err, want) in cases {
            assert_eq!(code_for(&err), want, "{err:#}");
        }
        // Wrapped in context, the first known cause decides.
        let wrapped = anyhow::Error::from(io()).context("reading");
        assert_eq!(code_for(&wrapped), IOERR);
    }
}
