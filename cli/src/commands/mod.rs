//! One module per group of subcommands.

pub mod agent;
pub mod apply;
pub mod logs;
pub mod read;
pub mod write;
