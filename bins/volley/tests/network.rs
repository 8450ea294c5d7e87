//! `volley bench network`: the emulated cluster (hosts in network
//! namespaces, links limited by `tc`, Redis on a broker host of its own),
//! run end to end through the real binary. Needs root (the netns group).

use volley_testkit as support;

use std::process::Command;

use support::TempDir;

fn volley(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_volley")).args(args).output().expect("volley runs")
}

fn leftover_namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().expect("ip runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|ns| ns.starts_with("vn"))
        .map(str::to_string)
        .collect()
}

#[test]
fn terasort_and_pagerank_cross_the_links_directly_in_burst_mode_and_through_the_broker_in_faas_mode() {
    if !support::netns::available() {
        return;
    }
    let storage = TempDir::new("bench-network");
    let out = volley(&[
        "--output",
        "json",
        "bench",
        "network",
        "--hosts",
        "2",
        "--workers",
        "4",
        "--terasort-size",
        "8MiB",
        "--vertices",
        "2000",
        "--edges",
        "20000",
        "--iterations",
        "3",
        "--jobs",
        "terasort,pagerank,startup",
        "--startup-workers",
        "8",
        "--storage",
        storage.0.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "bench network failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    let rows = report["rows"].as_array().unwrap();
    let row = |job: &str, mode: &str| {
        rows.iter()
            .find(|r| r["job"] == job && r["mode"] == mode)
            .unwrap_or_else(|| panic!("no {job} {mode}: {report}"))
    };
    let bytes = |r: &serde_json::Value, key: &str| r[key].as_u64().unwrap();
    const MIB: u64 = 1 << 20;
    for job in ["terasort", "pagerank"] {
        let (burst, faas) = (row(job, "burst"), row(job, "faas"));
        assert_eq!((burst["g"].as_u64(), faas["g"].as_u64()), (Some(2), Some(1)), "{report}");
        // Burst mode talks host to host: its packets never touch the broker host.
        assert!(bytes(burst, "broker_link_bytes") < MIB / 4, "{report}");
        assert!(bytes(faas, "link_bytes") > bytes(burst, "link_bytes"), "{report}");
        assert!(burst["ms"].as_f64().unwrap() > 0.0 && faas["ms"].as_f64().unwrap() > 0.0, "{report}");
    }
    // TeraSort (its outputs validated by the job): half the records change
    // host in burst mode, over two links each; in FaaS mode three quarters
    // change worker, each into the broker and out again.
    let (burst, faas) = (row("terasort", "burst"), row("terasort", "faas"));
    assert!(bytes(burst, "link_bytes") >= 7 * MIB, "{report}");
    assert!(bytes(faas, "broker_link_bytes") >= 11 * MIB, "{report}");
    assert!(burst["part_ms"].as_f64().is_some(), "{report}");
    // Start-up: one pack of 4 per host against 8 processes, each measured
    // cold and warm; a burst's packs reach each other without the broker.
    let (burst, faas) = (row("startup", "burst"), row("startup", "faas"));
    assert_eq!((burst["g"].as_u64(), faas["g"].as_u64(), faas["workers"].as_u64()), (Some(4), Some(1), Some(8)));
    for r in [burst, faas] {
        assert!(r["ms"].as_f64().unwrap() > 0.0 && r["part_ms"].as_f64().unwrap() > 0.0, "{report}");
    }
    assert!(bytes(burst, "broker_link_bytes") < MIB / 4, "{report}");
    assert_eq!(report["faas_over_burst"].as_array().unwrap().len(), 3, "{report}");
    assert!(leftover_namespaces().is_empty(), "the emulated hosts were not removed: {:?}", leftover_namespaces());
}

#[test]
fn bad_shapes_are_refused_before_anything_is_built() {
    let out = volley(&["bench", "network", "--hosts", "3", "--workers", "4"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be positive multiples of --hosts"));
    let out = volley(&["bench", "network", "--jobs", "sort"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown job \"sort\""));
}

#[test]
fn variant_calling_regroups_between_hosts_in_burst_mode_and_through_the_storage_host_in_faas_style() {
    if !support::netns::available() {
        return;
    }
    if let Err(e) = volley_genomics::tools::Tool::check(&volley_genomics::tools::Tool::ALL) {
        assert!(!support::ci(), "{e} (scripts/services installs them)");
        eprintln!("notice: skipping: {e}");
        return;
    }
    let out = volley(&[
        "--output",
        "json",
        "bench",
        "network",
        "--hosts",
        "2",
        "--jobs",
        "genomics",
        "--genomics-workers",
        "4",
        "--genomics-length",
        "400000",
    ]);
    // (The benchmark itself fails unless both modes call the single-node pipeline's records.)
    assert!(out.status.success(), "bench network failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    let rows = report["rows"].as_array().unwrap();
    let row = |mode: &str| {
        rows.iter()
            .find(|r| r["job"] == "genomics" && r["mode"] == mode)
            .unwrap_or_else(|| panic!("no {mode}: {report}"))
    };
    let (burst, faas) = (row("burst"), row("faas"));
    assert_eq!((burst["g"].as_u64(), faas["g"].as_u64()), (Some(2), Some(1)), "{report}");
    let bytes = |r: &serde_json::Value, key: &str| r[key].as_u64().unwrap();
    // Both read the case from the storage host; only the FaaS-style stages
    // send the alignments there and fetch them back.
    let reads = std::cmp::min(bytes(burst, "broker_link_bytes"), bytes(faas, "broker_link_bytes"));
    assert!(reads > 1 << 20, "the case came from the storage host: {report}");
    assert!(bytes(faas, "broker_link_bytes") > bytes(burst, "broker_link_bytes") + (4 << 20), "{report}");
    // The burst's alignments crossed from host to host without the storage host.
    let between_hosts = bytes(burst, "link_bytes") - 2 * bytes(burst, "broker_link_bytes");
    assert!(between_hosts > 1 << 20, "{report}");
    assert!(burst["part_ms"].as_f64().unwrap() > 0.0 && faas["part_ms"].as_f64().unwrap() > 0.0, "{report}");
    assert!(leftover_namespaces().is_empty(), "the emulated hosts were not removed: {:?}", leftover_namespaces());
}
