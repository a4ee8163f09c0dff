//! libvirt: network and hookData XML, virtmasq's metadata namespace, and networks read through
//! libvirt's client library, loaded on first use (`ffi`).

pub mod adopt;
pub mod define;
pub mod depth;
pub mod ffi;
pub mod lease_status;
pub mod metadata;
pub mod probe;
pub mod read;
pub mod source;
pub mod xml;
