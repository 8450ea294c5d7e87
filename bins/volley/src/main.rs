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
    // The launcher of a sandboxed pack (ADR 0008): before anything starts a
    // thread, as its new namespaces need a single-threaded process.
    if std::env::args().nth(1).as_deref() == Some("sandbox-exec") {
        let launched = volley_sandbox::launch::Launch::parse(std::env::args_os().skip(2)).and_then(|l| l.run());
        return match launched {
            Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX)),
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(volley_sandbox::launch::SETUP_FAILED as u8)
            }
        };
    }
    // WebAssembly packs (issue 15): the invoker compiles a module once with
    // `wasm-compile MODULE ARTIFACT`, has its snapshot made once with
    // `wasm-snapshot ARTIFACT DIR`, and starts each pack with `wasm-pack ARTIFACT [IMAGE]`.
    if let Some(command @ ("wasm-pack" | "wasm-compile" | "wasm-snapshot")) = std::env::args().nth(1).as_deref() {
        return wasm(command, std::env::args_os().skip(2).collect());
    }
    match commands::Cli::parse().run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "wasm")]
fn wasm(command: &str, args: Vec<std::ffi::OsString>) -> ExitCode {
    use std::path::Path;
    match (command, args.as_slice()) {
        ("wasm-pack", [artifact]) => ExitCode::from(volley_wasm_host::serve(Path::new(artifact), None)),
        ("wasm-pack", [artifact, image]) => {
            ExitCode::from(volley_wasm_host::serve(Path::new(artifact), Some(Path::new(image))))
        }
        ("wasm-snapshot", [artifact, dir]) => {
            ExitCode::from(volley_wasm_host::make_snapshot(Path::new(artifact), Path::new(dir)))
        }
        ("wasm-compile", [module, artifact]) => match volley_wasm_host::compile(Path::new(module), Path::new(artifact))
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!(
                "usage (run by the invoker): volley wasm-compile MODULE ARTIFACT | volley wasm-snapshot ARTIFACT DIR | \
                 volley wasm-pack ARTIFACT [IMAGE]"
            );
            ExitCode::from(2)
        }
    }
}

#[cfg(not(feature = "wasm"))]
fn wasm(_command: &str, _args: Vec<std::ffi::OsString>) -> ExitCode {
    eprintln!("{}", volley_proto::pack::NO_WASM);
    ExitCode::FAILURE
}
