//! One module per verb: an `Args` struct and an `exec` function.

pub mod check_config;
pub mod daemon;
pub mod detect;
pub mod render;
pub mod sync;
