//! `virtmasq status [--json]`: what is served, by which dnsmasq, from which file, and the last
//! errors; from the running daemon over D-Bus, otherwise from what is on disk.

use std::fs;
use std::path::Path;

use zbus::proxy::MethodFlags;

use crate::agent::dbus::{NAME, PATH};
use crate::agent::status::{FilterStatus, NetworkStatus, Status};
use crate::cli::{print_out, Cli};
use crate::config::Config;
use crate::dnsmasq::render::InstancePaths;
use crate::filter::PxeFilter;
use crate::model::IntentSource;
use crate::system::detect::detect;

/// Options of `status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON (the schema of the D-Bus `Status` method) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Prints the status.
pub async fn exec(cli: &Cli, args: &Args) -> anyhow::Result<()> {
    let cfg = cli.load_config()?;
    let status = match from_daemon().await {
        Some(s) => s,
        None => from_disk(&cfg).await,
    };
    if args.json {
        print_out(&format!("{}\n", serde_json::to_string_pretty(&status)?))
    } else {
        print_out(&status.to_text())
    }
}

/// The daemon's own status, if it runs (never starts it through D-Bus activation).
async fn from_daemon() -> Option<Status> {
    let conn = crate::systemd::bus::system().await.ok()?;
    let proxy = zbus::Proxy::new(&conn, NAME, PATH, NAME).await.ok()?;
    let reply = proxy
        .call_with_flags::<_, _, String>("Status", MethodFlags::NoAutoStart.into(), &())
        .await
        .ok()??;
    serde_json::from_str(&reply).ok()
}

/// What the files say: system fragments, private instances with a live pid, the filter.
async fn from_disk(cfg: &Config) -> Status {
    let (detection, _) = detect(cfg, &crate::host::Host::real(), Vec::new()).await;
    let mut st = Status::new(
        detection.decision.mode,
        "files on disk (no daemon answered)",
    );
    for entry in fs::read_dir(&cfg.paths.conf_dir)
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(net) = name
            .strip_prefix("virtmasq-")
            .and_then(|n| n.strip_suffix(".conf"))
        else {
            continue;
        };
        let text = fs::read_to_string(&path).unwrap_or_default();
        if !text.starts_with(crate::system::effective::FRAGMENT_MARK) {
            continue;
        }
        st.networks.push(NetworkStatus {
            name: net.to_owned(),
            bridge: between(&text, "(bridge ", ")").unwrap_or_default(),
            intent: IntentSource::Metadata,
            served_by: format!("system dnsmasq, {}", path.display()),
        });
    }
    for entry in fs::read_dir(&cfg.paths.run_dir)
        .into_iter()
        .flatten()
        .flatten()
    {
        let net = entry.file_name().to_string_lossy().into_owned();
        let paths = InstancePaths::new(&cfg.paths.run_dir, &cfg.paths.state_dir, &net);
        let Some(pid) = crate::dnsmasq::process::read_pid(&paths.pid) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let conf = fs::read_to_string(&paths.conf).unwrap_or_default();
        st.networks.push(NetworkStatus {
            name: net,
            bridge: between(&conf, "interface=", "\n").unwrap_or_default(),
            intent: IntentSource::Metadata,
            served_by: format!("private dnsmasq pid {pid} (no daemon supervises it)"),
        });
    }
    let filter = PxeFilter::new(cfg.filter.clone(), cfg.paths.state_dir.clone());
    if let Ok(p) = filter.list() {
        st.filter = FilterStatus {
            enabled: cfg.filter.enabled,
            allowed: p.allow.len() as u32,
            denied: p.deny.len() as u32,
            unknown: format!("{:?}", p.unknown).to_lowercase(),
            source: None,
        };
    }
    st
}

fn between(text: &str, start: &str, end: &str) -> Option<String> {
    let rest = &text[text.find(start)? + start.len()..];
    Some(rest[..rest.find(end)?].to_owned())
}
