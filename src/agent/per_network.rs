//! System mode, network by network: each network is served by the system dnsmasq where it can
//! be ([`crate::system::placement`]), and by a private instance beside it where the system
//! dnsmasq cannot serve it on this host (its bridge excluded, or a setting a shared instance
//! could only apply everywhere). The other networks stay in the system dnsmasq.

use std::collections::{BTreeMap, HashSet};

use super::backend::{system_refusal, Backend, Outcome, PrivateBackend, SystemBackend, SystemView};
use crate::config::Config;
use crate::model::{ManagedNetwork, NetworkName};
use crate::system::effective::EffectiveConfig;
use crate::system::placement::{place, Placement};

/// The system dnsmasq, with private instances for the networks it cannot serve.
pub struct PerNetworkBackend {
    /// Fragments in the system dnsmasq.
    system: SystemBackend,
    /// Private instances, or why none can run (no dnsmasq user, say).
    private: Result<PrivateBackend, String>,
    /// Where each network of the last reconcile went.
    placed: BTreeMap<NetworkName, Placement>,
}

impl PerNetworkBackend {
    /// A backend over `system`, able to start private instances as `cfg` says.
    pub fn new(system: SystemBackend, cfg: &Config) -> Self {
        let private = PrivateBackend::new(cfg, system.host().clone());
        Self {
            system,
            private: private.map_err(|e| format!("{e:#}")),
            placed: BTreeMap::new(),
        }
    }

    /// Places every network; returns the system's, the private ones, and the errors for those
    /// nothing can serve.
    fn split(
        &mut self,
        nets: &[ManagedNetwork],
        effective: &EffectiveConfig,
    ) -> (Vec<ManagedNetwork>, Vec<ManagedNetwork>, Vec<anyhow::Error>) {
        self.placed = nets
            .iter()
            .map(|n| (n.name.clone(), place(n, effective, system_refusal(n))))
            .collect();
        let (mut system, mut private, mut errors) = (Vec::new(), Vec::new(), Vec::new());
        let mut dns_elsewhere = HashSet::new();
        for net in nets {
            match (&self.placed[&net.name], &self.private) {
                (Placement::System, _) => system.push(net.clone()),
                (Placement::Private(r), Ok(_)) => {
                    if r.dns_elsewhere {
                        dns_elsewhere.insert(net.name.clone());
                    }
                    private.push(net.clone());
                }
                (Placement::Private(r), Err(e)) => errors.push(anyhow::anyhow!(
                    "network '{}' is not served: {}, and no private dnsmasq can run: {e}",
                    net.name,
                    r.why
                )),
                (Placement::Nowhere(why), _) => errors.push(anyhow::anyhow!(
                    "network '{}' is not served: {why}",
                    net.name
                )),
            }
        }
        if let Ok(p) = &mut self.private {
            p.dns_elsewhere = dns_elsewhere;
        }
        (system, private, errors)
    }
}

impl Backend for PerNetworkBackend {
    async fn reconcile(
        &mut self,
        nets: &[ManagedNetwork],
        keep: &HashSet<NetworkName>,
        cfg: &Config,
    ) -> Outcome {
        // What the host's dnsmasq is, read once for the placement and the system's files.
        let view = SystemView::observe(cfg, self.system.host());
        let (system, private, errors) = self.split(nets, &view.effective);
        // Private instances first: one that leaves a bridge must have let go of its sockets
        // before the system dnsmasq restarts onto that bridge.
        let mut outcome = match &mut self.private {
            Ok(p) => p.reconcile(&private, keep, cfg).await,
            Err(_) => Outcome::default(),
        };
        let sys = self
            .system
            .reconcile_with(&system, keep, cfg, Some(view))
            .await;
        outcome.changes.extend(sys.changes);
        outcome.errors.extend(sys.errors);
        outcome.errors.extend(errors);
        outcome
    }

    fn restarts_shared(&self) -> bool {
        true
    }

    fn watched_bridges(&self, cfg: &Config) -> Vec<String> {
        self.system.watched_bridges(cfg)
    }

    fn served_by(&self, net: &ManagedNetwork, cfg: &Config) -> String {
        match (self.placed.get(&net.name), &self.private) {
            (Some(Placement::Private(r)), Ok(p)) => {
                format!("{} (per network: {})", p.served_by(net, cfg), r.why)
            }
            (Some(Placement::Private(r)), Err(e)) => {
                format!("not served: {}, and no private dnsmasq can run: {e}", r.why)
            }
            (Some(Placement::Nowhere(why)), _) => format!("not served: {why}"),
            _ => self.system.served_by(net, cfg),
        }
    }

    fn lease_file(&self, net: &ManagedNetwork, cfg: &Config) -> Option<std::path::PathBuf> {
        match (self.placed.get(&net.name), &self.private) {
            (Some(Placement::Private(_)), Ok(p)) => p.lease_file(net, cfg),
            (Some(Placement::Private(_) | Placement::Nowhere(_)), _) => None,
            _ => self.system.lease_file(net, cfg),
        }
    }

    async fn reread(&mut self, cfg: &Config) -> anyhow::Result<()> {
        if let Ok(p) = &mut self.private {
            p.reread(cfg).await?;
        }
        self.system.reread(cfg).await
    }

    async fn shutdown(&mut self) {
        if let Ok(p) = &mut self.private {
            p.shutdown().await;
        }
        self.system.shutdown().await;
    }
}
