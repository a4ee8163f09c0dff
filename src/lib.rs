//! virtmasq: DHCP, DNS and PXE for libvirt virtual networks from dnsmasq.
//!
//! Data flows one way: sources (libvirt, the hook, the configuration) give the desired state,
//! a pure planner compares it with what is observed, and small backends apply the plan.

pub mod agent;
pub mod cli;
pub mod commands;
pub mod config;
pub mod dnsmasq;
pub mod error;
pub mod exit;
pub mod filter;
pub mod fsutil;
pub mod host;
pub mod http;
pub mod journal;
pub mod libvirt;
pub mod model;
pub mod netlink;
pub mod pxe;
pub mod setup;
pub mod system;
pub mod systemd;
pub mod timing;
