//! `virtmasq setup` and `virtmasq teardown`: prepare a host for virtmasq and undo it, for a
//! package's maintainer scripts or an installation by hand. Both are idempotent; see
//! [`crate::setup`].

use std::path::{Path, PathBuf};

use crate::cli::{print_out, Cli};
use crate::model::Mode;
use crate::setup::{self, Layout, SetupOptions, TeardownOptions, Units, HOOK_SHIM};
use crate::system::detect::detect;

/// Options of `setup`.
#[derive(Debug, clap::Args)]
pub struct SetupArgs {
    /// Work on the tree at DIR as if it were `/` (the configuration's paths are taken inside
    /// it); systemd is then left alone.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Do not enable or start virtmasq.service (for package scripts that use their
    /// distribution's own tools for that, and for image builds).
    #[arg(long)]
    pub no_start: bool,
    /// The hook shim that /etc/libvirt/hooks/network.d/virtmasq links to.
    #[arg(long, value_name = "PATH", default_value = HOOK_SHIM)]
    pub hook_shim: PathBuf,
}

/// Options of `teardown`.
#[derive(Debug, clap::Args)]
pub struct TeardownArgs {
    /// Work on the tree at DIR as if it were `/`; systemd is then left alone.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Do not stop virtmasq.service.
    #[arg(long)]
    pub no_stop: bool,
    /// Leave virtmasq.service enabled (package scripts whose own tools track enablement).
    #[arg(long)]
    pub keep_enabled: bool,
}

fn is_host(root: &Path) -> bool {
    root == Path::new("/")
}

/// Runs `setup`.
pub async fn exec_setup(cli: &Cli, args: &SetupArgs) -> anyhow::Result<()> {
    let cfg = cli.load_config()?;
    let layout = Layout {
        root: args.root.clone(),
        hook_shim: args.hook_shim.clone(),
    };
    let (mode, why) = if is_host(&args.root) {
        let (d, _) = detect(
            &cfg,
            &crate::host::Host {
                root: args.root.clone(),
                ..crate::host::Host::real()
            },
            Vec::new(),
        )
        .await;
        (d.decision.mode, d.decision.reasons.join("; "))
    } else {
        // No systemd to ask about another tree: only a forced mode is known.
        let mode = cfg.mode.forced().unwrap_or(Mode::Private);
        (mode, "from the configuration (--root)".to_owned())
    };
    let units = match is_host(&args.root) {
        true => Units::connect().await?,
        false => None,
    };
    let opts = SetupOptions {
        start: !args.no_start,
    };
    let mut report = setup::setup(&cfg, &layout, mode, units.as_ref(), opts).await?;
    let mode_name = match mode {
        Mode::System => "system mode",
        Mode::Private => "private mode",
    };
    report.notes.insert(0, format!("{mode_name}: {why}"));
    print_out(&report.to_text())
}

/// Runs `teardown`.
pub async fn exec_teardown(cli: &Cli, args: &TeardownArgs) -> anyhow::Result<()> {
    // A package must stay removable: a broken configuration falls back to the defaults.
    let cfg = cli.load_config().unwrap_or_else(|e| {
        tracing::warn!(error = %format!("{e:#}"), "using the default configuration for teardown");
        crate::config::Config::default()
    });
    let layout = Layout {
        root: args.root.clone(),
        hook_shim: PathBuf::from(HOOK_SHIM),
    };
    let units = match is_host(&args.root) {
        true => Units::connect().await?,
        false => None,
    };
    let opts = TeardownOptions {
        stop: !args.no_stop,
        disable: !args.keep_enabled,
    };
    let report = setup::teardown(&cfg, &layout, units.as_ref(), opts).await?;
    print_out(&report.to_text())
}
