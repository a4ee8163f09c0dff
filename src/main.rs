//! The `virtmasq` binary: parse the command line, run the verb, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use virtmasq::cli::{self, Cli, Command};
use virtmasq::{commands, exit};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli::start(&cli) {
        Ok(runtime) => cli::finish("virtmasq", runtime.block_on(run(&cli))),
        Err(e) => {
            eprintln!("virtmasq: cannot start the runtime: {e}");
            ExitCode::from(exit::SOFTWARE)
        }
    }
}

async fn run(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Daemon(args) => commands::daemon::exec(cli, args).await,
        Command::Detect(args) => commands::detect::exec(cli, args).await,
        Command::Sync(args) => commands::sync::exec(cli, args).await,
        Command::Status(args) => commands::status::exec(cli, args).await,
        Command::Filter(args) => commands::filter::exec(cli, args).await,
        Command::Render(args) => commands::render::exec(cli, args).await,
        Command::CheckConfig => commands::check_config::exec(cli),
        Command::Hook(args) => commands::hook::exec(cli, args).await,
        Command::Adopt(args) => commands::adopt::exec_adopt(cli, args).await,
        Command::Release(args) => commands::adopt::exec_release(cli, args).await,
        Command::Setup(args) => commands::setup::exec_setup(cli, args).await,
        Command::Teardown(args) => commands::setup::exec_teardown(cli, args).await,
        Command::Generate(args) => commands::generate::exec(args),
    }
}
