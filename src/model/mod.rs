//! Validated domain types. Every value that reaches a dnsmasq file, a file name or a command line
//! passes through one of these constructors, so nothing that could end a dnsmasq line or start a
//! new option (newline, comma, `#`, NUL, `=`) can get through by construction.

mod dns;
mod ip;
mod ip6;
mod lease;
mod mac;
mod mode;
mod names;
mod network;
mod network6;
mod path;
pub mod pxe;
mod settings;

pub use dns::{DnsHost, DnsRecords, Forwarder, SrvRecord, TxtRecord, TxtValue};
pub use ip::{Ipv4Net, Ipv4Range};
pub use ip6::{Duid, Ipv6Net, Ipv6Range, DHCP6_MIN_PREFIX};
pub use lease::LeaseTime;
pub use mac::MacAddr;
pub use mode::Mode;
pub(crate) use names::string_newtype;
pub use names::{DnsName, IfName, NetworkName, RESERVED_PREFIX};
pub use network::{DhcpIntent, DhcpRange, IntentSource, ManagedNetwork, StaticHost};
pub use network6::{Dhcp6Range, StaticHost6};
pub use path::{check_line_path, deserialize_line_path};
pub use settings::{Bootp, BootpFile, Mtu, NetworkSettings, RawOption, CONTROLLED_OPTIONS};

use thiserror::Error;

/// How much of a refused input an error keeps.
pub const SHOWN_CHARS: usize = 80;

/// A value that failed validation: what kind of value, the input as given, and why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid {kind} {input:?}: {reason}")]
pub struct InvalidValue {
    /// What the value was meant to be ("MAC address", "interface name", ...).
    pub kind: &'static str,
    /// The input as given (shown with escapes, so a newline is visible).
    pub input: String,
    /// What is wrong with it, in words a user can act on.
    pub reason: String,
}

impl InvalidValue {
    /// The input is kept up to [`SHOWN_CHARS`] characters (with its length after that): an
    /// error travels into logs, `status` and D-Bus, and a megabyte of attribute must not.
    pub(crate) fn new(kind: &'static str, input: &str, reason: &str) -> Self {
        let input = match input.char_indices().nth(SHOWN_CHARS) {
            Some((cut, _)) => format!("{}... ({} bytes)", &input[..cut], input.len()),
            None => input.to_owned(),
        };
        Self {
            kind,
            input,
            reason: reason.to_owned(),
        }
    }
}
