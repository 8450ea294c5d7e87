//! `handoff`: each even worker of a pack hands `bytes` to the next one,
//! `rounds` times, one message at a time (the receiver answers each); the
//! receiver returns each message's time from send to arrival, every byte
//! checked. The native side of `volley bench wasm`'s in-pack hand-off
//! (`examples/wasm-tour`'s `wasm_handoff` does the same in WebAssembly).

use std::sync::OnceLock;
use std::time::Instant;

use bytes::Bytes;
use serde::Deserialize;
use volley_sdk::serde_json::json;
use volley_sdk::{Worker, WorkerResult};

use crate::exchange::fill;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    bytes: usize,
    #[serde(default = "twenty")]
    rounds: usize,
}

fn twenty() -> usize {
    20
}

/// The clock both workers of a pair read (they are threads of one process).
static EPOCH: OnceLock<Instant> = OnceLock::new();

fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

pub fn handoff(w: &Worker) -> WorkerResult {
    let p: Params = w.params_as()?;
    let bytes = p.bytes.max(8);
    let (c, rank) = (w.comm(), w.rank());
    let local = rank - c.pack_ranks().start;
    let partner = if local % 2 == 0 { rank + 1 } else { rank - 1 };
    if !c.pack_ranks().contains(&partner) {
        return Ok(json!({ "rank": rank }));
    }
    let mut latencies = Vec::new();
    // The sender fills the next message while the receiver checks the last
    // one, and sends it as soon as the receiver answers: the receiver is
    // then still waiting actively, and the time is the hand-off's alone.
    let make = |round: usize| vec![fill(rank, partner, round); bytes];
    let mut next = (local % 2 == 0).then(|| make(0));
    for round in 0..p.rounds {
        if let Some(mut buffer) = next.take() {
            buffer[..8].copy_from_slice(&now_ns().to_le_bytes());
            c.send(partner, 5, Bytes::from(buffer))?;
            next = (round + 1 < p.rounds).then(|| make(round + 1));
            c.recv(partner, 6)?;
        } else if local % 2 == 0 {
            break;
        } else {
            let got = c.recv(partner, 5)?;
            let sent = u64::from_le_bytes(got[..8].try_into().unwrap_or_default());
            latencies.push(now_ns().saturating_sub(sent) as f64 / 1e3);
            let want = fill(partner, rank, round);
            if got.len() != bytes || got[8..].iter().any(|b| *b != want) {
                return Err(format!("hand-off round {round}: the message from rank {partner} changed").into());
            }
            // Freed before the answer, so that the next message's time does not count it.
            drop(got);
            c.send(partner, 6, Bytes::new())?;
        }
    }
    Ok(json!({ "rank": rank, "latencies_us": latencies }))
}
