//! Timers: events on a schedule, every N seconds or by a cron expression
//! (read by the `cron` crate, UTC, with a seconds field). Each firing has the
//! id `TIMER/SLOT`, SLOT its scheduled time: fired twice (a controller that
//! restarted mid-firing), the event log keeps it once.

use std::str::FromStr;

use serde_json::json;
use volley_proto::flow::{CloudEvent, Timer, TimerRequest};

use crate::{Error, Result};

/// The shortest period: a timer is for schedules, not for load.
pub const MIN_EVERY_SECS: f64 = 0.2;

/// Most timers one namespace may have.
pub const MAX_PER_NAMESPACE: usize = 100;

/// The type of every timer event.
pub const FIRED: &str = "volley.timer.fired";

/// The timer `request` asks for, its first slot after `now` (µs).
pub fn make(namespace: &str, request: TimerRequest, now: u64) -> Result<Timer> {
    let TimerRequest { id, every_secs, cron, times, data } = request;
    let ok = !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(Error::invalid("id", format!("{id:?} must be 1 to 64 characters from A-Z a-z 0-9 - _")));
    }
    match (&every_secs, &cron) {
        (Some(s), None) if (MIN_EVERY_SECS..=31_536_000.0).contains(s) => {}
        (Some(s), None) => {
            return Err(Error::invalid("every_secs", format!("{s} is not {MIN_EVERY_SECS} to 31536000 seconds")));
        }
        (None, Some(c)) => {
            cron::Schedule::from_str(c).map_err(|e| {
                Error::invalid("cron", format!("{c:?} is not a cron schedule (sec min hour day month weekday): {e}"))
            })?;
        }
        _ => return Err(Error::invalid("timer", "give exactly one of every_secs and cron")),
    }
    if times == Some(0) {
        return Err(Error::invalid("times", "a timer fires at least once"));
    }
    let mut timer = Timer { id, namespace: namespace.into(), every_secs, cron, times, data, fired: 0, next_at: None };
    timer.next_at = next_after(&timer, now);
    Ok(timer)
}

/// The first slot after `after` (µs), if the schedule has one.
pub fn next_after(timer: &Timer, after: u64) -> Option<u64> {
    if let Some(s) = timer.every_secs {
        return Some(after + (s * 1e6) as u64);
    }
    let schedule = cron::Schedule::from_str(timer.cron.as_deref()?).ok()?;
    let at = chrono::DateTime::from_timestamp_micros(after as i64)?;
    schedule.after(&at).next().map(|t| t.timestamp_micros() as u64)
}

/// Fires `timer` at `slot` (it is `now`): its event, and its next slot
/// (none: it is done). The next slot follows `now`: slots missed while the
/// controller was down are not fired one after another on its return.
pub fn fire(timer: &mut Timer, slot: u64, now: u64) -> CloudEvent {
    timer.fired += 1;
    let done = timer.times.is_some_and(|n| timer.fired >= n);
    timer.next_at = if done { None } else { next_after(timer, slot.max(now)) };
    let mut event = CloudEvent::new(
        format!("{}/{slot}", timer.id),
        "volley/timer",
        FIRED,
        Some(timer.id.clone()),
        json!({"timer": timer.id, "slot": crate::rfc3339(slot), "fired": timer.fired, "data": timer.data}),
    );
    event.time = Some(crate::rfc3339(slot));
    event
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn request(every: Option<f64>, cron: Option<&str>, times: Option<u64>) -> TimerRequest {
        TimerRequest { id: "t".into(), every_secs: every, cron: cron.map(String::from), times, data: Value::Null }
    }

    #[test]
    fn timers_fire_on_their_schedule_and_stop_when_told() {
        let mut every = make("ns", request(Some(2.0), None, Some(2)), 1_000_000).unwrap();
        assert_eq!(every.next_at, Some(3_000_000));
        let first = fire(&mut every, 3_000_000, 3_000_100);
        assert_eq!(first.id, "t/3000000");
        assert_eq!(every.next_at, Some(5_000_100));
        let mut late = every.clone();
        fire(&mut late, 5_000_100, 60_000_000);
        assert_eq!(late.next_at, None, "times: 2");
        let mut forever = make("ns", request(Some(2.0), None, None), 0).unwrap();
        fire(&mut forever, 2_000_000, 60_000_000);
        assert_eq!(forever.next_at, Some(62_000_000), "a slot missed while down is not made up one by one");
        // Every minute at second 30: after 10:00:00 comes 10:00:30.
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z").unwrap().timestamp_micros() as u64;
        let cron = make("ns", request(None, Some("30 * * * * *"), None), at).unwrap();
        assert_eq!(cron.next_at, Some(at + 30_000_000));
        assert!(make("ns", request(None, Some("every day"), None), at).unwrap_err().to_string().contains("cron"));
        assert!(make("ns", request(Some(1.0), Some("* * * * * *"), None), at).is_err());
        assert!(make("ns", request(Some(0.01), None, None), at).is_err());
    }
}
