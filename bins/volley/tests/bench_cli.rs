//! `volley bench comm` end to end through the real binary.

use volley_testkit as support;

use std::process::Command;

fn volley(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_volley")).args(args).output().expect("volley runs")
}

fn redis_up() -> bool {
    support::service_up("Redis", "127.0.0.1:6379")
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "volley failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

/// 4 workers in 2 packs, 3 all-to-alls of 1 KiB per pair: each worker sends
/// 1 KiB to each of the 2 ranks of the other pack per iteration.
const ARGS: &[&str] = &[
    "bench",
    "comm",
    "--transport",
    "tcp",
    "--op",
    "all-to-all",
    "--workers",
    "4",
    "--granularity",
    "2",
    "--size",
    "1KiB",
    "--iters",
    "3",
    "--warmup",
    "0",
    "--output",
    "json",
];

#[test]
fn all_to_all_counts_exactly_the_bytes_that_cross_packs() {
    let report = json(&volley(ARGS));
    let r = &report[0];
    assert_eq!(r["packs"], 2);
    assert_eq!(r["remote_bytes"], 4 * 2 * 1024 * 3);
    assert_eq!(r["local_bytes"], 4 * 2 * 1024 * 3);
    assert!(r["latency"]["p50_us"].as_f64().unwrap() > 0.0);
}

#[test]
fn every_operation_checks_the_bytes_it_moved() {
    let args = [
        "bench",
        "comm",
        "--transport",
        "tcp",
        "--op",
        "all",
        "--workers",
        "4",
        "--granularity",
        "2",
        "--size",
        "1KiB,100KiB",
        "--iters",
        "3",
        "--warmup",
        "1",
        "--no-baseline",
        "--output",
        "json",
    ];
    let report = json(&volley(&args));
    let runs = report.as_array().unwrap();
    assert_eq!(runs.len(), 9 * 2, "{report}");
    assert!(runs.iter().all(|r| r["verified"] == true), "{report}");
    let mut unchecked = args.to_vec();
    unchecked.push("--no-verify");
    let report = json(&volley(&unchecked));
    assert!(report.as_array().unwrap().iter().all(|r| r["verified"] == false), "{report}");
}

#[test]
fn packs_in_separate_processes_give_the_same_counts() {
    if !redis_up() {
        return;
    }
    let mut args = ARGS.to_vec();
    args.push("--processes");
    let report = json(&volley(&args));
    assert_eq!(report[0]["remote_bytes"], 4 * 2 * 1024 * 3);
}

#[test]
fn redis_figures_come_with_the_raw_clients_beside_them() {
    if !redis_up() {
        return;
    }
    // Each mode of the transport beside plain clients using its own commands.
    for (transport, commands) in [("redis", "RPUSH/BLPOP"), ("redis-streams", "XADD/XREADGROUP")] {
        let run = |op: &str, size: &str| {
            let args = ["bench", "comm", "--transport", transport, "--op", op, "--workers", "4", "--granularity", "2"];
            let rest = ["--size", size, "--iters", "3", "--warmup", "1", "--output", "json"];
            json(&volley(&[&args[..], &rest[..]].concat()))[0].clone()
        };
        // A stream: the raw clients' throughput with the transport's chunk and connections.
        let stream = run("stream", "2MiB");
        assert_eq!(stream["raw"]["link"], format!("raw Redis {commands}"), "{stream}");
        assert!(stream["raw"]["mib_per_s"].as_f64().unwrap() > 0.0, "{stream}");
        assert!(stream["throughput_vs_raw"].as_f64().unwrap() > 0.0);
        // Collectives: the floor of what they move between packs (all-to-all: 2
        // flows of 2x2 parts; broadcast: 1 flow of the message).
        for (op, flows) in
            [("all-to-all", "2 concurrent flow(s) of 1048576 bytes"), ("broadcast", "1 concurrent flow(s) of 262144")]
        {
            let report = run(op, "256KiB");
            assert_eq!(report["raw"]["floor"], true, "{report}");
            let link = report["raw"]["link"].as_str().unwrap();
            assert!(link.contains(flows) && link.contains(commands), "{report}");
            assert!(report["latency_vs_raw"].as_f64().unwrap() > 0.0);
            assert_eq!(report["verified"], true);
        }
    }
}

#[test]
fn nats_and_rabbitmq_streams_come_with_plain_clients_beside_them() {
    let up = [("NATS", "127.0.0.1:4222", "nats"), ("RabbitMQ", "127.0.0.1:5672", "rabbitmq")];
    for (name, addr, transport) in up {
        if !support::service_up(name, addr) {
            continue;
        }
        // 3 MiB: larger than NATS's 1 MiB payload, so both sides cut it.
        let args = ["bench", "comm", "--transport", transport, "--op", "stream", "--workers", "2", "--size", "3MiB"];
        let rest = ["--iters", "3", "--warmup", "1", "--output", "json"];
        let report = json(&volley(&[&args[..], &rest[..]].concat()))[0].clone();
        assert!(report["raw"]["mib_per_s"].as_f64().unwrap() > 0.0, "{report}");
        assert!(report["throughput_vs_raw"].as_f64().unwrap() > 0.0, "{report}");
        assert_eq!(report["verified"], true, "{report}");
    }
}

#[test]
fn bad_input_fails_with_a_message_that_says_what_to_do() {
    let out = volley(&["bench", "comm", "--transport", "carrier-pigeon"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("choose one of tcp, uds, shm, redis"));
    let out = volley(&["bench", "comm", "--workers", "4", "--granularity", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("granularity"));
    let out = volley(&["bench", "comm", "--size", "12parsecs"]);
    assert!(!out.status.success());
}

#[test]
fn bench_terasort_compares_burst_faas_and_one_process_on_validated_outputs() {
    if !redis_up() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("volley-bench-ts-{}", std::process::id()));
    let report = bench_on(&format!("file://{}", dir.display()), "terasort", "--size 2MiB --workers 4 --granularity 2");
    let modes: Vec<&str> = report["rows"].as_array().unwrap().iter().map(|r| r["mode"].as_str().unwrap()).collect();
    assert_eq!(modes, vec!["1 process", "burst", "faas"]);
    assert_eq!(report["rows"][2]["transport"], "redis");
    assert_eq!(report["rows"][1]["g"], 2);
    assert!(report["faas_over_burst"].as_f64().unwrap() > 0.0);
    // FaaS mode moves every record between workers through the broker; burst mode keeps half in the pack.
    let remote = |i: usize| report["rows"][i]["remote_bytes"].as_u64().unwrap();
    assert!(remote(2) > remote(1), "{report}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bench_pagerank_reports_the_traffic_packing_saves() {
    if !redis_up() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("volley-bench-pr-{}", std::process::id()));
    let args = "--vertices 2000 --edges 20000 --workers 8 --granularity 4 --iterations 3";
    let report = bench_on(&format!("file://{}", dir.display()), "pagerank", args);
    assert_eq!(report["rows"][0]["packs"], 2);
    assert_eq!(report["rows"][1]["packs"], 8);
    let saved = report["remote_bytes_saved"].as_f64().unwrap();
    assert!(saved > 0.5 && saved < 1.0, "packs of 4 send less than single workers: {report}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bench_download_pulls_the_object_once_per_pack_when_cooperative() {
    let dir = std::env::temp_dir().join(format!("volley-bench-dl-{}", std::process::id()));
    let report = bench_on(&format!("file://{}", dir.display()), "download", "--size 1MiB --workers 6 --granularity 3");
    let pulled = |i: usize| report["rows"][i]["pulled_bytes"].as_u64().unwrap();
    assert_eq!(report["rows"][0]["mode"], "per-worker");
    assert_eq!(pulled(0), 6 << 20, "every worker fetched all of it");
    assert_eq!(pulled(1), 2 << 20, "each of the 2 packs fetched it once");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bench_load_runs_every_burst_exactly_once_and_the_api_answers() {
    let report = json(&volley(&[
        "bench",
        "load",
        "--bursts",
        "20",
        "--workers",
        "4",
        "--granularity",
        "2",
        "--clients",
        "3",
        "--output",
        "json",
    ]));
    assert_eq!(report["succeeded"], 20);
    assert!(report["status_requests"].as_u64().unwrap() >= 1, "{report}");
    assert!(report["status_p99_ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_load_loads_the_controller_it_is_given() {
    let p = support::Platform::up(&[]);
    let args = ["bench", "load", "--bursts", "6", "--workers", "2", "--granularity", "1", "--clients", "2"];
    let report = support::json_ok(&p.cli(&[&args[..], &["--output", "json"]].concat()));
    assert_eq!(report["succeeded"], 6, "{report}");
    // The bursts ran on that controller, not on an embedded platform of the command's own.
    let (_, list) = p.get("/v1/bursts");
    assert_eq!(list.as_array().unwrap().len(), 6, "{list}");
    // And again: a shared controller may hold other bursts than this run's.
    let report = support::json_ok(&p.cli(&[&args[..], &["--output", "json"]].concat()));
    assert_eq!(report["succeeded"], 6, "{report}");
}

/// `volley bench NAME ARGS --storage BASE --output json`.
fn bench_on(base: &str, name: &str, args: &str) -> serde_json::Value {
    let mut all = vec!["bench", name];
    all.extend(args.split_whitespace());
    all.extend(["--storage", base, "--output", "json"]);
    json(&volley(&all))
}

#[test]
fn the_storage_benchmarks_run_on_the_s3_server_and_leave_nothing_behind() {
    let Some(base) = support::s3_base("bench") else { return };
    let download = bench_on(&base, "download", "--size 1MiB --workers 4 --granularity 2");
    assert_eq!(download["rows"][1]["pulled_bytes"], 2 << 20, "one fetch per pack: {download}");
    if redis_up() {
        let terasort = bench_on(&base, "terasort", "--size 1MiB --workers 4 --granularity 2");
        assert_eq!(terasort["rows"].as_array().unwrap().len(), 3, "{terasort}");
        let args = "--vertices 1000 --edges 8000 --workers 4 --granularity 2 --iterations 3";
        let pagerank = bench_on(&base, "pagerank", args);
        assert!(pagerank["remote_bytes_saved"].as_f64().unwrap() > 0.0, "{pagerank}");
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let left = rt.block_on(support::storage(&base).list("")).unwrap();
    assert!(left.is_empty(), "the benchmarks removed their data: {left:?}");
}

#[test]
fn pack_processes_with_results_larger_than_a_pipe_finish() {
    if !redis_up() {
        return;
    }
    // 20,000 latency samples make a result line far beyond a 64 KiB pipe buffer.
    let args = [
        "bench",
        "comm",
        "--transport",
        "uds",
        "--op",
        "ping-pong",
        "--iters",
        "20000",
        "--warmup",
        "10",
        "--processes",
        "--no-baseline",
        "--output",
        "json",
    ];
    let report = json(&volley(&args));
    assert_eq!(report[0]["iters"], 20000, "{report}");
    assert!(report[0]["latency"]["p50_us"].as_f64().unwrap() > 0.0, "{report}");
}

#[test]
fn openmpi_and_volley_run_the_same_checked_collectives_side_by_side() {
    let mpicc = std::process::Command::new("mpicc").arg("--version").output().is_ok_and(|o| o.status.success());
    if !support::services::present("OpenMPI (mpicc, mpirun)", mpicc) {
        return;
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/mpi/run");
    let out =
        std::process::Command::new(script).args(["4", "2", "3"]).env("VOLLEY", support::volley_exe()).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{said}\n{}", String::from_utf8_lossy(&out.stderr));
    for op in ["all-reduce", "all-to-all", "broadcast"] {
        let mpi = said.lines().filter(|l| l.starts_with(&format!("mpi    {op} 4 "))).count();
        let volley =
            said.lines().filter(|l| l.starts_with(&format!("volley {op} 4 ")) && l.ends_with("verified")).count();
        assert_eq!((mpi, volley), (2, 2), "{op}: {said}");
    }
}
