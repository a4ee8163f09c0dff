//! The agent: from sources (libvirt, the configuration) to the desired state, and the daemon
//! loop that keeps what runs in line with it.

pub mod backend;
pub mod client;
pub mod daemon;
pub mod dbus;
pub mod desired;
pub mod lease_view;
pub mod lock;
pub mod memory;
pub mod per_network;
pub mod status;
