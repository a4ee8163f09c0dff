//! The two layers of the etcd policy a host follows, fleet-wide and its own overrides, and the
//! one policy they make (pure). The follower keeps the layers in memory (rebuilt by every full
//! read) so that a change in either layer yields the MAC's new effective verdict; the store
//! and the hostsdir only ever see the effective policy.

use std::collections::{BTreeMap, HashMap};

use super::layout::{self, Change, Ignored, Scope};
use crate::filter::config::UnknownPolicy;
use crate::filter::entry::Verdict;
use crate::filter::policy::DesiredLists;
use crate::model::MacAddr;

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
                Ok(Some((scope, change))) => drop(layers.apply(scope, change)),
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

    /// Applies one key's change to its layer; returns the effective change it makes (the
    /// MAC's, or the unknown policy's, value after it, whether or not it differs).
    pub fn apply(&mut self, scope: Scope, change: Change) -> Change {
        match change {
            Change::Mac(mac, v) => {
                let layer = match scope {
                    Scope::Fleet => &mut self.fleet,
                    Scope::Host => &mut self.host,
                };
                match v {
                    Some(v) => drop(layer.insert(mac, v)),
                    None => drop(layer.remove(&mac)),
                }
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
    use Verdict::{Allow, Deny};

    const P: &str = "/v/f";

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
                l.apply(scope, Change::Mac(m, v)),
                Change::Mac(m, want),
                "step {i}"
            );
        }
        let (d, a) = (UnknownPolicy::Deny, UnknownPolicy::Allow);
        assert_eq!(
            l.apply(Scope::Host, Change::Unknown(Some(a))),
            Change::Unknown(Some(a))
        );
        assert_eq!(
            l.apply(Scope::Fleet, Change::Unknown(Some(d))),
            Change::Unknown(Some(a))
        );
        assert_eq!(
            l.apply(Scope::Host, Change::Unknown(None)),
            Change::Unknown(Some(d))
        );
        assert_eq!(
            l.apply(Scope::Fleet, Change::Unknown(None)),
            Change::Unknown(None)
        );
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
        b.push(Change::Mac(mac(1), Some(Allow)));
        b.push(Change::Mac(mac(1), None));
        b.push(Change::Unknown(None));
        assert_eq!(b.macs[&mac(1)], None);
        assert_eq!(b.unknown, Some(None));
    }
}
