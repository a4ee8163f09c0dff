//! `virtmasq daemon`: serve every managed network until stopped.

use crate::agent::daemon::{self, DaemonOptions};
use crate::cli::Cli;

/// Options of `daemon`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// libvirt connection URI (overrides the configuration's `libvirt.uri`).
    #[arg(long, value_name = "URI")]
    pub libvirt_uri: Option<String>,
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn exec(cli: &Cli, args: &Args) -> anyhow::Result<()> {
    let (config_path, config_explicit) = cli.config_path();
    let opts = DaemonOptions {
        config_path,
        config_explicit,
        libvirt_uri: args.libvirt_uri.clone(),
        host: crate::host::Host::real(),
        bus_address: None,
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        }
    };
    daemon::run(opts, shutdown).await
}
