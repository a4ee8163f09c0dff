//! The two ways virtmasq serves networks: below both the configuration (which may force one)
//! and the system module (which decides one).

use serde::{Deserialize, Serialize};

/// The two ways virtmasq serves networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Fragments in the system dnsmasq's conf-dir (with private instances for the networks it
    /// cannot serve).
    System,
    /// One private dnsmasq per network.
    Private,
}
