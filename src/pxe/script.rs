//! The iPXE script rules: which script a client gets from virtmasq's HTTP endpoint, chosen by
//! its MAC, then its machine UUID, then the configured default (like the `boot2.php` of the
//! PXE seed). Pure: the endpoint in [`crate::http`] parses requests and serves this text.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::values::{MachineUuid, ScriptUri};
use super::PxeError;
use crate::model::MacAddr;

/// The path iPXE clients are sent to, on virtmasq's endpoint.
pub const SCRIPT_PATH: &str = "/boot.ipxe";

/// Where the iPXE script endpoint listens, as far as rendering a profile needs to know it: the
/// HTTP server's settings ([`crate::http::HttpConfig::endpoint`]) handed down, so that this
/// module never reaches up into the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptEndpoint {
    /// Whether the daemon serves scripts at all.
    pub enabled: bool,
    /// The address it listens on.
    pub address: IpAddr,
    /// Its TCP port.
    pub port: u16,
}

impl ScriptEndpoint {
    /// The URL clients on a bridge whose address is `bridge_addr` reach the endpoint at, or why
    /// there is none (the message names the setting to change).
    pub fn script_url(&self, bridge_addr: Ipv4Addr) -> Result<String, String> {
        if !self.enabled {
            return Err(
                "the HTTP endpoint is off; set [http] enabled = true, or give the \
                        profile's ipxe a URL"
                    .into(),
            );
        }
        let reachable =
            self.address.is_unspecified() || self.address.to_canonical() == IpAddr::V4(bridge_addr);
        if !reachable {
            return Err(format!(
                "the HTTP endpoint listens on {}, which clients on this bridge ({bridge_addr}) \
                 cannot reach; set [http] address to 0.0.0.0 or {bridge_addr}",
                self.address
            ));
        }
        Ok(format!("http://{bridge_addr}:{}{SCRIPT_PATH}", self.port))
    }
}

/// What a client's script tells iPXE to do. Written as a table with exactly one key:
/// `{ chain = "http://…" }`, `{ sanboot = "iscsi:…" }` or `{ exit = true }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawAction", into = "RawAction")]
pub enum ScriptAction {
    /// Load and run this image or script (`chain <uri>`): pxelinux, a kernel, another script.
    Chain(ScriptUri),
    /// Boot from this SAN disk (`sanboot <uri>`, e.g. iSCSI).
    Sanboot(ScriptUri),
    /// Leave iPXE, so the firmware goes on with its next boot device (usually the disk).
    #[default]
    Exit,
}

#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chain: Option<ScriptUri>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sanboot: Option<ScriptUri>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exit: Option<bool>,
}

impl RawAction {
    fn action(self) -> Result<ScriptAction, String> {
        match (self.chain, self.sanboot, self.exit) {
            (Some(uri), None, None) => Ok(ScriptAction::Chain(uri)),
            (None, Some(uri), None) => Ok(ScriptAction::Sanboot(uri)),
            (None, None, Some(true)) => Ok(ScriptAction::Exit),
            (None, None, Some(false)) => Err("exit = false means nothing; use exit = true".into()),
            _ => Err("an iPXE script action needs exactly one of chain, sanboot or exit".into()),
        }
    }
}

impl TryFrom<RawAction> for ScriptAction {
    type Error = String;
    fn try_from(r: RawAction) -> Result<Self, Self::Error> {
        r.action()
    }
}

impl From<ScriptAction> for RawAction {
    fn from(a: ScriptAction) -> Self {
        let mut r = RawAction::default();
        match a {
            ScriptAction::Chain(u) => r.chain = Some(u),
            ScriptAction::Sanboot(u) => r.sanboot = Some(u),
            ScriptAction::Exit => r.exit = Some(true),
        }
        r
    }
}

impl fmt::Display for ScriptAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScriptAction::Chain(u) => write!(f, "chain {u}"),
            ScriptAction::Sanboot(u) => write!(f, "sanboot {u}"),
            ScriptAction::Exit => f.write_str("exit"),
        }
    }
}

/// Which client a rule is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// Its MAC, as iPXE's `${mac}`.
    Mac(MacAddr),
    /// Its machine UUID, as iPXE's `${uuid}`.
    Uuid(MachineUuid),
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientKey::Mac(m) => write!(f, "mac {m}"),
            ClientKey::Uuid(u) => write!(f, "uuid {u}"),
        }
    }
}

