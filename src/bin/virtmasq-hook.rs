//! `virtmasq-hook`: libvirt's network hook alone, in a binary that does not load libvirt.
//!
//! libvirtd waits for its hooks, and loading libvirt's shared objects (and everything they pull
//! in) was most of the hook's time; the hook never calls libvirt. It takes the same arguments
//! as `virtmasq [--config FILE] [--log-level F] hook network ...`.

use std::process::ExitCode;

use clap::Parser;
use virtmasq::cli::{self, Cli, Command};
use virtmasq::{commands, exit};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Command::Hook(args) = &cli.command else {
        eprintln!("virtmasq-hook: only the `hook` verb runs here; use virtmasq");
        return ExitCode::from(2);
    };
    match cli::start(&cli) {
        Ok(runtime) => cli::finish(
            "virtmasq-hook",
            runtime.block_on(commands::hook::exec(&cli, args)),
        ),
        Err(e) => {
            eprintln!("virtmasq-hook: cannot start the runtime: {e}");
            ExitCode::from(exit::SOFTWARE)
        }
    }
}
