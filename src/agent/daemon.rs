//! The daemon loop: read networks from libvirt, reconcile the private instances, follow
//! SIGHUP (reload configuration; a broken one is reported and the old state keeps serving) and
//! stop cleanly when `shutdown` completes.

use std::future::Future;
use std::path::PathBuf;

use tokio::signal::unix::{signal, SignalKind};

use super::desired::{desired, Desired};
use crate::config::Config;
use crate::dnsmasq::private::Supervisor;
use crate::dnsmasq::process::RunAs;
use crate::dnsmasq::render::RenderOptions;
use crate::libvirt::source::{list_networks, LibvirtError, LibvirtNetwork};

/// What the daemon needs to start.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// The configuration file, re-read on SIGHUP.
    pub config_path: PathBuf,
    /// Whether the file was named explicitly (then it must exist).
    pub config_explicit: bool,
    /// A libvirt URI that overrides the configuration's.
    pub libvirt_uri: Option<String>,
}

impl DaemonOptions {
    fn load(&self) -> anyhow::Result<Config> {
        let mut cfg = Config::load_or_default(&self.config_path, self.config_explicit)?;
        if let Some(uri) = &self.libvirt_uri {
            cfg.libvirt.uri = uri.clone();
        }
        Ok(cfg)
    }
}

/// Runs until `shutdown` completes, then stops every private instance.
pub async fn run(opts: DaemonOptions, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let mut cfg = opts.load()?;
    let run_as = RunAs::lookup(&cfg.dnsmasq.user)?;
    let mut sup = Supervisor::new(
        cfg.paths.dnsmasq.clone(),
        cfg.paths.run_dir.clone(),
        cfg.paths.state_dir.clone(),
        run_as,
    );
    let mut hangup = signal(SignalKind::hangup())?;
    tokio::pin!(shutdown);
    reconcile(&cfg, &mut sup).await;
    let mut tick = tokio::time::interval(cfg.libvirt.poll_interval());
    tick.reset();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = hangup.recv() => {
                match opts.load() {
                    Ok(new) => {
                        tracing::info!("configuration reloaded");
                        cfg = new;
                        tick = tokio::time::interval(cfg.libvirt.poll_interval());
                        tick.reset();
                    }
                    Err(e) => tracing::error!(
                        error = %format!("{e:#}"),
                        "configuration not reloaded; the previous one stays in force"
                    ),
                }
                reconcile(&cfg, &mut sup).await;
            }
            _ = tick.tick() => reconcile(&cfg, &mut sup).await,
        }
    }
    tracing::info!("stopping private dnsmasq instances");
    sup.shutdown().await;
    Ok(())
}

/// Reads libvirt off the event loop (the calls block).
pub async fn read_libvirt(uri: &str) -> Result<Vec<LibvirtNetwork>, LibvirtError> {
    let uri = uri.to_owned();
    tokio::task::spawn_blocking(move || list_networks(&uri))
        .await
        .unwrap_or_else(|e| {
            Err(LibvirtError::Call {
                uri: String::new(),
                what: "list networks".into(),
                message: e.to_string(),
            })
        })
}

async fn reconcile(cfg: &Config, sup: &mut Supervisor) {
    let nets = match read_libvirt(&cfg.libvirt.uri).await {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "libvirt not read; what runs stays as it is");
            return;
        }
    };
    let want = desired(&nets, cfg);
    report(&want);
    let opts = RenderOptions {
        no_ping: cfg.dnsmasq.no_ping,
        extra_lines: Vec::new(),
    };
    sup.reconcile(&want.networks(), &opts).await;
}

fn report(want: &Desired) {
    for (name, skip) in &want.skipped {
        if skip.is_error() {
            tracing::error!(network = %name.escape_debug(), "not served: {skip}");
        } else {
            tracing::debug!(network = %name.escape_debug(), "not served: {skip}");
        }
    }
}
