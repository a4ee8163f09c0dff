//! The filter's keys under an etcd prefix, read into policy changes (pure).
//!
//! Fleet-wide, for every host following the prefix:
//!
//! * `<prefix>/macs/<mac>` = `allow` | `deny`: `<mac>` lower case with colons, as virtmasq
//!   prints MACs, so that one MAC has exactly one key; a deleted key forgets the MAC.
//! * `<prefix>/unknown` = `allow` | `deny`: the unknown-MAC policy; deleted, the
//!   configuration's `[filter] unknown` again.
//!
//! Per host, overriding the fleet-wide keys on the host whose `[filter.source] host` is
//! `<host>` (by default its host name), and ignored (quietly: they are not ours) elsewhere:
//!
//! * `<prefix>/hosts/<host>/macs/<mac>` and `<prefix>/hosts/<host>/unknown`, same values.
//!
//! Precedence: a host's own key beats the fleet-wide one; deleting it returns the MAC (or the
//! unknown policy) to the fleet-wide key, then to the unknown policy (or `[filter] unknown`).
//!
//! iPXE script rules for the daemon's endpoint (`[http]`), fleet-wide or under
//! `hosts/<host>/` likewise, each value `chain <uri>`, `sanboot <uri>` or `exit`:
//!
//! * `<prefix>/ipxe/macs/<mac>`, `<prefix>/ipxe/uuids/<uuid>` (lower case, dashes): one
//!   client's rule; `<prefix>/ipxe/default`: the default for clients without one. They lie
//!   over the configuration's `[http]` rules ([`crate::pxe::overlay`]).
//!
//! Per network there is nothing: the filter's policy is one per host (one hostsdir, read by
//! every dnsmasq it covers; `[filter] networks` chooses which), so `<prefix>/networks/...` and
//! `<prefix>/hosts/<host>/networks/...` are refused by name, like every other key not of the
//! layout (another form, a value other than the two words): logged with its key and
//! ignored, never fatal: one bad key must not stop a fleet's policy.

use crate::filter::config::UnknownPolicy;
use crate::filter::entry::Verdict;
use crate::model::MacAddr;
use crate::pxe::script::{ClientKey, ScriptAction};
use crate::pxe::MachineUuid;

/// One key's meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A MAC set to a verdict, or (None) forgotten.
    Mac(MacAddr, Option<Verdict>),
    /// The unknown-MAC override set, or (None) removed.
    Unknown(Option<UnknownPolicy>),
}

/// Which iPXE rule a key sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpxeKey {
    /// One client's rule.
    Client(ClientKey),
    /// The default.
    Default,
}

/// One key's meaning: a filter change or an iPXE rule set or (None) removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// The PXE filter's policy.
    Filter(Change),
    /// The iPXE endpoint's rules.
    Ipxe(IpxeKey, Option<ScriptAction>),
}

/// Whose a key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every host's (`<prefix>/macs/...`, `<prefix>/unknown`).
    Fleet,
    /// This host's override (`<prefix>/hosts/<this host>/...`).
    Host,
}

/// A key that is not part of the layout, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    /// The key, lossily decoded.
    pub key: String,
    /// Why it is ignored.
    pub reason: String,
}

/// The key of `mac` under `prefix`, fleet-wide or (Some) for one host.
pub fn mac_key(prefix: &str, host: Option<&str>, mac: &MacAddr) -> String {
    format!("{}macs/{mac}", base(prefix, host))
}

/// The key of the unknown-MAC policy under `prefix`, fleet-wide or (Some) for one host.
pub fn unknown_key(prefix: &str, host: Option<&str>) -> String {
    format!("{}unknown", base(prefix, host))
}

fn base(prefix: &str, host: Option<&str>) -> String {
    match host {
        Some(h) => format!("{prefix}/hosts/{h}/"),
        None => format!("{prefix}/"),
    }
}

/// Checks a host name as it appears in keys: one path segment of printable characters.
pub fn check_host(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(format!("host {name:?} is not a host name"));
    }
    if name
        .chars()
        .any(|c| c == '/' || c.is_control() || c.is_whitespace())
    {
        return Err(format!(
            "host {name:?} may not hold '/', spaces or control characters"
        ));
    }
    Ok(())
}

const NO_NETWORKS: &str = "per-network policy is not supported: the filter's policy is one per \
    host (one hostsdir for every network it covers; [filter] networks chooses them); use \
    hosts/<host>/... for one host";

