//! The trainer's subcommands.
pub mod gpt;
pub mod mnist;
