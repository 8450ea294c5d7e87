//! Where the packs of a burst go: whole burst or nothing, on as few invokers as possible.

use volley_proto::api::Granularity;

/// An invoker's free capacity, as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Free {
    pub(crate) invoker: String,
    pub(crate) slots: usize,
    pub(crate) memory_mb: u64,
}

/// One pack: its size and the invoker it goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placed {
    pub(crate) size: usize,
    pub(crate) invoker: String,
}

/// Places `workers` workers needing `memory_mb` each; None if the free
/// capacity cannot hold the whole burst now.
pub(crate) fn place(workers: usize, granularity: Granularity, memory_mb: u64, free: &[Free]) -> Option<Vec<Placed>> {
    let shares = shares(workers, granularity, memory_mb, free)?;
    let mut placed = Vec::new();
    for (invoker, share) in shares {
        match granularity {
            Granularity::Auto => placed.push(Placed { size: share, invoker: invoker.to_string() }),
            Granularity::Fixed(g) => {
                let sizes = std::iter::repeat_n(g, share / g).chain((share % g > 0).then_some(share % g));
                placed.extend(sizes.map(|size| Placed { size, invoker: invoker.to_string() }));
            }
        }
    }
    Some(placed)
}

/// Whether the burst fits the free capacity now (what [`place`] would
/// answer, without making the packs: cheap enough to ask often).
pub(crate) fn fits(workers: usize, granularity: Granularity, memory_mb: u64, free: &[Free]) -> bool {
    shares(workers, granularity, memory_mb, free).is_some()
}

/// How many workers each invoker takes, in placement order; None if they do not all fit.
fn shares(workers: usize, granularity: Granularity, memory_mb: u64, free: &[Free]) -> Option<Vec<(&str, usize)>> {
    // Fullest-first: the invoker with the most room takes as much as it can,
    // which keeps a burst on as few invokers (and same-host links) as possible.
    let mut room: Vec<(usize, &str)> = free
        .iter()
        .map(|f| {
            let by_memory = f.memory_mb.checked_div(memory_mb).map_or(usize::MAX, |n| n as usize);
            (f.slots.min(by_memory), f.invoker.as_str())
        })
        .filter(|(cap, _)| *cap > 0)
        .collect();
    room.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let mut shares = Vec::new();
    let mut left = workers;
    for (cap, invoker) in room {
        if left == 0 {
            break;
        }
        let take = match granularity {
            Granularity::Auto => cap.min(left),
            Granularity::Fixed(0) => return None,
            // Whole packs while both room and workers last, then the last,
            // smaller pack if what is left fits.
            Granularity::Fixed(g) => {
                let whole = (cap / g).min(left / g) * g;
                let rest = left - whole;
                if rest > 0 && rest < g && cap - whole >= rest { whole + rest } else { whole }
            }
        };
        if take > 0 {
            shares.push((invoker, take));
            left -= take;
        }
    }
    (left == 0).then_some(shares)
}

/// Capacity in words, for errors: totals and the largest invoker.
pub(crate) fn describe(free: &[Free]) -> String {
    let slots = free.iter().fold(0usize, |sum, f| sum.saturating_add(f.slots));
    let memory = free.iter().fold(0u64, |sum, f| sum.saturating_add(f.memory_mb));
    let largest = free.iter().max_by_key(|f| (f.slots, f.memory_mb));
    match largest {
        None => "no invokers".into(),
        Some(l) => format!(
            "{slots} slots and {memory} MiB on {} invoker(s), the largest {} slots and {} MiB",
            free.len(),
            l.slots,
            l.memory_mb
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free(list: &[(&str, usize)]) -> Vec<Free> {
        list.iter().map(|(n, s)| Free { invoker: n.to_string(), slots: *s, memory_mb: 1 << 20 }).collect()
    }

    #[test]
    fn fixed_packs_fill_the_roomiest_invoker_first() {
        let p = place(10, Granularity::Fixed(4), 16, &free(&[("a", 6), ("b", 8)])).unwrap();
        let got: Vec<_> = p.iter().map(|p| (p.size, p.invoker.as_str())).collect();
        assert_eq!(got, vec![(4, "b"), (4, "b"), (2, "a")]);
    }

    #[test]
    fn auto_makes_one_pack_per_invoker_with_different_sizes() {
        let p = place(10, Granularity::Auto, 16, &free(&[("a", 3), ("b", 8)])).unwrap();
        let got: Vec<_> = p.iter().map(|p| (p.size, p.invoker.as_str())).collect();
        assert_eq!(got, vec![(8, "b"), (2, "a")]);
    }

    #[test]
    fn a_burst_that_does_not_fit_whole_is_not_placed() {
        assert_eq!(place(10, Granularity::Fixed(4), 16, &free(&[("a", 3), ("b", 3)])), None);
        assert_eq!(place(10, Granularity::Auto, 16, &free(&[("a", 9)])), None);
    }

    #[test]
    fn the_last_pack_takes_what_is_left_where_it_fits() {
        let p = place(10, Granularity::Fixed(4), 16, &free(&[("a", 8), ("b", 3)])).unwrap();
        let got: Vec<_> = p.iter().map(|p| (p.size, p.invoker.as_str())).collect();
        assert_eq!(got, vec![(4, "a"), (4, "a"), (2, "b")]);
        assert!(fits(10, Granularity::Fixed(4), 16, &free(&[("a", 8), ("b", 3)])));
        assert!(!fits(10, Granularity::Fixed(4), 16, &free(&[("a", 7), ("b", 3)])));
    }

    #[test]
    fn a_million_workers_are_placed_in_one_step_per_invoker() {
        let f = free(&[("a", 600_000), ("b", 600_000)]);
        assert!(fits(1_000_000, Granularity::Fixed(1), 1, &f));
        assert_eq!(place(1_000_000, Granularity::Fixed(1), 1, &f).unwrap().len(), 1_000_000);
    }

    #[test]
    fn memory_limits_how_many_workers_fit() {
        let f = vec![Free { invoker: "a".into(), slots: 100, memory_mb: 64 }];
        assert!(place(4, Granularity::Auto, 16, &f).is_some());
        assert!(place(5, Granularity::Auto, 16, &f).is_none());
    }
}
