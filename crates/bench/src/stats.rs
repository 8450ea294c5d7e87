//! Percentiles of repeated timings.

use std::time::Duration;

/// Latency summary in microseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Percentiles {
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

impl Percentiles {
    pub fn of(samples: &[Duration]) -> Percentiles {
        if samples.is_empty() {
            return Percentiles::default();
        }
        let mut us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
        us.sort_by(f64::total_cmp);
        let at = |q: f64| us[((us.len() as f64 - 1.0) * q).round() as usize];
        Percentiles { p50_us: at(0.5), p90_us: at(0.9), p99_us: at(0.99), max_us: *us.last().expect("non-empty") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_ranked_samples() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        let p = Percentiles::of(&samples);
        assert_eq!((p.p50_us.round(), p.p99_us.round(), p.max_us), (51.0, 99.0, 100.0));
    }
}
