//! `volley bench startup`: how fast a burst gets from submit to every worker
//! running, cold and warm, in burst mode (packs of g) and FaaS mode (g = 1,
//! one process per worker, a broker between them) measured in the same run.
//! The CLI drives the platform; this module turns the bursts it ran into a report.

use std::time::Duration;

use volley_proto::api::Burst;

use crate::stats::Percentiles;

/// One configuration's results.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StartupReport {
    /// `burst` (packs of g, direct transport) or `faas` (g = 1, broker).
    pub mode: String,
    pub workers: usize,
    pub granularity: usize,
    pub packs: usize,
    pub transport: String,
    /// Submit to every worker running, first burst after the platform started (empty warm pool).
    pub cold_ms: f64,
    pub cold_spread_ms: f64,
    /// Submit to every worker running, over the warm runs.
    pub warm: Percentiles,
    /// Last minus first worker start, over the warm runs.
    pub warm_spread: Percentiles,
    pub warm_runs: usize,
}

/// Submit to all running, and the start spread, of one finished burst.
pub fn timings(burst: &Burst) -> Option<(Duration, Duration)> {
    let running = burst.running_at?.checked_sub(burst.submitted_at)?;
    Some((Duration::from_micros(running), Duration::from_micros(burst.start_spread_us?)))
}

impl StartupReport {
    /// The report of one cold burst and the warm bursts that followed it.
    pub fn new(mode: &str, cold: &Burst, warm: &[Burst]) -> crate::Result<StartupReport> {
        let bad = |b: &Burst| crate::Error::Invalid(format!("burst {} did not run: {:?}", b.id, b.error));
        let (cold_ms, cold_spread) = timings(cold).ok_or_else(|| bad(cold))?;
        let mut starts = Vec::new();
        let mut spreads = Vec::new();
        for b in warm {
            let (s, spread) = timings(b).ok_or_else(|| bad(b))?;
            starts.push(s);
            spreads.push(spread);
        }
        Ok(StartupReport {
            mode: mode.into(),
            workers: cold.request.workers,
            granularity: cold.packs.first().map(|p| p.size).unwrap_or(0),
            packs: cold.packs.len(),
            transport: cold.transport.clone().unwrap_or_default(),
            cold_ms: cold_ms.as_secs_f64() * 1e3,
            cold_spread_ms: cold_spread.as_secs_f64() * 1e3,
            warm: Percentiles::of(&starts),
            warm_spread: Percentiles::of(&spreads),
            warm_runs: warm.len(),
        })
    }
}
