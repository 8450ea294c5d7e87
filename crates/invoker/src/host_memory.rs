//! The host's memory as the kernel reports it (`/proc/meminfo`), for the
//! invoker's default capacity and for the warm pool's restraint.

/// A `/proc/meminfo` field in MiB (`None` where there is no such file).
fn field_mb(name: &str) -> Option<u64> {
    parse_field(&std::fs::read_to_string("/proc/meminfo").ok()?, name)
}

fn parse_field(info: &str, name: &str) -> Option<u64> {
    let line = info.lines().find(|l| l.split(':').next() == Some(name))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// All of the host's memory.
pub(crate) fn total_mb() -> Option<u64> {
    field_mb("MemTotal")
}

/// What the host can still give without swapping or reclaiming hard.
pub(crate) fn available_mb() -> Option<u64> {
    field_mb("MemAvailable")
}

/// Whether warm processes may start now: the warm pool never takes the host
/// below an eighth of its memory available. Idle processes are a bet on
/// demand; a pool refilling beside a burst that still holds the processes it
/// took (twice the burst's processes for a while) must not push the host
/// into the out-of-memory killer, which would pick a running pack. Where the
/// kernel does not say, the pool is not held back.
pub(crate) fn room_for_warm() -> bool {
    match (available_mb(), total_mb()) {
        (Some(available), Some(total)) => leaves_reserve(available, total),
        _ => true,
    }
}

fn leaves_reserve(available_mb: u64, total_mb: u64) -> bool {
    available_mb > total_mb / 8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_by_their_exact_name() {
        let info = "MemTotal:       24000000 kB\nMemFree:         1000 kB\nMemAvailable:   2048000 kB\n";
        assert_eq!(parse_field(info, "MemTotal"), Some(23437));
        assert_eq!(parse_field(info, "MemAvailable"), Some(2000));
        assert_eq!(parse_field(info, "Mem"), None);
        assert_eq!(parse_field("MemTotal: lots kB", "MemTotal"), None);
    }

    #[test]
    fn the_pool_keeps_an_eighth_of_the_host_available() {
        assert!(leaves_reserve(4000, 24000));
        assert!(!leaves_reserve(3000, 24000));
        assert!(!leaves_reserve(100, 24000));
        // This machine's own figures are readable (Linux).
        assert!(total_mb().is_some_and(|t| t > 0) && available_mb().is_some());
    }
}
