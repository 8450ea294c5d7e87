//! The pi example as a WebAssembly module: every worker throws `samples`
//! darts at the unit square with the same generator as `examples/pi` (so a
//! rank hits as often in either), the workers add up their hits with one
//! `all_reduce`, and each returns the estimate of pi.
//!
//! ```text
//! cargo build --release --target wasm32-wasip1-threads --manifest-path examples/wasm-pi/Cargo.toml
//! volley deploy pi examples/wasm-pi/target/wasm32-wasip1-threads/release/wasm-pi.wasm
//! volley run pi --workers 64 --granularity 16 --params '{"samples": 1000000}'
//! ```

use serde::Deserialize;
use volley_wasm::serde_json::json;
use volley_wasm::{Op, Worker, WorkerResult};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default = "default_samples")]
    samples: u64,
    /// Makes this rank fail, to show how a failure ends the burst.
    #[serde(default)]
    fail_rank: Option<usize>,
}

fn default_samples() -> u64 {
    100_000
}

fn pi(w: &Worker) -> WorkerResult {
    let p: Params = w.params_as()?;
    if p.fail_rank == Some(w.rank()) {
        return Err(format!("rank {} was asked to fail", w.rank()).into());
    }
    // xorshift64*, seeded by rank: reproducible and different on every worker.
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ (w.rank() as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    };
    let hits = (0..p.samples).filter(|_| {
        let (x, y) = (next(), next());
        x * x + y * y <= 1.0
    });
    let hits = hits.count() as u64;
    let total = w.comm().all_reduce(&[hits, p.samples], Op::Sum)?;
    Ok(json!({ "rank": w.rank(), "hits": hits, "pi": 4.0 * total[0] as f64 / total[1] as f64 }))
}

volley_wasm::main!(pi);
