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
    let mut placed = Vec::new();
    let mut left = workers;
    match granularity {
        Granularity::Auto => {
            for (cap, invoker) in room {
                if left == 0 {
                    break;
                }
                let size = cap.min(left);
                placed.push(Placed { size, invoker: invoker.to_string() });
                left -= size;
            }
        }
        Granularity::Fixed(g) => {
            if g == 0 {
                return None;
            }
            for (mut cap, invoker) in room {
                while left > 0 && cap >= g.min(left) {
                    let size = g.min(left);
                    placed.push(Placed { size, invoker: invoker.to_string() });
                    cap -= size;
                    left -= size;
                }
            }
        }
    }
    (left == 0).then_some(placed)
}

/// Capacity in words, for errors: totals and the largest invoker.
pub(crate) fn describe(free: &[Free]) -> String {
    let slots: usize = free.iter().map(|f| f.slots).sum();
    let memory: u64 = free.iter().map(|f| f.memory_mb).sum();
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
    fn memory_limits_how_many_workers_fit() {
        let f = vec![Free { invoker: "a".into(), slots: 100, memory_mb: 64 }];
        assert!(place(4, Granularity::Auto, 16, &f).is_some());
        assert!(place(5, Granularity::Auto, 16, &f).is_none());
    }
}
