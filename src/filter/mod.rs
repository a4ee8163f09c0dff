//! The PXE MAC filter: a dnsmasq dhcp-hostsdir with one file per MAC.
