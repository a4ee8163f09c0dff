//! `virtmasq-hook`: libvirt's network hook alone, in a binary that does not load libvirt.
//!
//! libvirtd waits for its hooks, and loading libvirt's shared objects (and everything they pull
//! in) was most of the hook's time; the hook never calls libvirt. It takes the same arguments
//! as `virtmasq [--config FILE] [--log-level F] hook network ...`.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use virtmasq::cli::{Cli, Command};
use virtmasq::{commands, exit};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_new(&cli.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let Command::Hook(args) = &cli.command else {
        eprintln!("virtmasq-hook: only the `hook` verb runs here; use virtmasq");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("virtmasq-hook: cannot start the runtime: {e}");
            return ExitCode::from(exit::SOFTWARE);
        }
    };
    match runtime.block_on(commands::hook::exec(&cli, args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("virtmasq-hook: {}", exit::message(&e));
            ExitCode::from(exit::code_for(&e))
        }
    }
}
