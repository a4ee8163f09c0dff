//! The system's own dnsmasq: what it is (version, unit, effective configuration, who holds its
//! ports), whether virtmasq should use it (system mode) or run its own (private mode), and
//! applying fragments to it safely.

pub mod apply;
pub mod conf;
pub mod decide;
pub mod detect;
pub mod domains;
pub mod effective;
pub mod failpoint;
pub mod journal;
pub mod linger;
pub mod placement;
pub mod plan;
pub mod ports;
pub mod recover;
pub mod stage;
pub mod version;
