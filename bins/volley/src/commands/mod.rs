//! One module per subcommand; no logic of their own.

mod bench;
mod output;

use clap::{Parser, Subcommand};

pub use output::Output;

#[derive(Parser)]
#[command(name = "volley", version, about = "A serverless platform for burst-parallel jobs")]
pub struct Cli {
    /// How results are printed.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure Volley against the raw limits of this machine.
    #[command(subcommand)]
    Bench(bench::Bench),
}

impl Cli {
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Bench(b) => b.run(self.output),
        }
    }
}
