//! `virtmasq detect [--json]`: the system dnsmasq, what follows from it, and the mode.

use crate::agent::backend::system_refusal;
use crate::agent::daemon::read_libvirt;
use crate::agent::desired::desired;
use crate::cli::{print_out, Cli};
use crate::model::ManagedNetwork;
use crate::model::Mode;
use crate::system::detect::detect;
use crate::system::effective::EffectiveConfig;
use crate::system::placement::{place, Placement};

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
    let served = match tokio::time::timeout(
        std::time::Duration::from_secs(5),
        read_libvirt(&cfg.libvirt.uri),
    )
    .await
    {
        Ok(Ok(nets)) => desired(&nets, &cfg).networks(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "libvirt not read: managed bridges unknown");
            Vec::new()
        }
        Err(_) => {
            tracing::warn!("libvirt did not answer within 5 s: managed bridges unknown");
            Vec::new()
        }
    };
    let bridges = served.iter().map(|n| n.bridge.to_string()).collect();
    let (d, _) = detect(&cfg, &crate::host::Host::real(), bridges).await;
    let networks: Vec<Placed> = served
        .iter()
        .map(|n| Placed::of(n, d.decision.mode, &d.config))
        .collect();
    if args.json {
        let mut json = serde_json::to_value(&d)?;
        json["networks"] = serde_json::to_value(&networks)?;
        print_out(&format!("{}\n", serde_json::to_string_pretty(&json)?))
    } else {
        let mut text = d.to_text();
        for n in &networks {
            let why = n
                .reason
                .as_deref()
                .map_or(String::new(), |r| format!(": {r}"));
            text.push_str(&format!(
                "network {} ({}): {}{why}\n",
                n.name, n.bridge, n.served_by
            ));
        }
        print_out(&text)
    }
}

/// Which dnsmasq serves a network, and why when it is not the mode's usual one.
#[derive(Debug, serde::Serialize)]
struct Placed {
    /// The network.
    name: String,
    /// Its bridge.
    bridge: String,
    /// `system`, `private` or `none`.
    served_by: &'static str,
    /// Why a network is private in system mode, or served by nothing.
    reason: Option<String>,
}

impl Placed {
    fn of(net: &ManagedNetwork, mode: Mode, effective: &EffectiveConfig) -> Placed {
        let (served_by, reason) = match mode {
            Mode::Private => ("private", None),
            Mode::System => match place(net, effective, system_refusal(net)) {
                Placement::System => ("system", None),
                Placement::Private(r) => ("private", Some(r.why)),
                Placement::Nowhere(why) => ("none", Some(why)),
            },
        };
        Placed {
            name: net.name.to_string(),
            bridge: net.bridge.to_string(),
            served_by,
            reason,
        }
    }
}
