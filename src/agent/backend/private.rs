//! Private instances behind the [`Backend`] trait.

use std::collections::HashSet;

use super::{dns_taken_on, private_options, sighup_safe, Backend, DnsHolders, Outcome};
use crate::config::Config;
use crate::dnsmasq::private::Supervisor;
use crate::dnsmasq::process::RunAs;
use crate::dnsmasq::render::RenderOptions;
use crate::host::Host;
use crate::model::{ManagedNetwork, NetworkName};

/// Private instances.
pub struct PrivateBackend {
    /// The instances.
    pub supervisor: Supervisor,
    /// Networks whose bridge's DNS port another dnsmasq may hold (the system dnsmasq, in
    /// per-network mode): their instances serve DHCP only.
    pub dns_elsewhere: HashSet<NetworkName>,
    /// Where it looks for other holders of udp/53.
    host: Host,
    /// Those holders, remembered per socket.
    dns_holders: DnsHolders,
}

impl PrivateBackend {
    /// A backend with no instance yet.
    pub fn new(cfg: &Config, host: Host) -> anyhow::Result<Self> {
        let run_as = RunAs::lookup(&cfg.dnsmasq.user)?;
        let system_leases = super::system_lease_file(cfg, &host);
        Ok(Self {
            supervisor: Supervisor::new(
                cfg.paths.dnsmasq.clone(),
                cfg.paths.run_dir.clone(),
                cfg.paths.state_dir.clone(),
                run_as,
            )
            .with_lease_seed(system_leases),
            dns_elsewhere: HashSet::new(),
            host,
            dns_holders: DnsHolders::default(),
        })
    }
}

impl Backend for PrivateBackend {
    async fn reconcile(
        &mut self,
        nets: &[ManagedNetwork],
        keep: &HashSet<NetworkName>,
        cfg: &Config,
    ) -> Outcome {
        self.supervisor.set_hangup_safe(sighup_safe(cfg));
        let held = (self.dns_holders).held_by_others(&cfg.paths.run_dir, &self.host);
        let dns_taken = held.iter().any(|a| a == "0.0.0.0" || a == "::");
        if dns_taken && nets.iter().any(|n| n.dns) {
            tracing::warn!(
                "another server answers DNS on every address (udp/53): private instances serve \
                 DHCP only; guests resolve through that server"
            );
        }
        for n in nets.iter().filter(|n| n.dns && dns_taken_on(n, &held)) {
            tracing::warn!(
                network = %n.name,
                "another server answers DNS on the bridge's address (udp/53): its private \
                 instance serves DHCP only; guests resolve through that server"
            );
        }
        let errors = self
            .supervisor
            .reconcile(
                nets,
                |n| RenderOptions {
                    dns_taken: dns_taken
                        || dns_taken_on(n, &held)
                        || self.dns_elsewhere.contains(&n.name),
                    ..private_options(cfg, n)
                },
                keep,
            )
            .await;
        Outcome {
            changes: Vec::new(),
            errors: errors.into_iter().map(anyhow::Error::from).collect(),
        }
    }

    fn served_by(&self, net: &ManagedNetwork, _cfg: &Config) -> String {
        match self.supervisor.status().get(&net.name) {
            Some(s) => match s.pid {
                Some(pid) => format!("private dnsmasq pid {pid} ({} start(s))", s.starts),
                None => format!(
                    "private dnsmasq restarting (last exit: {})",
                    s.last_exit.as_deref().unwrap_or("none")
                ),
            },
            None => "not started (see errors)".into(),
        }
    }

    fn lease_file(&self, net: &ManagedNetwork, cfg: &Config) -> Option<std::path::PathBuf> {
        self.supervisor.status().get(&net.name)?;
        let paths = crate::dnsmasq::render::InstancePaths::new(
            &cfg.paths.run_dir,
            &cfg.paths.state_dir,
            net.name.as_str(),
        );
        Some(paths.leases)
    }

    async fn reread(&mut self, cfg: &Config) -> anyhow::Result<()> {
        if sighup_safe(cfg) {
            self.supervisor.hangup_all();
        } else {
            self.supervisor.restart_all();
        }
        Ok(())
    }

    async fn shutdown(&mut self) {
        self.supervisor.shutdown().await;
    }
}