/// One rule of `[[http.rules]]`: a selector (`mac` or `uuid`) and an action (`chain`,
/// `sanboot` or `exit`), e.g. `{ mac = "52:54:00:00:00:01", chain = "http://…/pxelinux.0" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawRule", into = "RawRule")]
pub struct ScriptRule {
    /// The client it selects.
    pub key: ClientKey,
    /// What that client is told to do.
    pub action: ScriptAction,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mac: Option<MacAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uuid: Option<MachineUuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chain: Option<ScriptUri>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sanboot: Option<ScriptUri>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exit: Option<bool>,
}

impl TryFrom<RawRule> for ScriptRule {
    type Error = String;
    fn try_from(r: RawRule) -> Result<Self, Self::Error> {
        let key = match (r.mac, r.uuid) {
            (Some(m), None) => ClientKey::Mac(m),
            (None, Some(u)) => ClientKey::Uuid(u),
            _ => return Err("an iPXE script rule needs exactly one of mac or uuid".into()),
        };
        let action = RawAction {
            chain: r.chain,
            sanboot: r.sanboot,
            exit: r.exit,
        }
        .action()
        .map_err(|e| format!("rule for {key}: {e}"))?;
        Ok(Self { key, action })
    }
}

impl From<ScriptRule> for RawRule {
    fn from(rule: ScriptRule) -> Self {
        let a = RawAction::from(rule.action);
        let (mac, uuid) = match rule.key {
            ClientKey::Mac(m) => (Some(m), None),
            ClientKey::Uuid(u) => (None, Some(u)),
        };
        Self {
            mac,
            uuid,
            chain: a.chain,
            sanboot: a.sanboot,
            exit: a.exit,
        }
    }
}

/// Why a client got its script, for the log and the script's comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matched {
    /// A rule for its MAC.
    Mac,
    /// A rule for its UUID (no rule for its MAC).
    Uuid,
    /// No rule: the default.
    Default,
}

impl Matched {
    /// One word for logs: `mac`, `uuid` or `default`.
    pub fn as_str(self) -> &'static str {
        match self {
            Matched::Mac => "mac",
            Matched::Uuid => "uuid",
            Matched::Default => "default",
        }
    }
}

impl fmt::Display for Matched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Matched::Mac => "mac rule",
            Matched::Uuid => "uuid rule",
            Matched::Default => "default",
        })
    }
}

/// The rules, indexed for lookup. A MAC rule wins over a UUID rule: a MAC names one NIC, while
/// some vendors ship machines whose UUIDs repeat (seed 03 wonders whether Dell's are per model).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScriptRules {
    by_mac: HashMap<MacAddr, ScriptAction>,
    by_uuid: HashMap<MachineUuid, ScriptAction>,
    default: ScriptAction,
}

impl ScriptRules {
    /// Indexes `rules`; two rules selecting the same client are an error.
    pub fn new(rules: &[ScriptRule], default: ScriptAction) -> Result<Self, PxeError> {
        let mut seen: HashMap<ClientKey, usize> = HashMap::new();
        let mut out = Self {
            default,
            ..Self::default()
        };
        for (i, rule) in rules.iter().enumerate() {
            if let Some(first) = seen.insert(rule.key, i + 1) {
                return Err(PxeError::DuplicateRule {
                    key: rule.key.to_string(),
                    first,
                    second: i + 1,
                });
            }
            match rule.key {
                ClientKey::Mac(m) => out.by_mac.insert(m, rule.action.clone()),
                ClientKey::Uuid(u) => out.by_uuid.insert(u, rule.action.clone()),
            };
        }
        Ok(out)
    }

    /// Sets (or replaces) the rule for one client.
    pub fn set(&mut self, key: ClientKey, action: ScriptAction) {
        match key {
            ClientKey::Mac(m) => drop(self.by_mac.insert(m, action)),
            ClientKey::Uuid(u) => drop(self.by_uuid.insert(u, action)),
        }
    }

    /// Sets the default.
    pub fn set_default(&mut self, action: ScriptAction) {
        self.default = action;
    }

    /// The action for a client, and which rule chose it.
    pub fn choose(&self, mac: &MacAddr, uuid: Option<&MachineUuid>) -> (&ScriptAction, Matched) {
        if let Some(a) = self.by_mac.get(mac) {
            return (a, Matched::Mac);
        }
        if let Some(a) = uuid.and_then(|u| self.by_uuid.get(u)) {
            return (a, Matched::Uuid);
        }
        (&self.default, Matched::Default)
    }
}

/// The script for an identified client. The first line must be `#!ipxe` or iPXE refuses it.
pub fn client_script(mac: &MacAddr, matched: Matched, action: &ScriptAction) -> String {
    format!("#!ipxe\n# virtmasq: {matched} for {mac}\n{action}\n")
}

