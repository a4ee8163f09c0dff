//! `virtmasq check-config`: validate the configuration and show it with defaults filled in.

use crate::cli::{print_out, Cli};

/// Prints the effective configuration as TOML.
pub fn exec(cli: &Cli) -> anyhow::Result<()> {
    let cfg = cli.load_config()?;
    print_out(&toml::to_string_pretty(&cfg)?)
}
