//! Word count as one burst over the objects under a prefix: each worker
//! counts the words of its share of the objects (object i goes to worker
//! i mod N), the counts are shuffled by word with one `all_to_all` (word w to
//! worker hash(w) mod N), and each worker writes its words, sorted, as
//! `part-RANK` lines `word<TAB>count`; `_SUCCESS` last.
//!
//! Run as a workflow's `map` step over the objects under a prefix, the
//! platform lists them and hands each worker its own (`{prefix, key}` in its
//! worker parameters): each counts its object, and the shuffle is the same.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use serde::Deserialize;
use volley_sdk::serde_json::json;
use volley_sdk::{Worker, WorkerResult};

use crate::dataset::{SUCCESS, check_output_apart, clear, part_name, splitmix64};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// The prefix whose objects are counted (`file:///dir` or `s3://bucket/prefix`);
    /// not needed by a worker given its object.
    #[serde(default)]
    input: Option<String>,
    /// Where the counts go.
    output: String,
    /// How many of its most frequent words each worker reports.
    #[serde(default = "ten")]
    top: usize,
}

fn ten() -> usize {
    10
}

/// Words as counted: runs of letters, digits and apostrophes, lowercased.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|w| w.trim_matches('\''))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

fn owner(word: &str, n: u64) -> usize {
    let h = word.bytes().fold(0u64, |h, b| splitmix64(h ^ b as u64));
    (h % n) as usize
}

pub fn wordcount(w: &Worker) -> WorkerResult {
    let p: Params = w.params_as()?;
    let given = w.worker_params();
    let (rank, n) = (w.rank(), w.size());
    // A map over objects gives each worker its object; otherwise worker i
    // counts objects i, i + N, ... of the listing.
    let (prefix, mine) = match (given.get("prefix").and_then(|v| v.as_str()), given.get("key").and_then(|v| v.as_str()))
    {
        (Some(prefix), Some(key)) => (prefix.to_string(), Some(key.to_string())),
        _ => (p.input.clone().ok_or("input (the prefix whose objects are counted) is missing")?, None),
    };
    check_output_apart(&prefix, &p.output)?;
    let input = w.storage(&prefix)?;
    let output = w.storage(&p.output)?;
    if rank == 0 {
        w.block_on(clear(&output))?;
    }
    w.comm().barrier()?;
    let objects = match &mine {
        Some(key) => vec![(key.clone(), 0)],
        None => {
            let mut objects = w.block_on(input.list(""))?;
            objects.retain(|(k, _)| !k.starts_with('_'));
            objects.sort();
            objects
        }
    };
    let share: Vec<&(String, u64)> = match mine {
        Some(_) => objects.iter().collect(),
        None => objects.iter().skip(rank).step_by(n).collect(),
    };
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut bytes_read = 0;
    for (key, _) in share {
        let data = w.block_on(input.get(key))?;
        bytes_read += data.len();
        for word in words(&String::from_utf8_lossy(&data)) {
            *counts.entry(word).or_default() += 1;
        }
    }
    // Shuffle: every word to the worker that owns it.
    let mut outgoing = vec![String::new(); n];
    for (word, count) in counts {
        outgoing[owner(&word, n as u64)].push_str(&format!("{word}\t{count}\n"));
    }
    let received = w.comm().all_to_all(outgoing.into_iter().map(Bytes::from).collect())?;
    let mut mine: BTreeMap<String, u64> = BTreeMap::new();
    for part in received {
        for line in String::from_utf8_lossy(&part).lines() {
            if let Some((word, count)) = line.split_once('\t') {
                *mine.entry(word.to_string()).or_default() += count.parse::<u64>().unwrap_or(0);
            }
        }
    }
    let text: String = mine.iter().map(|(word, count)| format!("{word}\t{count}\n")).collect();
    w.block_on(output.put(&part_name(rank), Bytes::from(text)))?;
    w.comm().barrier()?;
    if rank == 0 {
        w.block_on(output.put(SUCCESS, Bytes::new()))?;
    }
    let mut top: Vec<(&String, &u64)> = mine.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    top.truncate(p.top);
    Ok(json!({
        "objects": objects.len(),
        "bytes_read": bytes_read,
        "words": mine.len(),
        "total": mine.values().sum::<u64>(),
        "top": top.into_iter().map(|(w, c)| json!([w, c])).collect::<Vec<_>>(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_runs_of_letters_lowercased() {
        let got: Vec<String> = words("The cat's hat -- the CAT, 'quoted' 42x!").collect();
        assert_eq!(got, ["the", "cat's", "hat", "the", "cat", "quoted", "42x"]);
        assert!((0..100).all(|i| owner(&format!("w{i}"), 4) < 4));
    }
}
