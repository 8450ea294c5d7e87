//! The `volley` command: thin subcommands over the library crates.

mod commands;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // The process an invoker starts for a pack of a built-in function: no CLI parsing,
    // so that its exit code tells the invoker how it ended.
    if std::env::args().nth(1).as_deref() == Some("pack") {
        if std::env::args().any(|a| a == volley_proto::pack::PYTHON_WORKERS_ARG) {
            volley_pyworkers::prestart();
        }
        return volley_sdk::serve(volley_apps::builtins());
    }
    match commands::Cli::parse().run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
