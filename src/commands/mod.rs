//! One module per verb: an `Args` struct and an `exec` function.

pub mod adopt;
pub mod check_config;
pub mod daemon;
pub mod detect;
pub mod filter;
pub mod generate;
pub mod hook;
pub mod render;
pub mod setup;
pub mod status;
pub mod sync;
