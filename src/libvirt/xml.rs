//! libvirt network and hookData XML parsing.
