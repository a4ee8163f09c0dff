//! What a network's PXE boot intent is made of: the profile from `[networks.<name>.pxe]` or
//! virtmasq's metadata, its validated values, and client architectures. Pure data; checking a
//! profile against a network and rendering its dnsmasq lines is [`crate::pxe`]'s job.

pub mod arch;
pub mod profile;
pub mod values;
