//! The filter's keys under an etcd prefix, read into policy changes (pure).
//!
//! * `<prefix>/macs/<mac>` = `allow` | `deny`: `<mac>` lower case with colons, as virtmasq
//!   prints MACs, so that one MAC has exactly one key; a deleted key forgets the MAC.
//! * `<prefix>/unknown` = `allow` | `deny`: the unknown-MAC policy; deleted, the
//!   configuration's `[filter] unknown` again.
//!
//! Anything else under the prefix (a key of another form, a value other than the two words)
//! is ignored and named in a warning: one bad key must not stop a fleet's policy.

use std::collections::BTreeMap;

use crate::filter::config::UnknownPolicy;
use crate::filter::entry::Verdict;
use crate::filter::policy::DesiredLists;
use crate::model::MacAddr;

/// One key's meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A MAC set to a verdict, or (None) forgotten.
    Mac(MacAddr, Option<Verdict>),
    /// The unknown-MAC override set, or (None) removed.
    Unknown(Option<UnknownPolicy>),
}

/// A key that is not part of the layout, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    /// The key, lossily decoded.
    pub key: String,
    /// Why it is ignored.
    pub reason: String,
}

/// The key of `mac` under `prefix`.
pub fn mac_key(prefix: &str, mac: &MacAddr) -> String {
    format!("{prefix}/macs/{mac}")
}

/// The key of the unknown-MAC policy under `prefix`.
pub fn unknown_key(prefix: &str) -> String {
    format!("{prefix}/unknown")
}

/// What a put (`value` Some) or a delete (None) of `key` means.
pub fn read(prefix: &str, key: &[u8], value: Option<&[u8]>) -> Result<Change, Ignored> {
    let text = String::from_utf8_lossy(key);
    let ignored = |reason: String| Ignored {
        key: text.to_string(),
        reason,
    };
    let rest = text
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(|| ignored("not under the prefix".into()))?;
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
        return Ok(Change::Unknown(word.map(|w| match w {
            Verdict::Allow => UnknownPolicy::Allow,
            Verdict::Deny => UnknownPolicy::Deny,
        })));
    }
    let Some(mac_text) = rest.strip_prefix("macs/") else {
        return Err(ignored("not macs/<mac> or unknown".into()));
    };
    let mac: MacAddr = mac_text
        .parse()
        .map_err(|e| ignored(format!("not a MAC: {e}")))?;
    if mac.to_string() != mac_text {
        return Err(ignored(format!("write the MAC as {mac}")));
    }
    Ok(Change::Mac(mac, word))
}

/// A whole prefix read at one revision: the lists and the unknown override, and the keys
/// ignored.
pub fn snapshot<'a>(
    prefix: &str,
    kvs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> (DesiredLists, Option<UnknownPolicy>, Vec<Ignored>) {
    let mut lists = DesiredLists::default();
    let mut unknown = None;
    let mut ignored = Vec::new();
    for (key, value) in kvs {
        match read(prefix, key, Some(value)) {
            Ok(Change::Mac(mac, Some(Verdict::Allow))) => drop(lists.allow.insert(mac)),
            Ok(Change::Mac(mac, _)) => drop(lists.deny.insert(mac)),
            Ok(Change::Unknown(u)) => unknown = u,
            Err(i) => ignored.push(i),
        }
    }
    (lists, unknown, ignored)
}

/// A batch of changes folded into what [`crate::filter::PxeFilter::apply_batch`] takes: the
/// last change of each MAC, and of the unknown policy if it changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// Each MAC's final verdict in the batch.
    pub macs: BTreeMap<MacAddr, Option<Verdict>>,
    /// The unknown override's final value, when it changed.
    pub unknown: Option<Option<UnknownPolicy>>,
}

impl Batch {
    /// Adds one change; later ones win.
    pub fn push(&mut self, change: Change) {
        match change {
            Change::Mac(mac, v) => drop(self.macs.insert(mac, v)),
            Change::Unknown(u) => self.unknown = Some(u),
        }
    }

    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.macs.is_empty() && self.unknown.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "/v/f";

    #[test]
    fn keys_and_values() {
        let m: MacAddr = "aa:00:00:00:00:01".parse().unwrap();
        let cases: [(&str, Option<&str>, Result<Change, &str>); 9] = [
            (
                "/v/f/macs/aa:00:00:00:00:01",
                Some("allow"),
                Ok(Change::Mac(m, Some(Verdict::Allow))),
            ),
            (
                "/v/f/macs/aa:00:00:00:00:01",
                Some("deny"),
                Ok(Change::Mac(m, Some(Verdict::Deny))),
            ),
            (
                "/v/f/macs/aa:00:00:00:00:01",
                None,
                Ok(Change::Mac(m, None)),
            ),
            (
                "/v/f/unknown",
                Some("deny"),
                Ok(Change::Unknown(Some(UnknownPolicy::Deny))),
            ),
            ("/v/f/unknown", None, Ok(Change::Unknown(None))),
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
            let got = read(P, key.as_bytes(), value.map(str::as_bytes));
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
            read(P, b"/v/f/other", Some(b"allow")).unwrap_err().reason,
            "not macs/<mac> or unknown"
        );
    }

    #[test]
    fn snapshot_and_batch() {
        let kvs: [(&[u8], &[u8]); 4] = [
            (b"/v/f/macs/aa:00:00:00:00:01", b"allow"),
            (b"/v/f/macs/aa:00:00:00:00:02", b"deny"),
            (b"/v/f/unknown", b"deny"),
            (b"/v/f/junk", b"x"),
        ];
        let (lists, unknown, ignored) = snapshot(P, kvs);
        assert_eq!(lists.allow.len(), 1);
        assert_eq!(lists.deny.len(), 1);
        assert_eq!(unknown, Some(UnknownPolicy::Deny));
        assert_eq!(ignored.len(), 1);
        let m: MacAddr = "aa:00:00:00:00:01".parse().unwrap();
        let mut b = Batch::default();
        assert!(b.is_empty());
        b.push(Change::Mac(m, Some(Verdict::Allow)));
        b.push(Change::Mac(m, None));
        b.push(Change::Unknown(None));
        assert_eq!(b.macs[&m], None);
        assert_eq!(b.unknown, Some(None));
    }
}
