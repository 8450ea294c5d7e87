//! WebAssembly packs against native ones (issue 15), on a running platform:
//! the pi function's compute time, an in-pack hand-off of one message at a
//! time, and all_to_all, each measured with the native built-in or example
//! and with its WebAssembly twin (`examples/wasm-tour`, `examples/wasm-pi`)
//! in the same run; every message's bytes are checked by the functions.
//! Warm start and idle memory come from `volley bench wasm`'s start-up rows
//! ([`super::startup`], [`idle_kb`]).

use std::time::Duration;

use serde_json::{Value, json};
use volley_client::Client;
use volley_proto::api::Burst;

use super::{Mode, job_request, run_job};
use crate::stats::Percentiles;
use crate::{Error, Result};

/// The WebAssembly twins of the native functions, as `examples/wasm-tour` names them.
pub const WASM_HANDOFF: &str = "wasm_handoff";
pub const WASM_EXCHANGE: &str = "wasm_exchange";
/// The tour's sleeping function, which start-up bursts run.
pub const WASM_NAP: &str = "nap";

/// Deploys `module` under each of `names` (a module serves each function under its own name).
pub async fn deploy(client: &Client, module: &[u8], names: &[&str]) -> Result<()> {
    for name in names {
        client.deploy(name, "volley bench wasm", module.to_vec()).await?;
    }
    Ok(())
}

/// The slowest worker's compute time (its start to its end) in a burst of `function`.
pub async fn pi_ms(client: &Client, function: &str, workers: usize, g: usize, samples: u64) -> Result<f64> {
    let burst =
        run_job(client, &job_request(function, workers, &Mode::burst(g), json!({ "samples": samples }))).await?;
    let computed = burst
        .workers
        .iter()
        .map(|w| match (w.started_at, w.finished_at) {
            (Some(s), Some(f)) => Ok(f.saturating_sub(s) as f64 / 1e3),
            _ => Err(Error::Invalid(format!("burst {}: worker {} has no start or end", burst.id, w.rank))),
        })
        .collect::<Result<Vec<f64>>>()?;
    let hits: u64 = burst.workers.iter().filter_map(|w| w.result.as_ref()?["hits"].as_u64()).sum();
    if hits == 0 || hits > samples * workers as u64 {
        return Err(Error::Invalid(format!("burst {}: {hits} hits of {samples} samples × {workers}", burst.id)));
    }
    Ok(computed.into_iter().fold(0.0, f64::max))
}

fn floats(burst: &Burst, key: &str) -> Vec<Vec<f64>> {
    burst
        .workers
        .iter()
        .filter_map(|w| w.result.as_ref()?.get(key)?.as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()))
        .collect()
}

/// Send-to-arrival of each message handed from one worker to another of the
/// same pack (`workers` in one pack, in pairs; 2: one pair, alone on the
/// machine), over every pair and round.
pub async fn handoff(
    client: &Client,
    function: &str,
    workers: usize,
    bytes: usize,
    rounds: usize,
    copy: bool,
) -> Result<Percentiles> {
    let mut params = json!({ "bytes": bytes, "rounds": rounds });
    if copy {
        params["copy"] = json!(true);
    }
    let burst = run_job(client, &job_request(function, workers, &Mode::burst(workers), params)).await?;
    let latencies: Vec<Duration> =
        floats(&burst, "latencies_us").into_iter().flatten().map(|us| Duration::from_secs_f64(us / 1e6)).collect();
    if latencies.len() != workers / 2 * rounds {
        return Err(Error::Invalid(format!(
            "burst {}: {} hand-offs timed, not {}",
            burst.id,
            latencies.len(),
            workers / 2 * rounds
        )));
    }
    Ok(Percentiles::of(&latencies))
}

/// Each round's time of the slowest worker in an all_to_all of `bytes` per pair.
pub async fn exchange(
    client: &Client,
    function: &str,
    workers: usize,
    g: usize,
    bytes: usize,
    rounds: usize,
) -> Result<Percentiles> {
    let burst =
        run_job(client, &job_request(function, workers, &Mode::burst(g), json!({ "bytes": bytes, "rounds": rounds })))
            .await?;
    let per_worker = floats(&burst, "seconds");
    if per_worker.len() != workers || per_worker.iter().any(|s| s.len() != rounds) {
        return Err(Error::Invalid(format!("burst {}: not every worker timed {rounds} rounds", burst.id)));
    }
    let slowest: Vec<Duration> =
        (0..rounds).map(|r| Duration::from_secs_f64(per_worker.iter().map(|s| s[r]).fold(0.0, f64::max))).collect();
    Ok(Percentiles::of(&slowest))
}

/// Proportional memory (PSS, kB) of every process descended from this one:
/// the embedded platform's pack processes (with their sandbox launchers).
pub fn idle_kb() -> u64 {
    let me = std::process::id();
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // The parent is the second field after the command's closing parenthesis.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parents.push((pid, ppid));
        }
    }
    let mut family = vec![me];
    let mut grew = true;
    while grew {
        grew = false;
        for (pid, ppid) in &parents {
            if family.contains(ppid) && !family.contains(pid) {
                family.push(*pid);
                grew = true;
            }
        }
    }
    family
        .iter()
        .filter(|pid| **pid != me)
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok())
        .filter_map(|rollup| {
            rollup.lines().find(|l| l.starts_with("Pss:"))?.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum()
}
