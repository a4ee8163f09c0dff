//! `virtmasq render <network>`: what would be written for a network, without writing.

use std::path::Path;

use crate::agent::backend::{private_options, system_extra_lines};
use crate::agent::daemon::read_libvirt;
use crate::agent::desired::find;
use crate::cli::{print_out, Cli};
use crate::dnsmasq::fragment::{self, FragmentContext};
use crate::dnsmasq::render::{render_private, InstancePaths};
use crate::model::NetworkName;
use crate::system::decide::Mode;
use crate::system::detect::detect;
use crate::system::effective::EffectiveConfig;
use crate::system::plan::dns_refusal;
use crate::system::version::DnsmasqVersion;

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
            detect(&cfg, Path::new("/"), Vec::new())
                .await
                .0
                .decision
                .mode
        }
    };
    let name = net.name.as_str();
    let text = match mode {
        Mode::Private => {
            let paths = InstancePaths::new(&cfg.paths.run_dir, &cfg.paths.state_dir, name);
            let r = render_private(net, &paths, &private_options(&cfg, net));
            format!(
                "# {}\n{}\n# {}\n{}",
                paths.conf.display(),
                r.conf,
                paths.hosts.display(),
                r.hosts
            )
        }
        Mode::System => {
            let effective = EffectiveConfig::read(Path::new("/"));
            if let Some(why) = dns_refusal(&effective, net) {
                anyhow::bail!("refused in system mode: {why}");
            }
            let tag_hosts =
                DnsmasqVersion::of(&cfg.paths.dnsmasq).is_some_and(|v| v.at_least(2, 81));
            let hosts = fragment::hosts_file(&cfg.paths.state_dir, name);
            let ctx = FragmentContext {
                add_interface: effective.restricts_interfaces(),
                hosts_file: hosts.clone(),
                tag_hosts,
                extra_lines: system_extra_lines(&cfg, net, &effective),
            };
            format!(
                "# {}\n{}\n# {}\n{}",
                cfg.paths.conf_dir.join(fragment::file_name(name)).display(),
                fragment::render_fragment(net, &ctx),
                hosts.display(),
                fragment::render_hosts(net, tag_hosts)
            )
        }
    };
    print_out(&text)
}
