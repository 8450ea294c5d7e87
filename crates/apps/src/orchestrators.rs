//! A workflow as code: estimate pi with rounds of a burst of `darts`, until
//! the estimate moves less than a tolerance (a loop that stops on a
//! convergence test), optionally waiting for an approval event at the end.
//! The orchestrator is replayed from its history after each round; it waits
//! for nothing while a round runs.

use serde::Deserialize;
use volley_sdk::orchestrate::{BurstRequest, Granularity, Interrupt, Orchestration, orchestrate};
use volley_sdk::serde_json::{Value, json};
use volley_sdk::{Worker, WorkerResult};

use crate::dataset::splitmix64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Darts {
    samples: u64,
    seed: u64,
}

/// Throws `samples` darts at the unit square (a stream of its own per rank and
/// seed); returns how many fell inside the quarter circle.
pub fn darts(w: &Worker) -> WorkerResult {
    let p: Darts = w.params_as()?;
    let mut state = splitmix64(p.seed ^ ((w.rank() as u64) << 32));
    let mut hits = 0u64;
    for _ in 0..p.samples.min(100_000_000) {
        state = splitmix64(state);
        let (x, y) = ((state >> 32) as f64 / u32::MAX as f64, (state & 0xffff_ffff) as f64 / u32::MAX as f64);
        if x * x + y * y <= 1.0 {
            hits += 1;
        }
    }
    Ok(json!({"hits": hits, "samples": p.samples}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Plan {
    #[serde(default = "four")]
    workers: usize,
    #[serde(default = "samples")]
    samples: u64,
    #[serde(default = "tolerance")]
    tolerance: f64,
    #[serde(default = "rounds")]
    max_rounds: u32,
    /// Wait for an event `pi.approve` (subject: the run's id) before ending.
    #[serde(default)]
    approval: bool,
    /// A fault drill: seeds from the clock, so a replay asks for other bursts
    /// than the one before, which the engine must refuse naming the line.
    #[serde(default)]
    drill_nondeterminism: bool,
}

fn four() -> usize {
    4
}
fn samples() -> u64 {
    200_000
}
fn tolerance() -> f64 {
    1e-3
}
fn rounds() -> u32 {
    20
}

fn seed(round: u32, from_clock: bool) -> u64 {
    if !from_clock {
        return round as u64;
    }
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// The orchestrator.
pub fn estimate_pi(w: &Worker) -> WorkerResult {
    orchestrate(w, |ctx: &Orchestration| {
        let plan: Plan = serde_json::from_value(ctx.input().clone()).map_err(|e| Interrupt::Other(e.to_string()))?;
        let (mut hits, mut thrown, mut last, mut estimates) = (0u64, 0u64, f64::NAN, Vec::new());
        for round in 0..plan.max_rounds {
            let request = BurstRequest {
                function: "darts".into(),
                workers: plan.workers,
                granularity: Granularity::Auto,
                transport: None,
                params: json!({"samples": plan.samples, "seed": seed(round, plan.drill_nondeterminism)}),
                worker_params: None,
                timeout_secs: Some(120.0),
                queue_timeout_secs: None,
                memory_mb: None,
                retries: None,
                idempotency_key: None,
                session: None,
            };
            let results = ctx.wait(ctx.burst(request))?;
            for r in results.as_array().into_iter().flatten() {
                hits += r["hits"].as_u64().unwrap_or(0);
                thrown += r["samples"].as_u64().unwrap_or(0);
            }
            let estimate = 4.0 * hits as f64 / thrown.max(1) as f64;
            estimates.push(estimate);
            if (estimate - last).abs() < plan.tolerance {
                break;
            }
            last = estimate;
        }
        // A map: one `hello` per round, packed into one burst, as a record of the rounds.
        let items: Vec<Value> = (0..estimates.len()).map(|i| json!({"round": i})).collect();
        let checked = ctx.wait(ctx.map("hello", items, Granularity::Auto))?;
        let approved = if plan.approval {
            let event = ctx.wait(ctx.wait_event("pi.approve", Some(ctx.run_id())))?;
            event["data"].clone()
        } else {
            Value::Null
        };
        Ok(json!({"pi": estimates.last(), "rounds": estimates.len(), "estimates": estimates,
                  "darts": thrown, "approved": approved, "mapped": checked.as_array().map(Vec::len)}))
    })
}
