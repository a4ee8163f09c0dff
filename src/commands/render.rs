//! `virtmasq render <network>`: what would be written for a network, without writing.

use crate::agent::backend::{private_options, system_files, system_refusal, SystemView};
use crate::agent::daemon::read_libvirt;
use crate::agent::desired::find;
use crate::cli::{print_out, Cli};
use crate::config::Config;
use crate::dnsmasq::render::{render_private, InstancePaths};
use crate::model::Mode;
use crate::model::{ManagedNetwork, NetworkName};
use crate::system::detect::detect;
use crate::system::placement::{place, Placement};

/// Options of `render`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The libvirt network.
    pub network: NetworkName,
    /// libvirt connection URI (overrides the configuration's `libvirt.uri`).
    #[arg(long, value_name = "URI")]
    pub libvirt_uri: Option<String>,
    /// Show this mode's files instead of the mode `detect` decides.
    #[arg(long, value_enum)]
    pub mode: Option<RenderMode>,
}

/// The mode to render for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RenderMode {
    /// A fragment for the system dnsmasq's conf-dir.
    System,
    /// A private instance's configuration.
    Private,
}

/// Prints the files and their paths.
pub async fn exec(cli: &Cli, args: &Args) -> anyhow::Result<()> {
    let mut cfg = cli.load_config()?;
    if let Some(uri) = &args.libvirt_uri {
        cfg.libvirt.uri = uri.clone();
    }
    let nets = read_libvirt(&cfg.libvirt.uri).await?;
    let served = find(&nets, &args.network, &cfg)
        .map_err(|skip| anyhow::anyhow!("network '{}' is not served: {skip}", args.network))?;
    let net = &served.network;
    let mode = match args.mode {
        Some(RenderMode::System) => Mode::System,
        Some(RenderMode::Private) => Mode::Private,
        None => {
            detect(&cfg, &crate::host::Host::real(), Vec::new())
                .await
                .0
                .decision
                .mode
        }
    };
    let text = match mode {
        Mode::Private => private_text(&cfg, net),
        Mode::System => {
            let view = SystemView::observe(&cfg, &crate::host::Host::real());
            match place(net, &view.effective, system_refusal(net)) {
                Placement::System => system_text(&cfg, net, &view)?,
                Placement::Private(r) => format!(
                    "# not a fragment: a private dnsmasq beside the system one serves it ({})\n{}",
                    r.why,
                    private_text(&cfg, net)
                ),
                Placement::Nowhere(why) => anyhow::bail!("not served in system mode: {why}"),
            }
        }
    };
    print_out(&text)
}

/// A private instance's files, as the supervisor writes them.
fn private_text(cfg: &Config, net: &ManagedNetwork) -> String {
    let paths = InstancePaths::new(&cfg.paths.run_dir, &cfg.paths.state_dir, net.name.as_str());
    let r = render_private(net, &paths, &private_options(cfg, net));
    format!(
        "# {}\n{}\n# {}\n{}",
        paths.conf.display(),
        r.conf,
        paths.hosts.display(),
        r.hosts
    )
}

/// The network's system-mode files, from the code that writes them ([`system_files`]), or why
/// none are written.
fn system_text(cfg: &Config, net: &ManagedNetwork, view: &SystemView) -> anyhow::Result<String> {
    let want = system_files(std::slice::from_ref(net), cfg, view, Vec::new());
    if let Some((_, why)) = want.refused.first() {
        anyhow::bail!("refused in system mode: {why}");
    }
    if let Some((_, why)) = want.deferred.first() {
        return Ok(format!(
            "# nothing is written for it now: it waits: {why}\n"
        ));
    }
    let mut out = String::new();
    for (path, text) in want.fragments.iter().chain(&want.hosts) {
        out.push_str(&format!("# {}\n{text}", path.display()));
        if !text.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}
