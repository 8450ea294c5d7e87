//! WebAssembly functions (issue 15): modules built by the tests for
//! wasm32-wasip1-threads with the guest SDK, deployed, and run as bursts of
//! packs with one shared memory each; the whole guest API checked by the tour
//! module; failures named; modules that cannot run refused with the reason.
#![cfg(feature = "wasm")]

use volley_testkit as support;

use serde_json::Value;
use support::{Platform, TempDir, json_ok, stderr};

/// The hits `examples/pi` and `examples/wasm-pi` count on `rank` (the same generator).
fn native_hits(rank: u64, samples: u64) -> u64 {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ (rank + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..samples)
        .filter(|_| {
            let (x, y) = (next(), next());
            x * x + y * y <= 1.0
        })
        .count() as u64
}

fn workers(burst: &Value) -> &Vec<Value> {
    burst["workers"].as_array().unwrap()
}

#[test]
fn a_webassembly_function_deploys_and_runs_as_a_burst() {
    let Some(module) = support::wasm::guest("wasm-pi") else { return };
    let p = Platform::up(&[]);
    let out = p.cli(&["deploy", "pi", module.to_str().unwrap(), "--description", "pi in WebAssembly"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let burst =
        json_ok(&p.cli(&["run", "pi", "-n", "8", "-g", "4", "--params", r#"{"samples":20000}"#, "--output", "json"]));
    assert_eq!(burst["state"], "succeeded", "{burst}");
    let mut total = 0;
    for w in workers(&burst) {
        let rank = w["rank"].as_u64().unwrap();
        let hits = native_hits(rank, 20000);
        assert_eq!(w["result"]["hits"], hits, "rank {rank} counts as the native function does");
        total += hits;
    }
    let pi = 4.0 * total as f64 / (8.0 * 20000.0);
    assert!(workers(&burst).iter().all(|w| w["result"]["pi"].as_f64() == Some(pi)), "{burst}");

    // Warm packs (the module's start-up already done) give the same answer.
    let again =
        json_ok(&p.cli(&["run", "pi", "-n", "8", "-g", "4", "--params", r#"{"samples":20000}"#, "--output", "json"]));
    assert_eq!(again["workers"][0]["result"], burst["workers"][0]["result"]);

    let out = p.cli(&["run", "pi", "-n", "4", "-g", "2", "--params", r#"{"fail_rank":2}"#]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("rank 2 was asked to fail"), "{}", stderr(&out));
}

#[test]
fn a_guest_written_in_c_runs_as_a_burst() {
    let Some(module) = support::wasm::c_guest() else { return };
    let p = Platform::up(&[]);
    assert!(p.cli(&["deploy", "pi", module.to_str().unwrap()]).status.success());
    let _ = std::fs::remove_file(&module);
    let burst =
        json_ok(&p.cli(&["run", "pi", "-n", "8", "-g", "4", "--params", r#"{"samples":20000}"#, "--output", "json"]));
    assert_eq!(burst["state"], "succeeded", "{burst}");
    let total: u64 = (0..8).map(|rank| native_hits(rank, 20000)).sum();
    for w in workers(&burst) {
        let rank = w["rank"].as_u64().unwrap();
        assert_eq!(w["result"]["language"], "C");
        assert_eq!(w["result"]["hits"], native_hits(rank, 20000), "rank {rank} counts as the Rust functions do");
        assert_eq!(w["result"]["total_hits"], total);
        assert_eq!(w["result"]["total_samples"], 8 * 20000);
    }
}

#[test]
fn every_call_of_the_guest_sdk_works_across_packs_and_in_one_memory() {
    let Some(module) = support::wasm::guest("wasm-tour") else { return };
    let p = Platform::up(&[]);
    let files = TempDir::new("wasm-tour");
    assert!(p.cli(&["deploy", "tour", module.to_str().unwrap()]).status.success());
    let mut stamps = std::collections::BTreeSet::new();
    for (n, g) in [(6, 3), (4, 4), (3, 1)] {
        let params = serde_json::json!({ "storage": format!("file://{}", files.0.display()) }).to_string();
        let burst = json_ok(&p.cli(&[
            "run",
            "tour",
            "-n",
            &n.to_string(),
            "-g",
            &g.to_string(),
            "--params",
            &params,
            "--output",
            "json",
        ]));
        assert_eq!(burst["state"], "succeeded", "n={n} g={g}: {burst}");
        for w in workers(&burst) {
            let r = &w["result"];
            assert_eq!(r["arrived_in_pack"], g, "the pack's workers share one memory: {r}");
            assert_eq!(r["sum_of_ranks"], n * (n - 1) / 2);
            assert_eq!(r["workers"], n);
            assert_eq!(r["outside_refused"], true, "the module sees only its own files: {r}");
            assert_eq!(r["storage"], true);
            stamps.insert(r["init_stamp"].as_u64().unwrap());
            // Counted by the communicator: bytes left the pack only where there are other packs.
            assert_eq!(r["remote_bytes"].as_u64().unwrap() > 0, n > g, "n={n} g={g}: {r}");
            let local = w["rank"].as_u64().unwrap() % g;
            if g >= 2 && local == 1 {
                assert_eq!(r["handed_in_place"], true, "a buffer sent in the pack is handed over, not copied: {r}");
            }
        }
    }
    // The module's start-up drew one random number, once for the invoker:
    // every pack of every burst started from its snapshot.
    assert_eq!(stamps.len(), 1, "one start-up for all packs: {stamps:?}");
}

#[test]
fn a_start_up_that_cannot_be_snapshotted_runs_in_every_pack_process() {
    let Some(module) = support::wasm::guest_with("wasm-tour", "threaded-init") else { return };
    let p = Platform::up(&[]);
    assert!(p.cli(&["deploy", "tour", module.to_str().unwrap()]).status.success());
    let mut stamps = std::collections::BTreeSet::new();
    for _ in 0..2 {
        let burst = json_ok(&p.cli(&["run", "tour", "-n", "4", "-g", "2", "--output", "json"]));
        assert_eq!(burst["state"], "succeeded", "{burst}");
        stamps.extend(workers(&burst).iter().map(|w| w["result"]["init_stamp"].as_u64().unwrap()));
    }
    assert_eq!(stamps.len(), 4, "each of the 4 pack processes ran the start-up: {stamps:?}");
    let marks: Vec<String> = std::fs::read_dir(p.role.data_dir.join("invoker/wasm"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "nosnapshot"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert!(marks.len() == 1 && marks[0].contains("threads of its own"), "{marks:?}");
}

#[test]
fn a_failing_worker_fails_the_burst_with_its_own_words() {
    let Some(module) = support::wasm::guest("wasm-tour") else { return };
    let p = Platform::up(&[]);
    assert!(p.cli(&["deploy", "fail", module.to_str().unwrap()]).status.success());
    for (how, said) in
        [("error", "rank 1 was asked to fail"), ("panic", "deliberate panic on rank 1"), ("exit", "exited with code 7")]
    {
        let params = serde_json::json!({ "rank": 1, "how": how }).to_string();
        let out = p.cli(&["run", "fail", "-n", "4", "-g", "2", "--params", &params, "--output", "json"]);
        assert!(!out.status.success(), "{how}");
        let burst: Value = serde_json::from_slice(&out.stdout).unwrap();
        let error = burst["error"].as_str().unwrap_or_default();
        assert!(error.contains(said), "{how}: the burst names the cause: {burst}");
    }
    support::eventually(20, "no pack process left", || support::descendants_of(p.role.pid()).is_empty());
}

#[test]
fn modules_that_cannot_run_are_refused_with_the_reason() {
    let p = Platform::up(&["--warm-pool", "0"]);
    let dir = TempDir::new("modules");
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.0.join(name);
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    };
    // A component (layer 1) is refused at deploy.
    let component = write("component.wasm", b"\0asm\x0d\0\x01\0");
    let out = p.cli(&["deploy", "component", &component]);
    assert!(stderr(&out).contains("component"), "{}", stderr(&out));
    // A valid module of no Volley guest: deployed, refused when run, with what to do.
    let empty = write("empty.wasm", b"\0asm\x01\0\0\0");
    assert!(p.cli(&["deploy", "empty", &empty]).status.success());
    let out = p.cli(&["run", "empty", "-n", "2", "--output", "json"]);
    let burst: Value = serde_json::from_slice(&out.stdout).unwrap();
    let error = burst["error"].as_str().unwrap_or_default();
    assert!(error.contains("shared memory") && error.contains("wasm32-wasip1-threads"), "{burst}");
    // Garbage after the magic: refused by the compiler, not run.
    let broken = write("broken.wasm", b"\0asm\x01\0\0\0\x01\xff\xff");
    assert!(p.cli(&["deploy", "broken", &broken]).status.success());
    let out = p.cli(&["run", "broken", "-n", "1", "--output", "json"]);
    let burst: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(burst["error"].as_str().unwrap_or_default().contains("cannot compile the WebAssembly module"), "{burst}");
}

#[test]
fn bench_wasm_measures_webassembly_packs_beside_native_ones() {
    let (Some(tour), Some(pi)) = (support::wasm::guest("wasm-tour"), support::wasm::guest("wasm-pi")) else { return };
    let native_pi = std::path::PathBuf::from(env!("CARGO_BIN_EXE_volley")).with_file_name("pi");
    let out = support::volley(
        None,
        &[
            "bench",
            "wasm",
            "--tour",
            tour.to_str().unwrap(),
            "--pi",
            pi.to_str().unwrap(),
            "--native-pi",
            native_pi.to_str().unwrap(),
            "--workers",
            "4",
            "--granularity",
            "2",
            "--repeat",
            "1",
            "--samples",
            "2000",
            "--pi-runs",
            "1",
            "--handoff",
            "64KiB",
            "--handoff-rounds",
            "3",
            "--a2a-bytes",
            "4KiB",
            "--a2a-granularity",
            "16,4",
            "--a2a-rounds",
            "2",
            "--output",
            "json",
        ],
    );
    let report = json_ok(&out);
    let rows = report["startup"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "native, native (sandboxed where root), wasm: {report}");
    assert!(
        rows.iter()
            .all(|r| r["warm"]["p50_us"].as_f64().unwrap() > 0.0 && r["idle_kb_per_worker"].as_f64().unwrap() > 0.0)
    );
    for kind in ["native", "wasm"] {
        let c = &report[kind];
        assert!(c["pi_ms"][0].as_f64().unwrap() > 0.0, "{kind}: {c}");
        assert_eq!(c["handoff"][0][0], 65536, "{kind}: {c}");
        assert!(c["handoff"][0][1]["p50_us"].as_f64().unwrap() > 0.0, "{kind}: {c}");
        assert_eq!(c["a2a"].as_array().unwrap().len(), 2, "{kind}: {c}");
    }
    assert!(report["wasm"]["handoff_copy"][0][1]["p50_us"].as_f64().unwrap() > 0.0);
}
