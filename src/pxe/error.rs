//! Errors of PXE profiles and iPXE rules. Each names the network whose profile is at fault (or
//! the rule) and the offending value; causes are kept as `#[source]`, not repeated.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use crate::model::NetworkName;

/// A profile that cannot be served: nothing is written for its network.
#[derive(Debug, Error)]
pub enum PxeError {
    /// The TFTP root cannot be used.
    #[error("PXE profile of network '{network}': TFTP root {}: {reason}", root.display())]
    TftpRoot {
        /// The network.
        network: NetworkName,
        /// The configured directory.
        root: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
        /// The I/O error behind it, if any.
        #[source]
        source: Option<io::Error>,
    },
    /// A boot file is missing from the TFTP root (or is not a regular file).
    #[error(
        "PXE profile of network '{network}': boot file {file:?} for {what} {reason} in TFTP root {}",
        root.display()
    )]
    BootFile {
        /// The network.
        network: NetworkName,
        /// Which entry names it: an architecture, and the host override if any.
        what: String,
        /// The name dnsmasq will send (for proxy mode, with `.0` added where dnsmasq adds it).
        file: String,
        /// The TFTP root it was looked up in.
        root: PathBuf,
        /// "does not exist", "is not a regular file", ...
        reason: &'static str,
        /// The I/O error behind it, if any.
        #[source]
        source: Option<io::Error>,
    },
    /// The settings of a profile do not fit together or with the network.
    #[error("PXE profile of network '{network}': {reason}")]
    Profile {
        /// The network.
        network: NetworkName,
        /// What is wrong, naming the keys and values involved and what to change.
        reason: String,
    },
    /// The URL iPXE clients should be sent to cannot be formed.
    #[error("PXE profile of network '{network}': cannot form the iPXE script URL: {reason}")]
    ScriptUrl {
        /// The network.
        network: NetworkName,
        /// Why, and which setting to change.
        reason: String,
    },
    /// Two iPXE script rules select the same client.
    #[error("[http] rules {first} and {second} both select {key}; keep one")]
    DuplicateRule {
        /// The MAC or UUID selected twice.
        key: String,
        /// Position (1-based) of the first rule.
        first: usize,
        /// Position (1-based) of the second rule.
        second: usize,
    },
}

impl PxeError {
    /// A [`PxeError::Profile`] for `network`.
    pub(crate) fn profile(network: &NetworkName, reason: impl Into<String>) -> Self {
        Self::Profile {
            network: network.clone(),
            reason: reason.into(),
        }
    }
}
