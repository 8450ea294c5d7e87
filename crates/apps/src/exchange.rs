//! `exchange`: every worker sends `bytes` to every worker in one `all_to_all`,
//! `rounds` times, and checks every byte that arrives. The Rust side of
//! `volley bench python`'s comparison: Python workers do the same exchange
//! (`python/volley/bench.py`), so the two are timed the same way.

use std::time::Instant;

use bytes::Bytes;
use serde::Deserialize;
use volley_sdk::serde_json::json;
use volley_sdk::{Worker, WorkerResult};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    bytes: usize,
    #[serde(default = "five")]
    rounds: usize,
}

fn five() -> usize {
    5
}

/// The byte every position of the part from `src` to `dst` holds in `round`
/// (bench.py fills its arrays the same way).
pub fn fill(src: usize, dst: usize, round: usize) -> u8 {
    ((src * 31 + dst * 7 + round) % 251) as u8
}

pub fn exchange(w: &Worker) -> WorkerResult {
    let p: Params = w.params_as()?;
    let (rank, n) = (w.rank(), w.size());
    let mut seconds = Vec::with_capacity(p.rounds);
    for round in 0..p.rounds {
        let parts: Vec<Bytes> = (0..n).map(|dst| Bytes::from(vec![fill(rank, dst, round); p.bytes])).collect();
        w.comm().barrier()?;
        let start = Instant::now();
        let got = w.comm().all_to_all(parts)?;
        seconds.push(start.elapsed().as_secs_f64());
        for (src, part) in got.iter().enumerate() {
            let want = fill(src, rank, round);
            if part.len() != p.bytes || part.iter().any(|b| *b != want) {
                return Err(format!("round {round}: the part from rank {src} is not what it sent").into());
            }
        }
    }
    Ok(json!({ "seconds": seconds }))
}
