//! The two layers of the etcd policy a host follows, fleet-wide and its own overrides, and the
//! one policy they make (pure). The follower keeps the layers in memory (rebuilt by every full
//! read) so that a change in either layer yields the MAC's new effective verdict; the store
//! and the hostsdir only ever see the effective policy.

use std::collections::{BTreeMap, HashMap};

use super::layout::{self, Change, Entry, Ignored, IpxeKey, Scope};
use crate::filter::config::UnknownPolicy;
use crate::filter::entry::Verdict;
use crate::filter::policy::DesiredLists;
use crate::model::MacAddr;
use crate::pxe::overlay::RuleOverlay;
use crate::pxe::script::{ScriptAction, ScriptRule};

/// Sets `key` in `layer` to `value`, or removes it for None.
fn set<K: std::hash::Hash + Eq, V>(layer: &mut HashMap<K, V>, key: K, value: Option<V>) {
    match value {
        Some(v) => drop(layer.insert(key, v)),
        None => drop(layer.remove(&key)),
    }
}

/// Both layers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layers {
    /// `<prefix>/macs/<mac>`.
    fleet: HashMap<MacAddr, Verdict>,
    /// `<prefix>/hosts/<host>/macs/<mac>`.
    host: HashMap<MacAddr, Verdict>,
    /// `<prefix>/unknown`.
    fleet_unknown: Option<UnknownPolicy>,
    /// `<prefix>/hosts/<host>/unknown`.
    host_unknown: Option<UnknownPolicy>,
    /// `<prefix>/ipxe/...`.
    fleet_ipxe: HashMap<IpxeKey, ScriptAction>,
    /// `<prefix>/hosts/<host>/ipxe/...`.
    host_ipxe: HashMap<IpxeKey, ScriptAction>,
}

impl Layers {
    /// A whole prefix read at one revision, for host `host`: the layers, and the keys ignored.
    pub fn snapshot<'a>(
        prefix: &str,
        host: &str,
        kvs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> (Self, Vec<Ignored>) {
        let mut layers = Self::default();
        let mut ignored = Vec::new();
        for (key, value) in kvs {
            match layout::read(prefix, host, key, Some(value)) {
                Ok(Some((scope, entry))) => drop(layers.apply(scope, entry)),
                Ok(None) => {}
                Err(i) => ignored.push(i),
            }
        }
        (layers, ignored)
    }

    /// `mac`'s verdict: this host's override, else the fleet-wide entry, else None (the
    /// unknown policy).
    pub fn verdict(&self, mac: &MacAddr) -> Option<Verdict> {
        self.host.get(mac).or_else(|| self.fleet.get(mac)).copied()
    }

    /// The unknown-MAC policy: this host's, else the fleet's, else None (`[filter] unknown`).
    pub fn unknown(&self) -> Option<UnknownPolicy> {
        self.host_unknown.or(self.fleet_unknown)
    }

    /// Applies one key's entry to its layer; returns the effective change it makes (the
    /// MAC's, the unknown policy's or the iPXE rule's value after it, changed or not).
    pub fn apply(&mut self, scope: Scope, entry: Entry) -> Entry {
        match entry {
            Entry::Filter(change) => Entry::Filter(self.apply_filter(scope, change)),
            Entry::Ipxe(key, action) => {
                let layer = match scope {
                    Scope::Fleet => &mut self.fleet_ipxe,
                    Scope::Host => &mut self.host_ipxe,
                };
                set(layer, key, action);
                Entry::Ipxe(key, self.ipxe_rule(&key))
            }
        }
    }

    /// `key`'s iPXE rule: this host's, else the fleet's.
    fn ipxe_rule(&self, key: &IpxeKey) -> Option<ScriptAction> {
        (self.host_ipxe.get(key))
            .or_else(|| self.fleet_ipxe.get(key))
            .cloned()
    }

