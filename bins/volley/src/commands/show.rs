//! How bursts are printed.

use volley_proto::api::Burst;

use super::Output;

fn ms(from: u64, to: Option<u64>) -> String {
    to.map(|t| format!("{:.1} ms", t.saturating_sub(from) as f64 / 1000.0)).unwrap_or_else(|| "-".into())
}

/// One burst: a summary and a row per worker (or the whole record as JSON).
pub fn burst(b: &Burst, output: Output) -> anyhow::Result<()> {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(b)?);
        return Ok(());
    }
    println!("{:>6} {:>5}  result", "rank", "pack");
    for w in &b.workers {
        let pack = w.pack.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let text = match (&w.result, &w.error) {
            (Some(r), _) => r.to_string(),
            (None, Some(e)) => format!("error: {e}"),
            (None, None) => "-".into(),
        };
        println!("{:>6} {:>5}  {text}", w.rank, pack);
    }
    summary(b);
    Ok(())
}

/// The burst's one-paragraph story.
pub fn summary(b: &Burst) {
    println!(
        "burst {} {}: {} workers in {} packs of {} over {}",
        b.id,
        b.state.name(),
        b.request.workers,
        b.packs.len(),
        b.request.granularity,
        b.transport.as_deref().unwrap_or("-"),
    );
    println!(
        "  placed after {}, all running after {}, start spread {}, finished after {}",
        ms(b.submitted_at, b.placed_at),
        ms(b.submitted_at, b.running_at),
        b.start_spread_us.map(|s| format!("{:.1} ms", s as f64 / 1000.0)).unwrap_or_else(|| "-".into()),
        ms(b.submitted_at, b.finished_at),
    );
    if let Some(e) = &b.error {
        println!("  error: {e}");
    }
}

/// One line per burst.
pub fn list(bursts: &[Burst], output: Output) -> anyhow::Result<()> {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(bursts)?);
        return Ok(());
    }
    println!("{:<22} {:<10} {:<12} {:>7} {:>5}  error", "id", "state", "function", "workers", "packs");
    for b in bursts {
        println!(
            "{:<22} {:<10} {:<12} {:>7} {:>5}  {}",
            b.id,
            b.state.name(),
            b.request.function,
            b.request.workers,
            b.packs.len(),
            b.error.as_deref().unwrap_or("")
        );
    }
    Ok(())
}
