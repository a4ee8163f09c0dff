//! `virtmasq render <network>`: what would be written for a network, without writing.

use std::io::Write;

use anyhow::Context;

use crate::agent::daemon::read_libvirt;
use crate::agent::desired::find;
use crate::cli::Cli;
use crate::dnsmasq::render::{render_private, InstancePaths, RenderOptions};
use crate::model::NetworkName;

/// Options of `render`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The libvirt network.
    pub network: NetworkName,
    /// libvirt connection URI (overrides the configuration's `libvirt.uri`).
    #[arg(long, value_name = "URI")]
    pub libvirt_uri: Option<String>,
}

/// Prints the private instance's configuration and hosts file.
pub async fn exec(cli: &Cli, args: &Args) -> anyhow::Result<()> {
    let cfg = cli.load_config()?;
    let uri = args.libvirt_uri.as_ref().unwrap_or(&cfg.libvirt.uri);
    let nets = read_libvirt(uri).await?;
    let served = find(&nets, &args.network, &cfg)
        .map_err(|skip| anyhow::anyhow!("network '{}' is not served: {skip}", args.network))?;
    let paths = InstancePaths::new(
        &cfg.paths.run_dir,
        &cfg.paths.state_dir,
        args.network.as_str(),
    );
    let opts = RenderOptions {
        no_ping: cfg.dnsmasq.no_ping,
        extra_lines: Vec::new(),
    };
    let r = render_private(&served.network, &paths, &opts);
    let mut out = std::io::stdout().lock();
    writeln!(out, "# {}\n{}", paths.conf.display(), r.conf)
        .and_then(|_| writeln!(out, "# {}\n{}", paths.hosts.display(), r.hosts))
        .context("writing to standard output")?;
    Ok(())
}
