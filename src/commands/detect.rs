//! `virtmasq detect [--json]`: the system dnsmasq, what follows from it, and the mode.

use std::path::Path;

use crate::agent::daemon::read_libvirt;
use crate::agent::desired::desired;
use crate::cli::{print_out, Cli};
use crate::system::detect::detect;

/// Options of `detect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the stable JSON schema instead of text.
    #[arg(long)]
    pub json: bool,
    /// libvirt connection URI (overrides the configuration's), to name the managed bridges.
    #[arg(long, value_name = "URI")]
    pub libvirt_uri: Option<String>,
}

/// Prints the detection.
pub async fn exec(cli: &Cli, args: &Args) -> anyhow::Result<()> {
    let mut cfg = cli.load_config()?;
    if let Some(uri) = &args.libvirt_uri {
        cfg.libvirt.uri = uri.clone();
    }
    // libvirt is optional here: detection is about dnsmasq, and must work without libvirtd.
    let bridges = match tokio::time::timeout(
        std::time::Duration::from_secs(5),
        read_libvirt(&cfg.libvirt.uri),
    )
    .await
    {
        Ok(Ok(nets)) => desired(&nets, &cfg)
            .served
            .iter()
            .map(|s| s.network.bridge.to_string())
            .collect(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "libvirt not read: managed bridges unknown");
            Vec::new()
        }
        Err(_) => {
            tracing::warn!("libvirt did not answer within 5 s: managed bridges unknown");
            Vec::new()
        }
    };
    let (d, _) = detect(&cfg, Path::new("/"), bridges).await;
    if args.json {
        print_out(&format!("{}\n", serde_json::to_string_pretty(&d)?))
    } else {
        print_out(&d.to_text())
    }
}