    /// The iPXE rules of both layers, this host's beating the fleet's, in a stable order.
    pub fn ipxe_overlay(&self) -> RuleOverlay {
        let mut keys: Vec<&IpxeKey> = self
            .fleet_ipxe
            .keys()
            .chain(self.host_ipxe.keys())
            .collect();
        keys.sort_by_key(|k| format!("{k:?}"));
        keys.dedup();
        let mut overlay = RuleOverlay::default();
        for key in keys {
            match (key, self.ipxe_rule(key)) {
                (IpxeKey::Client(k), Some(action)) => {
                    overlay.rules.push(ScriptRule { key: *k, action })
                }
                (IpxeKey::Default, a) => overlay.default = a,
                (_, None) => {}
            }
        }
        overlay
    }

    fn apply_filter(&mut self, scope: Scope, change: Change) -> Change {
        match change {
            Change::Mac(mac, v) => {
                let layer = match scope {
                    Scope::Fleet => &mut self.fleet,
                    Scope::Host => &mut self.host,
                };
                set(layer, mac, v);
                Change::Mac(mac, self.verdict(&mac))
            }
            Change::Unknown(u) => {
                match scope {
                    Scope::Fleet => self.fleet_unknown = u,
                    Scope::Host => self.host_unknown = u,
                }
                Change::Unknown(self.unknown())
            }
        }
    }

    /// The effective policy: both lists and the unknown override.
    pub fn effective(&self) -> (DesiredLists, Option<UnknownPolicy>) {
        let mut lists = DesiredLists::default();
        let macs = self.fleet.keys().chain(self.host.keys());
        for mac in macs {
            match self.verdict(mac) {
                Some(Verdict::Allow) => drop(lists.allow.insert(*mac)),
                Some(Verdict::Deny) => drop(lists.deny.insert(*mac)),
                None => {}
            }
        }
        (lists, self.unknown())
    }

    /// How many MAC keys each layer holds (fleet, host), for the log.
    pub fn counts(&self) -> (usize, usize) {
        (self.fleet.len(), self.host.len())
    }
}

/// A batch of effective changes folded into what [`crate::filter::PxeFilter::apply_batch`]
/// takes: the last change of each MAC, and of the unknown policy if it changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// Each MAC's final verdict in the batch.
    pub macs: BTreeMap<MacAddr, Option<Verdict>>,
    /// The unknown override's final value, when it changed.
    pub unknown: Option<Option<UnknownPolicy>>,
    /// Whether an iPXE rule changed.
    pub ipxe: bool,
}

impl Batch {
    /// Adds one change; later ones win.
    pub fn push(&mut self, entry: Entry) {
        match entry {
            Entry::Filter(Change::Mac(mac, v)) => drop(self.macs.insert(mac, v)),
            Entry::Filter(Change::Unknown(u)) => self.unknown = Some(u),
            Entry::Ipxe(..) => self.ipxe = true,
        }
    }

