//! Small functions that show the platform works: who am I, wait, talk.

use std::time::Duration;

use serde::Deserialize;
use volley_sdk::serde_json::json;
use volley_sdk::{Op, Worker, WorkerResult};

pub fn hello(w: &Worker) -> WorkerResult {
    Ok(json!({ "rank": w.rank(), "size": w.size(), "pack": w.pack(), "host": w.host() }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SleepParams {
    #[serde(default = "one_second")]
    seconds: f64,
    #[serde(default)]
    fail_rank: Option<usize>,
    #[serde(default)]
    panic_rank: Option<usize>,
    /// With `fail_rank`: fail only in the first this-many attempts (retry drills).
    #[serde(default)]
    fail_attempts: Option<u32>,
}

fn one_second() -> f64 {
    1.0
}

pub fn sleep(w: &Worker) -> WorkerResult {
    let p: SleepParams = w.params_as()?;
    if !(0.0..=86_400.0).contains(&p.seconds) {
        return Err(format!("seconds must be between 0 and 86400, got {}", p.seconds).into());
    }
    if p.fail_rank == Some(w.rank()) && p.fail_attempts.is_none_or(|n| w.attempt() <= n) {
        return Err(format!("rank {} failed on purpose (fail_rank, attempt {})", w.rank(), w.attempt()).into());
    }
    if p.panic_rank == Some(w.rank()) {
        panic!("rank {} panicked on purpose (panic_rank)", w.rank());
    }
    w.log(format_args!("sleeping {} s", p.seconds));
    std::thread::sleep(Duration::from_secs_f64(p.seconds));
    Ok(json!({ "rank": w.rank(), "slept": p.seconds }))
}

pub fn sum(w: &Worker) -> WorkerResult {
    let value = match w.worker_params().get("value").or_else(|| w.params().get("value")) {
        Some(v) => v.as_f64().ok_or("value must be a number")?,
        None => w.rank() as f64,
    };
    let total = w.comm().all_reduce(&[value], Op::Sum)?;
    Ok(json!({ "rank": w.rank(), "sum": total[0] }))
}
