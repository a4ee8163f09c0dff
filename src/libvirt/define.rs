//! Changing one network through libvirt's client library ([`super::ffi`]), for `adopt` and `release`: read its
//! persistent definition, define a new one, read back what libvirt kept, and restart it when
//! it runs. These calls block (the command runs them on tokio's blocking pool) and must never
//! be made from the libvirt hook, which libvirtd waits on.

use thiserror::Error;

use super::ffi::{Connection, Net, XML_INACTIVE};

/// One network as `adopt` and `release` need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkState {
    /// Its persistent definition (`net-dumpxml --inactive`): what gets redefined.
    pub xml: String,
    /// Whether it runs (then it is restarted for the new definition to take effect).
    pub active: bool,
    /// Guest interfaces plugged into it: a restart would cut them off the bridge.
    pub connections: u32,
}

/// A libvirt call that failed; nothing in it is virtmasq's doing.
#[derive(Debug, Error)]
pub enum DefineError {
    /// No connection.
    #[error("cannot connect to libvirt at {uri}: {message}")]
    Connect {
        /// The URI.
        uri: String,
        /// libvirt's message.
        message: String,
    },
    /// libvirt knows no network by that name.
    #[error("libvirt at {uri} has no network named '{name}'")]
    NotFound {
        /// The URI.
        uri: String,
        /// The name asked for.
        name: String,
    },
    /// A transient network has no definition to change.
    #[error(
        "network '{0}' is transient (it has no persistent definition): define it with \
         `virsh net-define` first"
    )]
    Transient(String),
    /// Any other call.
    #[error("libvirt at {uri}: {what} of network '{name}': {message}")]
    Call {
        /// The URI.
        uri: String,
        /// The network.
        name: String,
        /// What was asked.
        what: &'static str,
        /// libvirt's message.
        message: String,
    },
}

/// A connection to libvirt, closed when dropped.
pub struct Libvirt {
    conn: Connection,
    uri: String,
}

impl Libvirt {
    /// Connects to `uri`.
    pub fn open(uri: &str) -> Result<Self, DefineError> {
        let conn = Connection::open(uri).map_err(|message| DefineError::Connect {
            uri: uri.to_owned(),
            message,
        })?;
        Ok(Self {
            conn,
            uri: uri.to_owned(),
        })
    }

    fn call(&self, name: &str, what: &'static str) -> impl Fn(String) -> DefineError {
        let (uri, name) = (self.uri.clone(), name.to_owned());
        move |message| DefineError::Call {
            uri: uri.clone(),
            name: name.clone(),
            what,
            message,
        }
    }

    fn lookup(&self, name: &str) -> Result<Net, DefineError> {
        self.conn.lookup(name).map_err(|_| DefineError::NotFound {
            uri: self.uri.clone(),
            name: name.to_owned(),
        })
    }

    /// The persistent definition and state of network `name`.
    pub fn network(&self, name: &str) -> Result<NetworkState, DefineError> {
        let net = self.lookup(name)?;
        if !net
            .is_persistent()
            .map_err(self.call(name, "persistence"))?
        {
            return Err(DefineError::Transient(name.to_owned()));
        }
        let xml = self.definition(&net, name)?;
        let active = net.is_active().map_err(self.call(name, "state"))?;
        let live = match active {
            true => net.xml(0).map_err(self.call(name, "live XML"))?,
            false => String::new(),
        };
        Ok(NetworkState {
            xml,
            active,
            connections: connections(&live),
        })
    }

    /// Defines `xml` (replacing the definition of the network of that name and UUID) and
    /// returns the definition as libvirt kept it.
    pub fn define(&self, name: &str, xml: &str) -> Result<String, DefineError> {
        let net = self.conn.define(xml).map_err(self.call(name, "define"))?;
        self.definition(&net, name)
    }

    /// The persistent definition. libvirt's test driver knows no `--inactive` flag (its
    /// networks have one definition only), so its plain XML stands in there.
    fn definition(&self, net: &Net, name: &str) -> Result<String, DefineError> {
        net.xml(XML_INACTIVE)
            .or_else(|e| match self.uri.starts_with("test:") {
                true => net.xml(0),
                false => Err(e),
            })
            .map_err(self.call(name, "definition"))
    }

    /// Stops network `name` (`virsh net-destroy`).
    pub fn stop(&self, name: &str) -> Result<(), DefineError> {
        let net = self.lookup(name)?;
        net.destroy().map_err(self.call(name, "net-destroy"))
    }

    /// Starts network `name` (`virsh net-start`) unless it runs.
    pub fn start(&self, name: &str) -> Result<(), DefineError> {
        let net = self.lookup(name)?;
        if net.is_active().map_err(self.call(name, "state"))? {
            return Ok(());
        }
        net.create().map_err(self.call(name, "net-start"))
    }
}

/// `connections='N'` on the live `<network>`: libvirt counts the ports plugged into it.
fn connections(live_xml: &str) -> u32 {
    super::depth::parse(live_xml)
        .ok()
        .and_then(|d| d.root_element().attribute("connections")?.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_connections_from_the_live_xml() {
        let hook = include_str!("../../tests/fixtures/libvirt/hook-isolated-port-created.xml");
        let network = roxmltree::Document::parse(hook).unwrap();
        let net = network.root_element().first_element_child().unwrap();
        let live = &hook[net.range()];
        assert_eq!(connections(live), 1);
        assert_eq!(connections("<network><name>a</name></network>"), 0);
        assert_eq!(connections(""), 0);
    }

    #[test]
    fn the_test_driver_answers_and_unknown_networks_are_named() {
        let lv = Libvirt::open("test:///default").unwrap();
        let state = lv.network("default").unwrap();
        assert!(
            state.active && state.xml.contains("<dhcp>"),
            "{}",
            state.xml
        );
        let err = lv.network("nope").unwrap_err().to_string();
        assert!(err.contains("no network named 'nope'"), "{err}");
        let kept = lv.define("default", &state.xml).unwrap();
        assert!(kept.contains("<name>default</name>"));
        lv.stop("default").unwrap();
        assert!(!lv.network("default").unwrap().active);
        lv.start("default").unwrap();
        lv.start("default").unwrap();
        assert!(lv.network("default").unwrap().active);
    }
}