    /// Whether the filter's policy does not change.
    pub fn is_empty(&self) -> bool {
        self.macs.is_empty() && self.unknown.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Verdict::{Allow, Deny};

    const P: &str = "/v/f";

    fn unknown(u: Option<UnknownPolicy>) -> Entry {
        Entry::Filter(Change::Unknown(u))
    }

    fn mac(n: u8) -> MacAddr {
        format!("aa:00:00:00:00:{n:02x}").parse().unwrap()
    }

    #[test]
    fn host_beats_fleet_and_falls_back_to_it() {
        let m = mac(1);
        let mut l = Layers::default();
        // (scope, change) -> the MAC's effective verdict after it.
        let steps: [(Scope, Option<Verdict>, Option<Verdict>); 6] = [
            (Scope::Fleet, Some(Deny), Some(Deny)),
            (Scope::Host, Some(Allow), Some(Allow)),
            (Scope::Fleet, Some(Allow), Some(Allow)),
            (Scope::Fleet, Some(Deny), Some(Allow)),
            (Scope::Host, None, Some(Deny)),
            (Scope::Fleet, None, None),
        ];
        for (i, (scope, v, want)) in steps.into_iter().enumerate() {
            assert_eq!(
                l.apply(scope, Entry::Filter(Change::Mac(m, v))),
                Entry::Filter(Change::Mac(m, want)),
                "step {i}"
            );
        }
        let (d, a) = (UnknownPolicy::Deny, UnknownPolicy::Allow);
        assert_eq!(l.apply(Scope::Host, unknown(Some(a))), unknown(Some(a)));
        assert_eq!(l.apply(Scope::Fleet, unknown(Some(d))), unknown(Some(a)));
        assert_eq!(l.apply(Scope::Host, unknown(None)), unknown(Some(d)));
        assert_eq!(l.apply(Scope::Fleet, unknown(None)), unknown(None));
    }

    #[test]
    fn snapshot_effective_and_batch() {
        let kvs: [(&[u8], &[u8]); 8] = [
            (b"/v/f/macs/aa:00:00:00:00:01", b"allow"),
            (b"/v/f/macs/aa:00:00:00:00:02", b"deny"),
            (b"/v/f/hosts/me/macs/aa:00:00:00:00:02", b"allow"),
            (b"/v/f/hosts/me/macs/aa:00:00:00:00:03", b"deny"),
            (b"/v/f/hosts/you/macs/aa:00:00:00:00:01", b"deny"),
            (b"/v/f/unknown", b"deny"),
            (b"/v/f/hosts/me/unknown", b"allow"),
            (b"/v/f/junk", b"x"),
        ];
        let (me, ignored) = Layers::snapshot(P, "me", kvs);
        assert_eq!(ignored.len(), 1);
        assert_eq!(ignored[0].key, "/v/f/junk");
        let (lists, unknown) = me.effective();
        assert_eq!(lists.allow, [mac(1), mac(2)].into());
        assert_eq!(lists.deny, [mac(3)].into());
        assert_eq!(unknown, Some(UnknownPolicy::Allow));
        assert_eq!(me.counts(), (2, 2));
        // The same keys for another host: its own override, the fleet's for the rest.
        let (you, _) = Layers::snapshot(P, "you", kvs);
        let (lists, unknown) = you.effective();
        assert_eq!(lists.allow, [].into());
        assert_eq!(lists.deny, [mac(1), mac(2)].into());
        assert_eq!(unknown, Some(UnknownPolicy::Deny));

        let mut b = Batch::default();
        assert!(b.is_empty());
        b.push(Entry::Filter(Change::Mac(mac(1), Some(Allow))));
        b.push(Entry::Filter(Change::Mac(mac(1), None)));
        b.push(Entry::Filter(Change::Unknown(None)));
        assert!(!b.ipxe);
        assert_eq!(b.macs[&mac(1)], None);
        assert_eq!(b.unknown, Some(None));
    }

    #[test]
    fn ipxe_rules_host_beats_fleet() {
        let kvs: [(&[u8], &[u8]); 4] = [
            (b"/v/f/ipxe/macs/aa:00:00:00:00:01", b"chain http://e/fleet"),
            (b"/v/f/hosts/me/ipxe/macs/aa:00:00:00:00:01", b"exit"),
            (b"/v/f/ipxe/default", b"chain http://e/menu"),
            (b"/v/f/hosts/you/ipxe/default", b"exit"),
        ];
        let (mut me, ignored) = Layers::snapshot(P, "me", kvs);
        assert!(ignored.is_empty(), "{ignored:?}");
        let o = me.ipxe_overlay();
        assert_eq!(o.rules.len(), 1);
        assert_eq!(o.rules[0].action, ScriptAction::Exit);
        assert_eq!(
            o.default,
            Some(ScriptAction::Chain("http://e/menu".parse().unwrap()))
        );
        let key = IpxeKey::Client(crate::pxe::script::ClientKey::Mac(mac(1)));
        let back = me.apply(Scope::Host, Entry::Ipxe(key, None));
        let fleet = ScriptAction::Chain("http://e/fleet".parse().unwrap());
        assert_eq!(back, Entry::Ipxe(key, Some(fleet.clone())));
        assert_eq!(me.ipxe_overlay().rules[0].action, fleet);
        let mut b = Batch::default();
        b.push(back);
        assert!(b.ipxe && b.is_empty());
    }
}
