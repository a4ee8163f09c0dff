//! Reading networks from libvirt (its client library, loaded on first use: [`super::ffi`]).
//! These calls block: the daemon runs them on tokio's blocking pool. They must never be made
//! from the libvirt hook, which libvirtd waits on.

use thiserror::Error;

use super::ffi::Connection;

/// One network as libvirt reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibvirtNetwork {
    /// libvirt's name (not yet validated: a network virtmasq does not manage may have any name).
    pub name: String,
    /// Whether it is running.
    pub active: bool,
    /// Its live XML (`virsh net-dumpxml`).
    pub xml: String,
}

/// libvirt could not be read.
#[derive(Debug, Error)]
pub enum LibvirtError {
    /// No connection.
    #[error("cannot connect to libvirt at {uri}: {message}")]
    Connect {
        /// The URI.
        uri: String,
        /// libvirt's message.
        message: String,
    },
    /// A call on an open connection failed.
    #[error("libvirt at {uri}: {what}: {message}")]
    Call {
        /// The URI.
        uri: String,
        /// What was asked.
        what: String,
        /// libvirt's message.
        message: String,
    },
}

/// Every network libvirt knows at `uri`, active or not.
pub fn list_networks(uri: &str) -> Result<Vec<LibvirtNetwork>, LibvirtError> {
    let conn = Connection::open(uri).map_err(|message| LibvirtError::Connect {
        uri: uri.to_owned(),
        message,
    })?;
    let call = |what: &str, message: String| LibvirtError::Call {
        uri: uri.to_owned(),
        what: what.to_owned(),
        message,
    };
    let mut out = Vec::new();
    for net in conn.networks().map_err(|e| call("list networks", e))? {
        let name = net.name().map_err(|e| call("network name", e))?;
        let active = net
            .is_active()
            .map_err(|e| call(&format!("state of network '{name}'"), e))?;
        let xml = net
            .xml(0)
            .map_err(|e| call(&format!("XML of network '{name}'"), e))?;
        out.push(LibvirtNetwork { name, active, xml });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_test_driver() {
        let nets = list_networks("test:///default").unwrap();
        let default = nets.iter().find(|n| n.name == "default").unwrap();
        assert!(default.active);
        assert!(
            default.xml.contains("<bridge name='virbr0'"),
            "{}",
            default.xml
        );
    }

    #[test]
    fn bad_uri_is_a_clear_error() {
        let err = list_networks("test:///nonexistent/node.xml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("test:///nonexistent/node.xml"), "{err}");
    }
}
