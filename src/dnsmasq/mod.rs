//! dnsmasq: rendering its configuration (pure), running private instances, and (in system mode)
//! working with the system's own dnsmasq.

pub mod fragment;
pub mod leases;
pub mod private;
pub mod process;
pub mod render;
pub mod validate;
