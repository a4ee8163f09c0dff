//! The `virtmasq` binary: parse the command line, run the verb, map errors to exit codes.

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
    // One thread: private dnsmasq children are tied to the forking thread's life by
    // PR_SET_PDEATHSIG, so they must be forked from the thread that lives as long as the agent.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("virtmasq: cannot start the runtime: {e}");
            return ExitCode::from(exit::SOFTWARE);
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("virtmasq: {}", exit::message(&e));
            ExitCode::from(exit::code_for(&e))
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
