//! Benchmarks with one OS process per pack, as the platform will run them.
//! The parent starts this program once per pack; each child connects its pack
//! (addresses meet in a Redis hash), runs its workers and prints its ranks'
//! results as one JSON line.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use volley_comm::{CommStats, Layout, Pack, PackOptions, RedisRendezvous};

use crate::comm::{CommBench, Measured, measure};
use crate::{Error, Result};

/// The environment variable that carries a child's [`PackSpec`] (JSON).
pub const SPEC_ENV: &str = "VOLLEY_PACK_SPEC";

/// Everything one pack process needs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PackSpec {
    pub bench: CommBench,
    pub burst: String,
    pub secret: Vec<u8>,
    pub pack: usize,
}

type RankResult = (Measured, CommStats);

/// How long a pack process may take in all.
const CHILD_TIMEOUT: Duration = Duration::from_secs(300);

pub(crate) fn run(exe: &Path, b: &CommBench, layout: &Layout) -> Result<Vec<RankResult>> {
    let burst = format!("bench-{:016x}", rand::random::<u64>());
    let secret: [u8; 32] = rand::random();
    let mut children = Vec::new();
    for pack in 0..layout.packs() {
        let spec = PackSpec { bench: b.clone(), burst: burst.clone(), secret: secret.to_vec(), pack };
        let json = serde_json::to_string(&spec).map_err(|e| Error::Invalid(e.to_string()))?;
        let child = Command::new(exe)
            .args(["bench", "comm-pack"])
            .env(SPEC_ENV, json)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| Error::Invalid(format!("cannot start {}: {e}", exe.display())))?;
        children.push(child);
    }
    // Each child's output is read while it runs: a child whose results fill the
    // pipe would otherwise wait for a reader that waits for it to exit.
    let readers: Vec<_> = children
        .iter_mut()
        .map(|child| {
            let mut stdout = child.stdout.take();
            std::thread::spawn(move || {
                let mut text = Vec::new();
                if let Some(out) = stdout.as_mut() {
                    let _ = std::io::Read::read_to_end(out, &mut text);
                }
                text
            })
        })
        .collect();
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let mut results = Vec::new();
    let mut failure = None;
    for (pack, (mut child, reader)) in children.into_iter().zip(readers).enumerate() {
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if child.try_wait().ok().flatten().is_none() {
            let _ = child.kill();
        }
        let status = child.wait().map_err(|e| Error::Invalid(e.to_string()))?;
        let stdout = reader.join().unwrap_or_default();
        let output = std::process::Output { status, stdout, stderr: Vec::new() };
        let text = String::from_utf8_lossy(&output.stdout);
        match text.lines().last().map(serde_json::from_str::<Vec<RankResult>>) {
            Some(Ok(ranks)) if output.status.success() => results.extend(ranks),
            _ => {
                failure.get_or_insert(format!("pack process {pack} failed ({}): {}", output.status, text.trim()));
            }
        }
    }
    match failure {
        Some(why) => Err(Error::Invalid(why)),
        None => Ok(results),
    }
}

/// The child's side: runs the pack described in `VOLLEY_PACK_SPEC` and
/// returns the JSON line to print.
pub fn run_pack_from_env() -> Result<String> {
    let json = std::env::var(SPEC_ENV).map_err(|_| Error::Invalid(format!("{SPEC_ENV} is not set")))?;
    let spec: PackSpec = serde_json::from_str(&json).map_err(|e| Error::Invalid(format!("bad {SPEC_ENV}: {e}")))?;
    let results = run_pack(&spec)?;
    serde_json::to_string(&results).map_err(|e| Error::Invalid(e.to_string()))
}

fn run_pack(spec: &PackSpec) -> Result<Vec<RankResult>> {
    let b = &spec.bench;
    let layout = Layout::uniform(b.workers, b.granularity)?;
    let mut opts = PackOptions::new(spec.burst.clone(), spec.secret.clone(), layout, spec.pack)
        .with_transport(b.transport_options()?);
    opts.op_timeout = Duration::from_secs(120);
    if let Some(spin) = b.spin {
        opts.spin = spin;
    }
    if let Some(packs) = b.tree_above_packs {
        opts.tree_above_packs = packs;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let rendezvous = Arc::new(RedisRendezvous::new(b.brokers.redis_url.clone()));
    let pack = runtime.block_on(Pack::connect(opts, rendezvous))?;
    let handles: Vec<_> = pack
        .comms()
        .into_iter()
        .map(|comm| {
            let b = b.clone();
            std::thread::spawn(move || {
                let result = measure(&comm, &b).map(|m| (m, comm.stats()));
                if let Err(e) = &result {
                    comm.abort(&e.to_string());
                }
                result
            })
        })
        .collect();
    let mut results = Vec::new();
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(r)) => results.push(r),
            Ok(Err(e)) => first_err = first_err.or(Some(Error::Comm(e))),
            Err(_) => first_err = first_err.or(Some(Error::Invalid("a worker thread panicked".into()))),
        }
    }
    let closed = runtime.block_on(pack.close());
    if let Some(e) = first_err {
        return Err(e);
    }
    closed?;
    Ok(results)
}
