//! `virtmasq generate man|completions <shell>`: the manual page and shell completions, made
//! from the command line's own definition so they never drift from it. Packagers run these at
//! build time (see `packaging/build-deb.sh` and `packaging/rpm/virtmasq.spec`).

use std::io::Write;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// Options of `generate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to generate.
    #[command(subcommand)]
    pub what: What,
}

/// The generated artefacts.
#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// The manual page virtmasq(1), in roff, printed to standard output.
    Man,
    /// A completion script for a shell, printed to standard output.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: Shell,
    },
}

/// Prints or writes what was asked for.
pub fn exec(args: &Args) -> anyhow::Result<()> {
    let cmd = Cli::command();
    match &args.what {
        What::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut page)
                .context("rendering the manual page")?;
            write_stdout(&page)
        }
        What::Completions { shell } => {
            let mut script = Vec::new();
            let mut cmd = cmd;
            clap_complete::generate(*shell, &mut cmd, "virtmasq", &mut script);
            write_stdout(&script)
        }
    }
}

fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r.context("writing to standard output")?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_page_names_every_command() {
        let mut page = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .render(&mut page)
            .unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(page.starts_with(".ie \\n(.g .ds Aq"), "{}", &page[..80]);
        for verb in ["daemon", "detect", "setup", "teardown", "generate"] {
            assert!(page.contains(verb), "{verb} missing from the man page");
        }
    }

    #[test]
    fn completions_for_every_shell() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "virtmasq", &mut script);
            let script = String::from_utf8(script).unwrap();
            assert!(script.contains("teardown"), "{shell}: {script}");
        }
    }
}