/// What a put (`value` Some) or a delete (None) of `key` means on host `host`: an entry and
/// whose it is, or nothing (Ok(None)) for another host's key.
pub fn read(
    prefix: &str,
    host: &str,
    key: &[u8],
    value: Option<&[u8]>,
) -> Result<Option<(Scope, Entry)>, Ignored> {
    let text = String::from_utf8_lossy(key);
    let ignored = |reason: String| Ignored {
        key: text.to_string(),
        reason,
    };
    let rest = text
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(|| ignored("not under the prefix".into()))?;
    let (scope, rest) = match rest.strip_prefix("hosts/") {
        Some(r) => match r.split_once('/') {
            Some((h, _)) if h != host => return Ok(None),
            Some((_, r)) => (Scope::Host, r),
            None => {
                return Err(ignored(
                    "not hosts/<host>/macs/<mac> or hosts/<host>/unknown".into(),
                ))
            }
        },
        None => (Scope::Fleet, rest),
    };
    if rest == "networks" || rest.starts_with("networks/") {
        return Err(ignored(NO_NETWORKS.into()));
    }
    if let Some(r) = rest.strip_prefix("ipxe/") {
        let (key, action) = read_ipxe(r, value).map_err(ignored)?;
        return Ok(Some((scope, Entry::Ipxe(key, action))));
    }
    let word = match value {
        None => None,
        Some(b"allow") => Some(Verdict::Allow),
        Some(b"deny") => Some(Verdict::Deny),
        Some(other) => {
            let v = String::from_utf8_lossy(other);
            return Err(ignored(format!(
                "value {v:?} is neither \"allow\" nor \"deny\""
            )));
        }
    };
    if rest == "unknown" {
        let policy = word.map(|w| match w {
            Verdict::Allow => UnknownPolicy::Allow,
            Verdict::Deny => UnknownPolicy::Deny,
        });
        return Ok(Some((scope, Entry::Filter(Change::Unknown(policy)))));
    }
    let Some(mac_text) = rest.strip_prefix("macs/") else {
        return Err(ignored(match scope {
            Scope::Fleet => "not macs/<mac>, unknown or hosts/<host>/...".into(),
            Scope::Host => "not hosts/<host>/macs/<mac> or hosts/<host>/unknown".into(),
        }));
    };
    let mac: MacAddr = mac_text
        .parse()
        .map_err(|e| ignored(format!("not a MAC: {e}")))?;
    if mac.to_string() != mac_text {
        return Err(ignored(format!("write the MAC as {mac}")));
    }
    Ok(Some((scope, Entry::Filter(Change::Mac(mac, word)))))
}

