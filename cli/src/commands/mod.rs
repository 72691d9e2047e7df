//! One module per group of subcommands.

pub mod agent;
pub mod apply;
pub mod drain;
pub mod images;
pub mod logs;
pub mod monitor;
pub mod plan;
pub mod read;
pub mod rollout;
pub mod tokens;
pub mod write;
