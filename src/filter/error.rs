//! Errors of the PXE MAC filter. Each message names the object (file, MAC, line) and says what
//! a person can do; the underlying cause is kept as `#[source]` and not repeated in the text.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::model::MacAddr;

/// Everything that can go wrong while validating a filter request or syncing the hostsdir.
#[derive(Debug, Error)]
pub enum FilterError {
    /// A request named a MAC twice.
    #[error("{mac} appears more than once in the request ({where_})")]
    Duplicate {
        /// The repeated address.
        mac: MacAddr,
        /// Where it appears: entry positions or file lines.
        where_: String,
    },
    /// A request both allows and denies a MAC.
    #[error("{mac} is both allowed and denied in the request ({where_})")]
    Conflict {
        /// The contested address.
        mac: MacAddr,
        /// Where it appears on each side.
        where_: String,
    },
    /// A desired-list file has an entry that is not a MAC address.
    #[error("{origin}, {at}: {reason}")]
    BadEntry {
        /// The file (or "standard input") it came from.
        origin: String,
        /// Where in it: "line 3", or "allow entry 2" when the line is unknown.
        at: String,
        /// What is wrong with the entry, naming it.
        reason: String,
    },
    /// A desired-list file in JSON form could not be parsed.
    #[error("{origin}: not a valid filter list (expected {{\"allow\": [...], \"deny\": [...]}})")]
    BadJson {
        /// The file it came from.
        origin: String,
        /// The parser's complaint, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// Another virtmasq process kept the filter lock for too long.
    #[error(
        "another virtmasq process holds the filter lock {} (waited {:.1} s); \
         try again, or see which process holds it with `fuser {}`",
        path.display(), waited.as_secs_f64(), path.display()
    )]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
    /// The persisted policy exists but cannot be understood.
    #[error("the filter state {} is damaged; fix or remove it (the hostsdir is rebuilt from it)", path.display())]
    BadState {
        /// The state file.
        path: PathBuf,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// A file system operation failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What we were doing ("write", "rename", "list", ...).
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The system error.
        #[source]
        source: io::Error,
    },
}

impl FilterError {
    /// Whether the request itself is at fault (its lists), not the host.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Self::Duplicate { .. }
                | Self::Conflict { .. }
                | Self::BadEntry { .. }
                | Self::BadJson { .. }
        )
    }

    /// Wraps an I/O error with the action and the path it concerned.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}
