//! PXE boot profiles: per-network boot files by client architecture, iPXE chainloading without
//! loops, proxy DHCP next to a DHCP server virtmasq does not own, a TFTP root per bridge,
//! per-host overrides by MAC or machine UUID, and the rules that pick each iPXE client's script.
//!
//! A [`PxeProfile`] comes from the configuration (`[networks.<name>.pxe]`); [`dnsmasq_lines`]
//! checks it (settings, then the TFTP root on disk) and renders the lines that go into a
//! private instance's configuration or a system fragment. Nothing is written when a check
//! fails. [`script`] holds the rules the HTTP endpoint ([`crate::http`]) serves scripts by.

pub mod check;
pub mod error;
pub mod lines;
pub mod overlay;
pub mod script;

pub use crate::model::pxe::{arch, profile, values};

pub use arch::ClientArch;
pub use check::check_files;
pub use error::PxeError;
pub use lines::{system_side_effect, LinesFor, IPXE_TAG};

use crate::model::{IfName, Ipv4Net, NetworkName};
pub use profile::{BootFiles, BootTarget, HostKey, IpxeHandoff, PxeHost, PxeMode, PxeProfile};
pub use script::{ScriptAction, ScriptEndpoint, ScriptRule, ScriptRules};
pub use values::{BootFile, BootUrl, MachineUuid, PromptText, PxelinuxValue, ScriptUri};

/// The network a profile is rendered for.
#[derive(Debug, Clone, Copy)]
pub struct PxeScope<'a> {
    /// The libvirt network, named in errors.
    pub network: &'a NetworkName,
    /// Its bridge.
    pub bridge: &'a IfName,
    /// The bridge's IPv4 address and prefix that PXE is served on.
    pub subnet: &'a Ipv4Net,
    /// The iPXE script endpoint, for profiles that send iPXE clients to it.
    pub endpoint: ScriptEndpoint,
}

/// Checks `profile` against the network and renders its lines, touching no file.
pub fn render_lines(
    profile: &PxeProfile,
    scope: &PxeScope,
    mode: LinesFor,
) -> Result<Vec<String>, PxeError> {
    check::check_profile(profile, scope)?;
    lines::render(profile, scope, mode)
}

/// The dnsmasq lines of `profile` on the network in `scope`, for a private instance or a
/// system fragment, after checking the profile and every boot file in its TFTP root. In proxy
/// mode the lines include the network's `dhcp-range=<net>,proxy`: the network's own address
/// ranges must then not be rendered. Restarting dnsmasq is needed for any change (SIGHUP does
/// not re-read `dhcp-boot`, `pxe-*`, `tftp-*`).
pub fn dnsmasq_lines(
    profile: &PxeProfile,
    scope: &PxeScope,
    mode: LinesFor,
) -> Result<Vec<String>, PxeError> {
    let lines = render_lines(profile, scope, mode)?;
    check_files(profile, scope.network)?;
    Ok(lines)
}
