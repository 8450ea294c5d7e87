//! The `volley` command: thin subcommands over the library crates.

mod commands;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    commands::Cli::parse().run()
}
