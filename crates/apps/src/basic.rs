//! Small functions that show the platform works: who am I, wait, talk.

use std::time::Duration;

use serde::Deserialize;
use volley_sdk::serde_json::json;
use volley_sdk::{Op, Worker, WorkerResult};

pub fn hello(w: &Worker) -> WorkerResult {
    let mut out = json!({ "rank": w.rank(), "size": w.size(), "pack": w.pack(), "host": w.host() });
    if let Some(key) = w.idempotency_key() {
        out["idempotency_key"] = json!(key);
    }
    Ok(out)
}

/// `sleep` waits; its other parameters are fault drills for the platform's tests.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SleepParams {
    /// How long each worker sleeps (a worker's own `seconds` in `worker_params` wins).
    #[serde(default = "one_second")]
    seconds: f64,
    #[serde(default)]
    fail_rank: Option<usize>,
    #[serde(default)]
    panic_rank: Option<usize>,
    /// With `fail_rank`: fail only in the first this-many attempts (retry drills).
    #[serde(default)]
    fail_attempts: Option<u32>,
    /// This rank ends its whole pack process with `exit_code`, after sleeping
    /// and after `exit_after_barriers` of the `barriers`.
    #[serde(default)]
    exit_rank: Option<usize>,
    #[serde(default)]
    exit_after_barriers: u64,
    /// This rank reports its result, then its pack process exits with `exit_code`.
    #[serde(default)]
    exit_rank_after_result: Option<usize>,
    #[serde(default = "default_exit_code")]
    exit_code: i32,
    /// After sleeping, every worker passes this many barriers with all the
    /// others: collectives in progress, messages between packs all the time.
    #[serde(default)]
    barriers: u64,
    /// Each worker writes 1 MiB of object `part-RANK` here before sleeping and
    /// finishes the write after its barriers: a pack killed meanwhile dies mid-write.
    #[serde(default)]
    write_to: Option<String>,
    /// After sleeping, rank 0 writes one empty object of a fresh name here:
    /// one object per execution (exactly-once drills count them).
    #[serde(default)]
    record_to: Option<String>,
    /// Ignored: what a workflow's step read from earlier steps, kept in its
    /// burst's request for whoever checks it.
    #[serde(default, rename = "note")]
    _note: serde_json::Value,
}

fn one_second() -> f64 {
    1.0
}

fn default_exit_code() -> i32 {
    17
}

/// A name no other execution picks: the clock and the process.
fn rand_name() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    crate::dataset::splitmix64(nanos as u64 ^ ((std::process::id() as u64) << 40))
}

pub fn sleep(w: &Worker) -> WorkerResult {
    let p: SleepParams = w.params_as()?;
    let seconds = w.worker_params().get("seconds").and_then(|s| s.as_f64()).unwrap_or(p.seconds);
    if !(0.0..=86_400.0).contains(&seconds) {
        return Err(format!("seconds must be between 0 and 86400, got {seconds}").into());
    }
    if p.fail_rank == Some(w.rank()) && p.fail_attempts.is_none_or(|n| w.attempt() <= n) {
        return Err(format!("rank {} failed on purpose (fail_rank, attempt {})", w.rank(), w.attempt()).into());
    }
    if p.panic_rank == Some(w.rank()) {
        panic!("rank {} panicked on purpose (panic_rank)", w.rank());
    }
    if p.exit_rank_after_result == Some(w.rank()) {
        let code = p.exit_code;
        // Long enough for the result to reach the invoker first.
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            std::process::exit(code);
        });
    }
    let writing = match &p.write_to {
        Some(url) => {
            let storage = w.storage(url)?;
            let mut writer = w.block_on(storage.writer(&format!("part-{:05}", w.rank())))?;
            w.block_on(writer.write(&vec![b'x'; 1 << 20]))?;
            Some(writer)
        }
        None => None,
    };
    w.log(format_args!("sleeping {seconds} s"));
    // Phases, as a job marks them: the dashboard's tests watch them arrive live.
    w.phase("sleep");
    std::thread::sleep(Duration::from_secs_f64(seconds));
    w.phase("barriers");
    for round in 0..=p.barriers {
        if p.exit_rank == Some(w.rank()) && round == p.exit_after_barriers {
            w.log(format_args!("exiting the pack process with status {} (exit_rank)", p.exit_code));
            std::process::exit(p.exit_code);
        }
        if round < p.barriers {
            w.comm().barrier()?;
        }
    }
    if let Some(writer) = writing {
        w.block_on(writer.finish())?;
    }
    // The record's name is in the result too: an output that differs from
    // one execution to the next, as a nondeterministic step's does.
    let mut recorded = None;
    if let (Some(url), 0) = (&p.record_to, w.rank()) {
        let name = format!("run-{:016x}", rand_name());
        w.block_on(w.storage(url)?.put(&name, bytes::Bytes::new()))?;
        recorded = Some(name);
    }
    Ok(json!({ "rank": w.rank(), "slept": seconds, "recorded": recorded }))
}

pub fn sum(w: &Worker) -> WorkerResult {
    let value = match w.worker_params().get("value").or_else(|| w.params().get("value")) {
        Some(v) => v.as_f64().ok_or("value must be a number")?,
        None => w.rank() as f64,
    };
    let total = w.comm().all_reduce(&[value], Op::Sum)?;
    Ok(json!({ "rank": w.rank(), "sum": total[0] }))
}