/// An iPXE key (after `ipxe/`) and its value.
fn read_ipxe(rest: &str, value: Option<&[u8]>) -> Result<(IpxeKey, Option<ScriptAction>), String> {
    let key = if rest == "default" {
        IpxeKey::Default
    } else if let Some(t) = rest.strip_prefix("macs/") {
        let mac: MacAddr = t.parse().map_err(|e| format!("not a MAC: {e}"))?;
        if mac.to_string() != t {
            return Err(format!("write the MAC as {mac}"));
        }
        IpxeKey::Client(ClientKey::Mac(mac))
    } else if let Some(t) = rest.strip_prefix("uuids/") {
        let uuid: MachineUuid = t.parse().map_err(|e| format!("not a UUID: {e}"))?;
        if uuid.to_string() != t {
            return Err(format!("write the UUID as {uuid}"));
        }
        IpxeKey::Client(ClientKey::Uuid(uuid))
    } else {
        return Err("not ipxe/macs/<mac>, ipxe/uuids/<uuid> or ipxe/default".into());
    };
    let action = match value {
        None => None,
        Some(v) => {
            let text = std::str::from_utf8(v).map_err(|_| "the value is not UTF-8".to_owned())?;
            Some(text.parse::<ScriptAction>()?)
        }
    };
    Ok((key, action))
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "/v/f";

    type Want = Result<Option<(Scope, Entry)>, &'static str>;

    fn f(scope: Scope, c: Change) -> Option<(Scope, Entry)> {
        Some((scope, Entry::Filter(c)))
    }

    #[test]
    fn keys_and_values() {
        let m: MacAddr = "aa:00:00:00:00:01".parse().unwrap();
        let (fleet, host) = (Scope::Fleet, Scope::Host);
        let cases: [(&str, Option<&str>, Want); 17] = [
            (
                "/v/f/macs/aa:00:00:00:00:01",
                Some("allow"),
                Ok(f(fleet, Change::Mac(m, Some(Verdict::Allow)))),
            ),
            (
                "/v/f/macs/aa:00:00:00:00:01",
                Some("deny"),
                Ok(f(fleet, Change::Mac(m, Some(Verdict::Deny)))),
            ),
            (
                "/v/f/macs/aa:00:00:00:00:01",
                None,
                Ok(f(fleet, Change::Mac(m, None))),
            ),
            (
                "/v/f/unknown",
                Some("deny"),
                Ok(f(fleet, Change::Unknown(Some(UnknownPolicy::Deny)))),
            ),
            ("/v/f/unknown", None, Ok(f(fleet, Change::Unknown(None)))),
            (
                "/v/f/hosts/me/macs/aa:00:00:00:00:01",
                Some("deny"),
                Ok(f(host, Change::Mac(m, Some(Verdict::Deny)))),
            ),
            (
                "/v/f/hosts/me/unknown",
                None,
                Ok(f(host, Change::Unknown(None))),
            ),
            (
                "/v/f/hosts/other/macs/aa:00:00:00:00:01",
                Some("deny"),
                Ok(None),
            ),
            ("/v/f/hosts/other/anything", Some("x"), Ok(None)),
            (
                "/v/f/hosts/me/junk",
                Some("allow"),
                Err("not hosts/<host>/macs/<mac>"),
            ),
            (
                "/v/f/hosts/me",
                Some("allow"),
                Err("not hosts/<host>/macs/<mac>"),
            ),
            (
                "/v/f/networks/default/macs/aa:00:00:00:00:01",
                Some("deny"),
                Err("per-network policy is not supported"),
            ),
            (
                "/v/f/hosts/me/networks/default/unknown",
                Some("deny"),
                Err("per-network policy is not supported"),
            ),
            (
                "/v/f/macs/AA-00-00-00-00-01",
                Some("allow"),
                Err("write the MAC as aa:00:00:00:00:01"),
            ),
            ("/v/f/macs/zz", Some("allow"), Err("not a MAC")),
            (
                "/v/f/macs/aa:00:00:00:00:01",
                Some("yes"),
                Err("\"yes\" is neither"),
            ),
            ("/v/fx/unknown", Some("deny"), Err("not under the prefix")),
        ];
        for (key, value, want) in cases {
            let got = read(P, "me", key.as_bytes(), value.map(str::as_bytes));
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{key}"),
                (Err(g), Err(w)) => {
                    assert!(g.reason.contains(w), "{key}: {}", g.reason);
                    assert_eq!(g.key, key);
                }
                (g, w) => panic!("{key}: got {g:?}, want {w:?}"),
            }
        }
        assert_eq!(
            read(P, "me", b"/v/f/other", Some(b"allow"))
                .unwrap_err()
                .reason,
            "not macs/<mac>, unknown or hosts/<host>/..."
        );
    }

    #[test]
    fn keys_written_read_back() {
        let m: MacAddr = "aa:00:00:00:00:01".parse().unwrap();
        for host in [None, Some("me")] {
            let scope = if host.is_some() {
                Scope::Host
            } else {
                Scope::Fleet
            };
            let k = mac_key(P, host, &m);
            let got = read(P, "me", k.as_bytes(), None).unwrap();
            assert_eq!(got, f(scope, Change::Mac(m, None)), "{k}");
            let k = unknown_key(P, host);
            let got = read(P, "me", k.as_bytes(), None).unwrap();
            assert_eq!(got, f(scope, Change::Unknown(None)), "{k}");
        }
        assert_eq!(
            mac_key(P, Some("h1"), &m),
            "/v/f/hosts/h1/macs/aa:00:00:00:00:01"
        );
    }

    type IpxeWant = Result<(Scope, IpxeKey, Option<ScriptAction>), &'static str>;

    #[test]
    fn ipxe_keys() {
        let m: MacAddr = "aa:00:00:00:00:01".parse().unwrap();
        let chain = ScriptAction::Chain("http://10.0.0.1/a.ipxe".parse().unwrap());
        let u = "4c4c4544-0000-1000-8000-000000000001";
        let uuid: MachineUuid = u.parse().unwrap();
        let cases: [(String, Option<&str>, IpxeWant); 7] = [
            (
                format!("{P}/ipxe/macs/{m}"),
                Some("chain http://10.0.0.1/a.ipxe"),
                Ok((
                    Scope::Fleet,
                    IpxeKey::Client(ClientKey::Mac(m)),
                    Some(chain.clone()),
                )),
            ),
            (
                format!("{P}/hosts/me/ipxe/uuids/{u}"),
                Some("exit"),
                Ok((
                    Scope::Host,
                    IpxeKey::Client(ClientKey::Uuid(uuid)),
                    Some(ScriptAction::Exit),
                )),
            ),
            (
                format!("{P}/ipxe/default"),
                None,
                Ok((Scope::Fleet, IpxeKey::Default, None)),
            ),
            (
                format!("{P}/ipxe/default"),
                Some("boot"),
                Err("is not \"chain <uri>\""),
            ),
            (
                format!("{P}/ipxe/macs/AA-00-00-00-00-01"),
                None,
                Err("write the MAC as"),
            ),
            (
                format!("{P}/ipxe/uuids/{}", u.to_uppercase()),
                None,
                Err("write the UUID as"),
            ),
            (format!("{P}/ipxe/menu"), None, Err("not ipxe/macs/<mac>")),
        ];
        for (key, value, want) in cases {
            let got = read(P, "me", key.as_bytes(), value.map(str::as_bytes));
            match (got, want) {
                (Ok(Some((s, Entry::Ipxe(k, a)))), Ok((ws, wk, wa))) => {
                    assert_eq!((s, k, a), (ws, wk, wa), "{key}")
                }
                (Err(g), Err(w)) => assert!(g.reason.contains(w), "{key}: {}", g.reason),
                (g, w) => panic!("{key}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn host_names() {
        for ok in ["agent1", "node-7.example.org", "ÄBC"] {
            assert_eq!(check_host(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "a\nb"] {
            assert!(check_host(bad).is_err(), "{bad:?}");
        }
    }
}