/// The script for a client that has not said who it is: it asks again with iPXE's settings in
/// the query. The URL is absolute because the iPXE of Debian 12's ROMs (1.0.0+git-20190125)
/// fails "Operation not supported" on a relative URL with a query. `local` is the address the
/// client reached us on, so the answer never depends on a client-supplied Host header.
pub fn identify_script(local: SocketAddr) -> String {
    let local = SocketAddr::new(local.ip().to_canonical(), local.port());
    format!(
        "#!ipxe\n# virtmasq: tell the server who this client is\n\
         chain http://{local}{SCRIPT_PATH}?mac=${{mac}}&uuid=${{uuid}}&buildarch=${{buildarch}}&platform=${{platform}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(s: &str) -> MacAddr {
        s.parse().unwrap()
    }

    fn uuid(s: &str) -> MachineUuid {
        s.parse().unwrap()
    }

    fn rules() -> ScriptRules {
        let text = r#"
            [[rules]]
            mac = "52:54:00:00:00:01"
            chain = "http://10.0.0.1/pxelinux.0"
            [[rules]]
            uuid = "11223344-5566-7788-99aa-bbccddeeff00"
            sanboot = "iscsi:10.0.0.5::::iqn.2024-01.example:disk1"
            [[rules]]
            mac = "52:54:00:00:00:02"
            exit = true
        "#;
        #[derive(Deserialize)]
        struct File {
            rules: Vec<ScriptRule>,
        }
        let file: File = toml::from_str(text).unwrap();
        ScriptRules::new(&file.rules, ScriptAction::Exit).unwrap()
    }

    #[test]
    fn mac_then_uuid_then_default() {
        let r = rules();
        let u = uuid("11223344-5566-7788-99aa-bbccddeeff00");
        let cases = [
            (
                "52:54:00:00:00:01",
                None,
                Matched::Mac,
                "chain http://10.0.0.1/pxelinux.0",
            ),
            (
                "52:54:00:00:00:01",
                Some(u),
                Matched::Mac,
                "chain http://10.0.0.1/pxelinux.0",
            ),
            (
                "52:54:00:00:00:09",
                Some(u),
                Matched::Uuid,
                "sanboot iscsi:",
            ),
            ("52:54:00:00:00:02", Some(u), Matched::Mac, "exit"),
            ("52:54:00:00:00:09", None, Matched::Default, "exit"),
        ];
        for (m, u, want, text) in cases {
            let (action, matched) = r.choose(&mac(m), u.as_ref());
            assert_eq!(matched, want, "{m}");
            assert!(action.to_string().starts_with(text), "{m}: {action}");
        }
    }

    #[test]
    fn scripts_start_with_the_magic_line() {
        let r = rules();
        let (a, m) = r.choose(&mac("52:54:00:00:00:01"), None);
        let s = client_script(&mac("52:54:00:00:00:01"), m, a);
        assert_eq!(
            s,
            "#!ipxe\n# virtmasq: mac rule for 52:54:00:00:00:01\nchain http://10.0.0.1/pxelinux.0\n"
        );
        let id = identify_script("[::ffff:10.0.0.1]:8067".parse().unwrap());
        assert!(id.starts_with("#!ipxe\n"), "{id}");
        assert!(
            id.contains("chain http://10.0.0.1:8067/boot.ipxe?mac=${mac}&uuid=${uuid}&"),
            "{id}"
        );
    }

    #[test]
    fn duplicate_and_malformed_rules_are_refused() {
        let dup = [
            ScriptRule {
                key: ClientKey::Mac(mac("52:54:00:00:00:01")),
                action: ScriptAction::Exit,
            },
            ScriptRule {
                key: ClientKey::Mac(mac("52:54:00:00:00:01")),
                action: ScriptAction::Exit,
            },
        ];
        let err = ScriptRules::new(&dup, ScriptAction::Exit)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("rules 1 and 2") && err.contains("52:54:00:00:00:01"),
            "{err}"
        );
        for (text, needle) in [
            ("mac = \"52:54:00:00:00:01\"", "exactly one of chain"),
            (
                "mac = \"52:54:00:00:00:01\"\nexit = true\nchain = \"http://h/x\"",
                "exactly one",
            ),
            ("exit = true", "exactly one of mac or uuid"),
            (
                "mac = \"52:54:00:00:00:01\"\nchain = \"http://h/x\\nexit\"",
                "iPXE script URI",
            ),
            ("mac = \"52:54:00:00:00:01\"\nexit = false", "exit = false"),
            ("mac = \"zz\"\nexit = true", "zz"),
        ] {
            let err = toml::from_str::<ScriptRule>(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
