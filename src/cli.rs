//! The command line: one subcommand per verb, each in `commands/`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::commands;
use crate::config::{Config, DEFAULT_PATH};

/// DHCP, DNS and PXE for libvirt virtual networks from dnsmasq.
#[derive(Debug, Parser)]
#[command(name = "virtmasq", version, about, propagate_version = true)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log filter (error, warn, info, debug, trace, or tracing's directive syntax).
    #[arg(long, global = true, default_value = "info", value_name = "FILTER")]
    pub log_level: String,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run in the foreground, keeping every managed network served.
    Daemon(commands::daemon::Args),
    /// Find the system dnsmasq, say what it is and which mode follows.
    Detect(commands::detect::Args),
    /// The PXE MAC filter: allow, deny, forget, list, sync, unknown.
    Filter(commands::filter::Args),
    /// What is served, by which dnsmasq, from which file; the last errors.
    Status(commands::status::Args),
    /// Apply the desired state once and exit (scripts, the libvirt hook).
    Sync(commands::sync::Args),
    /// Print what would be written for one network, without writing anything.
    Render(commands::render::Args),
    /// Check the configuration file and print it with every default filled in.
    CheckConfig,
    /// libvirt's hook: `hook network <net> <op> <subop> <extra>`, <hookData> XML on stdin.
    Hook(commands::hook::Args),
    /// Move a network that libvirt serves itself over to virtmasq.
    Adopt(commands::adopt::Args),
    /// Give an adopted network back to libvirt, exactly as it was before `adopt`.
    Release(commands::adopt::Args),
    /// Prepare this host for virtmasq (package scripts run it; idempotent).
    ///
    /// The state directory, the libvirt hook, the PXE filter's dnsmasq drop-in (filter on, system
    /// mode), a systemd reload when a unit changed, virtmasq.service enabled and started.
    /// Running it again changes nothing.
    Setup(commands::setup::SetupArgs),
    /// Undo `setup` (package scripts run it on removal; idempotent).
    ///
    /// virtmasq.service stopped and disabled, the hook and the drop-in removed, virtmasq's
    /// fragments removed from the system dnsmasq's configuration and dnsmasq restarted on what
    /// remains. State (leases, the filter's policy) stays.
    Teardown(commands::setup::TeardownArgs),
    /// Print the manual page or a shell completion script (for packagers).
    Generate(commands::generate::Args),
}

impl Cli {
    /// The configuration path and whether it was given explicitly.
    pub fn config_path(&self) -> (PathBuf, bool) {
        match &self.config {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from(DEFAULT_PATH), false),
        }
    }

    /// Loads the configuration (built-in defaults when the default file is absent).
    pub fn load_config(&self) -> anyhow::Result<Config> {
        let (path, explicit) = self.config_path();
        Ok(Config::load_or_default(&path, explicit)?)
    }
}

/// Writes `text` to standard output. A reader that went away (`virtmasq detect | head`) is
/// not an error.
pub fn print_out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// What both binaries (`virtmasq`, `virtmasq-hook`) do before running a verb: log to stderr
/// at the command line's level, and build the one-thread runtime. One thread: private dnsmasq
/// children are tied to the forking thread's life by `PR_SET_PDEATHSIG`, so they must be forked
/// from the thread that lives as long as the agent.
pub fn start(cli: &Cli) -> std::io::Result<tokio::runtime::Runtime> {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Ends a verb: success, or the error's message on stderr and its exit code.
pub fn finish(program: &str, result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {}", crate::exit::message(&e));
            std::process::ExitCode::from(crate::exit::code_for(&e))
        }
    }
}
