//! The functions compiled into the `volley` binary.

mod basic;
pub mod dataset;
mod download;
mod exchange;
mod handoff;
pub mod kmeans;
mod orchestrators;
pub mod pagerank;
pub mod terasort;
mod wordcount;

use volley_sdk::Functions;

/// Every built-in function, by name.
pub fn builtins() -> Functions {
    let mut f = Functions::new();
    f.add("hello", "returns the worker's rank, size, pack and host", basic::hello);
    f.add(
        "sleep",
        "sleeps `seconds` (default 1); `fail_rank` / `panic_rank` make one rank fail, for fault drills",
        basic::sleep,
    );
    f.add(
        "genomics",
        "calls variants: params {reference, reads: [r1] or [r1, r2], output} are storage URLs; \
         minimap2 aligns each worker's reads, one all_to_all regroups them by region, bcftools calls each region",
        volley_genomics::job::call,
    );
    f.add(
        "terasort",
        "sorts gensort records: params {input, output} are storage URLs (file:///dir or s3://bucket/prefix)",
        terasort::terasort,
    );
    f.add(
        "teragen",
        "writes a TeraSort data set, one part per worker: params {output, records, seed?}",
        terasort::teragen,
    );
    f.add(
        "teravalidate",
        "checks a sorted output against its input (one worker): params {input, output}",
        terasort::teravalidate,
    );
    f.add(
        "download",
        "every worker reads one object: params {storage, key, cooperative?} (cooperative: one fetch per pack)",
        download::download,
    );
    f.add("kmeans", "k-means of points: params {input, output, dims, k, tolerance?, max_iterations?}", kmeans::kmeans);
    f.add(
        "pagerank",
        "PageRank of an edge list: params {input, output, vertices, damping?, tolerance?, max_iterations?}",
        pagerank::pagerank,
    );
    f.add(
        "wordcount",
        "counts the words of the objects under a prefix (shuffled by word): params {input, output, top?}",
        wordcount::wordcount,
    );
    f.add("darts", "throws darts at the unit square: params {samples, seed}; returns hits", orchestrators::darts);
    f.add(
        "estimate_pi",
        "a workflow as code: rounds of darts bursts until pi converges (run it as a code workflow)",
        orchestrators::estimate_pi,
    );
    f.add("sum", "all_reduce of every rank (or of `value`): checks that the workers can talk", basic::sum);
    f.add(
        "exchange",
        "all_to_all of `bytes` per pair, `rounds` times, every byte checked: params {bytes, rounds?}",
        exchange::exchange,
    );
    f.add(
        "handoff",
        "each even worker of a pack hands `bytes` to the next, `rounds` times; each arrival's time: params {bytes, rounds?}",
        handoff::handoff,
    );
    // Python functions the volley Python package sends, run by forked Python workers.
    volley_pyworkers::register(&mut f);
    f
}
