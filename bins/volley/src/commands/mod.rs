//! One module per subcommand; no logic of their own.

mod bench;
mod bench_download;
mod bench_flow;
mod bench_genomics;
mod bench_load;
mod bench_network;
mod bench_pagerank;
mod bench_python;
mod bench_terasort;
mod bench_wasm;
mod bursts;
pub mod certificates;
mod data;
mod demo;
mod flows;
mod genomics;
mod output;
mod platform;
mod roles;
mod run;
mod serve;
mod show;
mod slurm;
mod startup;

use clap::{Parser, Subcommand};

pub use output::Output;

/// Which controller a command talks to, and as whom (the API key is passed
/// to the client explicitly, never through the environment).
#[derive(Clone, Default)]
pub struct Target {
    pub controller: Option<String>,
    pub api_key: Option<String>,
    /// A CA file trusted for an `https://` controller, besides the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Target {
    /// A client of the configured controller; an error saying how to name one if there is none.
    pub fn client(&self) -> anyhow::Result<volley_client::Client> {
        let url = self.controller.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "this command needs a running controller: pass --controller URL or set VOLLEY_CONTROLLER (`volley up` starts one)"
            )
        })?;
        self.client_at(url)
    }

    /// A client of the controller at `url` (an embedded one, say), with this target's key.
    pub fn client_at(&self, url: &str) -> anyhow::Result<volley_client::Client> {
        Ok(volley_client::Client::with_ca(url, self.api_key.as_deref(), self.ca_file.as_deref())?)
    }
}

#[derive(Parser)]
#[command(name = "volley", version, about = "A serverless platform for burst-parallel jobs")]
pub struct Cli {
    /// How results are printed.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// The controller's URL; without it, `run` starts an embedded platform for the command.
    #[arg(long, global = true, env = "VOLLEY_CONTROLLER")]
    controller: Option<String>,
    /// The API key (its namespace scopes what you see and run).
    #[arg(long, global = true, env = "VOLLEY_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// A CA certificate (PEM) that signed an https:// controller's certificate,
    /// trusted besides the system's roots (invokers hand it to their packs).
    #[arg(long, global = true, env = "VOLLEY_CA_FILE", value_name = "FILE")]
    ca_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one burst of a function and print every worker's result.
    Run(Box<run::RunArgs>),
    /// Run a whole job end to end (generate, run, validate), saying what happens.
    #[command(subcommand)]
    Demo(Box<demo::Demo>),
    /// Start a controller and a local invoker in this process.
    Up(Box<serve::UpArgs>),
    /// Start a controller (the API server).
    Controller(Box<serve::ControllerArgs>),
    /// Start an invoker that joins a controller.
    Invoker(Box<serve::InvokerCmdArgs>),
    /// Make a CA and a controller certificate it signed, for a controller that serves HTTPS.
    Certificates(certificates::CertificatesArgs),
    /// Deploy a function binary built with the Volley SDK.
    Deploy(bursts::DeployArgs),
    /// Inspect and cancel bursts.
    #[command(subcommand)]
    Bursts(bursts::Bursts),
    /// The functions bursts can run.
    #[command(subcommand)]
    Functions(bursts::Functions),
    /// Workflows of bursts: deploy DAGs, run them, follow and cancel runs.
    #[command(subcommand)]
    Flow(flows::Flow),
    /// Send and read events (CloudEvents) that triggers and workflows react to.
    #[command(subcommand)]
    Events(flows::Events),
    /// The triggers listening for events.
    #[command(subcommand)]
    Triggers(flows::Triggers),
    /// Events on a schedule.
    #[command(subcommand)]
    Timers(flows::Timers),
    /// Events from outside: objects that appear under a storage prefix.
    #[command(subcommand)]
    Sources(flows::Sources),
    /// Generate and validate data sets for the built-in jobs.
    #[command(subcommand)]
    Data(data::Data),
    /// Variant calling: as a burst (call), or on this machine alone (baseline).
    #[command(subcommand)]
    Genomics(Box<genomics::Genomics>),
    /// Run invokers in Slurm allocations: up, down, grow, shrink, status.
    #[command(subcommand)]
    Slurm(slurm::SlurmCmd),
    /// Measure Volley against the raw limits of this machine.
    #[command(subcommand)]
    Bench(bench::Bench),
    /// Internal: the process an invoker starts for one pack of a built-in function.
    #[command(hide = true)]
    Pack,
}

impl Cli {
    pub fn run(self) -> anyhow::Result<()> {
        let target = Target { controller: self.controller, api_key: self.api_key, ca_file: self.ca_file };
        match self.command {
            Command::Run(args) => run::run(*args, &target, self.output),
            Command::Demo(d) => d.run(&target, self.output),
            Command::Up(mut args) => {
                args.platform.invoker.ca_file = target.ca_file.clone();
                serve::up(*args)
            }
            Command::Controller(args) => serve::controller(*args),
            Command::Invoker(mut args) => {
                args.invoker.ca_file = target.ca_file.clone();
                serve::invoker(*args)
            }
            Command::Certificates(c) => c.run(),
            Command::Deploy(d) => d.run(&target, self.output),
            Command::Bursts(b) => b.run(&target, self.output),
            Command::Functions(f) => f.run(&target, self.output),
            Command::Flow(f) => f.run(&target, self.output),
            Command::Events(e) => e.run(&target, self.output),
            Command::Triggers(t) => t.run(&target, self.output),
            Command::Timers(t) => t.run(&target, self.output),
            Command::Sources(s) => s.run(&target, self.output),
            Command::Data(d) => d.run(self.output),
            Command::Genomics(g) => g.run(&target, self.output),
            Command::Bench(b) => b.run(&target, self.output),
            Command::Slurm(s) => s.run(self.output),
            // main() serves packs before parsing; reaching here means a misplaced argument.
            Command::Pack => anyhow::bail!("`volley pack` is started by an invoker, not by hand"),
        }
    }
}
