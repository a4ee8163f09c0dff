//! The `[http]` section: where the iPXE script endpoint listens and which script each client
//! gets.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::pxe::script::{ScriptAction, ScriptEndpoint, ScriptRule, ScriptRules};
use crate::pxe::PxeError;

/// The endpoint's port unless configured: unassigned by IANA, and not a port iPXE, dnsmasq or
/// libvirt use.
pub const DEFAULT_PORT: u16 = 8067;

/// Settings of the daemon's HTTP endpoint, embedded as `[http]` in the agent's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Whether the daemon serves iPXE scripts. Off by default; profiles whose `ipxe` is
    /// `"endpoint"` need it on.
    pub enabled: bool,
    /// The address it listens on. The default, `0.0.0.0`, answers on every bridge (clients
    /// reach it on their bridge's address) and on every other interface too: firewall the port
    /// or name one bridge address where that matters. A loopback address serves no client.
    pub address: IpAddr,
    /// The TCP port.
    pub port: u16,
    /// What a client without a rule is told: `{ exit = true }` (the default: leave iPXE and
    /// boot from the next device), `{ chain = "…" }` or `{ sanboot = "…" }`.
    pub default: ScriptAction,
    /// Rules by client: `[[http.rules]]` with `mac` or `uuid`, and `chain`, `sanboot` or
    /// `exit`. A MAC rule wins over a UUID rule.
    pub rules: Vec<ScriptRule>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: DEFAULT_PORT,
            default: ScriptAction::Exit,
            rules: Vec::new(),
        }
    }
}

impl HttpConfig {
    /// The socket address to bind.
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }

    /// The rules, indexed; fails if two rules select the same client.
    pub fn script_rules(&self) -> Result<ScriptRules, PxeError> {
        ScriptRules::new(&self.rules, self.default.clone())
    }

    /// What rendering a PXE profile needs to know of the endpoint.
    pub fn endpoint(&self) -> ScriptEndpoint {
        ScriptEndpoint {
            enabled: self.enabled,
            address: self.address,
            port: self.port,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_toml() {
        let c: HttpConfig = toml::from_str("").unwrap();
        assert_eq!(c, HttpConfig::default());
        assert_eq!(c.listen_addr().to_string(), "0.0.0.0:8067");
        let c: HttpConfig = toml::from_str(
            r#"
            enabled = true
            address = "10.0.0.1"
            port = 8080
            default = { chain = "http://10.0.0.1/menu.ipxe" }
            [[rules]]
            mac = "52:54:00:00:00:01"
            exit = true
            "#,
        )
        .unwrap();
        assert_eq!(c.rules.len(), 1);
        assert!(matches!(c.default, ScriptAction::Chain(_)));
        assert!(c.script_rules().is_ok());
        let back: HttpConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert!(toml::from_str::<HttpConfig>("adress = \"0.0.0.0\"").is_err());
    }

    #[test]
    fn script_urls_only_where_clients_can_reach_them() {
        let bridge: Ipv4Addr = "10.0.0.1".parse().unwrap();
        let mut c = HttpConfig {
            enabled: true,
            ..HttpConfig::default()
        };
        assert_eq!(
            c.endpoint().script_url(bridge).unwrap(),
            "http://10.0.0.1:8067/boot.ipxe"
        );
        c.address = "10.0.0.1".parse().unwrap();
        assert!(c.endpoint().script_url(bridge).is_ok());
        c.address = "::".parse().unwrap();
        assert!(c.endpoint().script_url(bridge).is_ok());
        c.address = "127.0.0.1".parse().unwrap();
        let err = c.endpoint().script_url(bridge).unwrap_err();
        assert!(
            err.contains("127.0.0.1") && err.contains("[http] address"),
            "{err}"
        );
        c.enabled = false;
        assert!(c
            .endpoint()
            .script_url(bridge)
            .unwrap_err()
            .contains("enabled = true"));
    }
}
