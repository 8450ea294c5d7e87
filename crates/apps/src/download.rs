//! `download`: every worker needs the same object (a model, a reference
//! genome, a lookup table). Alone, each worker fetches all of it; with
//! `cooperative`, the workers of a pack fetch one byte range each and share
//! the pieces in memory, so the pack pulls the object once.

use std::time::Instant;

use serde::Deserialize;
use volley_sdk::serde_json::json;
use volley_sdk::{Worker, WorkerResult, cooperative_get};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Storage URL (`file:///dir`, `s3://bucket/prefix`).
    storage: String,
    /// The object's key under it.
    key: String,
    #[serde(default)]
    cooperative: bool,
}

/// A point-to-point tag no other part of this function uses.
const PIECES_TAG: u64 = 0xD0_1A_D0;

pub fn download(w: &Worker) -> WorkerResult {
    let p: Params = w.params_as()?;
    let storage = w.storage(&p.storage)?;
    let started = Instant::now();
    let (bytes, checksum) = if p.cooperative {
        let chunks = cooperative_get(&storage, &p.key, w.comm(), PIECES_TAG, w.runtime())?;
        let sum = chunks.0.iter().flat_map(|c| c.iter()).fold(0u64, |s, b| s.wrapping_add(*b as u64));
        (chunks.len(), sum)
    } else {
        let all = w.block_on(storage.get(&p.key))?;
        (all.len(), all.iter().fold(0u64, |s, b| s.wrapping_add(*b as u64)))
    };
    Ok(json!({
        "rank": w.rank(),
        "bytes": bytes,
        "checksum": checksum,
        "pulled_bytes": storage.pulled_bytes(),
        "ms": started.elapsed().as_secs_f64() * 1e3,
    }))
}
