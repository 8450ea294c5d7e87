//! TeraSort end to end at small sizes: generate, sort as a burst, validate,
//! on local files and on the S3-compatible server; and what bad data does.

use volley_testkit as support;

use support::{TempDir, json_ok, stderr, stdout, volley};

/// gen → run → validate at `base` (a storage URL prefix).
fn sort_and_validate(base: &str, records: &str, workers: &str, granularity: &str, transport: &str) {
    let (input, output) = (format!("{base}/in"), format!("{base}/out"));
    let out = volley(None, &["data", "gen", "terasort", "--records", records, "--parts", "3", "--to", &input]);
    assert!(out.status.success(), "{}", stderr(&out));
    let params = serde_json::json!({"input": input, "output": output}).to_string();
    let args = [
        "run",
        "terasort",
        "-n",
        workers,
        "-g",
        granularity,
        "--transport",
        transport,
        "--params",
        &params,
        "--output",
        "json",
    ];
    let burst = json_ok(&volley(None, &args));
    assert_eq!(burst["state"], "succeeded", "{burst}");
    let sorted: u64 =
        burst["workers"].as_array().unwrap().iter().map(|w| w["result"]["records_out"].as_u64().unwrap()).sum();
    assert_eq!(sorted.to_string(), records);
    // What the dashboard draws: each worker's phases, and the shuffle's bytes between packs.
    for w in burst["workers"].as_array().unwrap() {
        let phases: Vec<&str> = w["phases"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(phases, ["read", "sample", "partition", "shuffle", "sort", "write"], "{w}");
    }
    let sent: u64 = burst["packs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["sent_bytes"].as_array().unwrap())
        .map(|b| b.as_u64().unwrap())
        .sum();
    assert!(sent > 0, "the shuffle crossed packs: {burst}");
    let report = json_ok(&volley(
        None,
        &["data", "validate", "terasort", "--input", &input, "--sorted", &output, "--output", "json"],
    ));
    assert_eq!(report["output"], report["input"], "same records, same checksum: {report}");
}

#[test]
fn terasort_sorts_local_files() {
    support::on_local_dir("terasort", |base| sort_and_validate(base, "30000", "6", "3", "uds"));
}

/// The same-host default: the shuffle's bundles (about 0.7 MiB per pack
/// pair) cross between the sandboxed pack processes through shared memory.
#[test]
fn terasort_shuffles_through_shared_memory_between_pack_processes() {
    support::on_local_dir("terasort-shm", |base| sort_and_validate(base, "30000", "6", "3", "shm"));
}

#[test]
fn terasort_sorts_objects_on_s3() {
    support::on_s3("terasort", |base| sort_and_validate(base, "20000", "4", "2", "tcp"));
}

#[test]
fn bad_data_fails_with_the_object_named_and_no_complete_looking_output() {
    let dir = TempDir::new("terasort-bad");
    let base = format!("file://{}", dir.0.display());
    // A record file cut short.
    std::fs::create_dir_all(dir.0.join("in")).unwrap();
    std::fs::write(dir.0.join("in/part-00000"), vec![7u8; 250]).unwrap();
    let params = serde_json::json!({"input": format!("{base}/in"), "output": format!("{base}/out")}).to_string();
    let out = volley(None, &["run", "terasort", "-n", "2", "--params", &params]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("part-00000 is not a record file"), "{}", stderr(&out));
    // A missing input.
    let params = serde_json::json!({"input": format!("{base}/nothing"), "output": format!("{base}/out")}).to_string();
    let out = volley(None, &["run", "terasort", "-n", "2", "--params", &params]);
    assert!(stderr(&out).contains("holds no part-* objects"), "{}", stderr(&out));

    // A good run, then damage: validation catches disorder and lost records.
    let (input, output) = (format!("{base}/good"), format!("{base}/sorted"));
    assert!(volley(None, &["data", "gen", "terasort", "--records", "5000", "--to", &input]).status.success());
    let params = serde_json::json!({"input": input, "output": output}).to_string();
    assert!(volley(None, &["run", "terasort", "-n", "3", "-g", "3", "--params", &params]).status.success());
    let validate = || volley(None, &["data", "validate", "terasort", "--input", &input, "--sorted", &output]);
    assert!(validate().status.success(), "{}", stderr(&validate()));
    let part = dir.0.join("sorted/part-00001");
    let mut bytes = std::fs::read(&part).unwrap();
    let (a, b) = bytes.split_at_mut(100);
    a.swap_with_slice(&mut b[..100]);
    std::fs::write(&part, &bytes).unwrap();
    let out = validate();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not sorted") || stderr(&out).contains("sorts before"), "{}", stderr(&out));
    std::fs::remove_file(&part).unwrap();
    assert!(stderr(&validate()).contains("the output has"), "lost records are counted");
    // Without the success marker, the output is not complete, whatever parts it holds.
    std::fs::remove_file(dir.0.join("sorted/_SUCCESS")).unwrap();
    assert!(stderr(&validate()).contains("_SUCCESS marker"), "{}", stdout(&validate()));
}

#[test]
fn a_retried_terasort_leaves_one_complete_output_without_duplicates() {
    let dir = TempDir::new("terasort-retry");
    let base = format!("file://{}", dir.0.display());
    let (input, output) = (format!("{base}/in"), format!("{base}/out"));
    assert!(volley(None, &["data", "gen", "terasort", "--records", "20000", "--to", &input]).status.success());
    let validate = || volley(None, &["data", "validate", "terasort", "--input", &input, "--sorted", &output]);

    // An earlier run with more workers leaves more parts than the next run writes.
    let params = serde_json::json!({"input": input, "output": output}).to_string();
    assert!(volley(None, &["run", "terasort", "-n", "6", "-g", "3", "--params", &params]).status.success());
    assert!(dir.0.join("out/part-00005").exists());

    // Attempt 1 fails after rank 1 wrote its part; attempt 2 runs whole on fresh packs.
    let params = serde_json::json!({
        "input": input, "output": output, "inject_failure": {"rank": 1, "attempts": 1}
    })
    .to_string();
    let args = ["run", "terasort", "-n", "4", "-g", "2", "--retries", "1", "--params", &params, "--output", "json"];
    let burst = json_ok(&volley(None, &args));
    assert_eq!(burst["state"], "succeeded", "{burst}");
    assert_eq!(burst["attempt"], 2, "{burst}");
    let first = burst["attempt_errors"][0].as_str().unwrap();
    assert!(first.contains("failed on purpose after writing part-00001"), "{first}");
    // Exactly this run's parts, each record once.
    let mut parts: Vec<String> = std::fs::read_dir(dir.0.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    parts.sort();
    assert_eq!(parts, ["_SUCCESS", "part-00000", "part-00001", "part-00002", "part-00003"]);
    assert!(validate().status.success(), "{}", stderr(&validate()));

    // With no retries left, the failed attempt leaves no output that looks complete.
    let args = ["run", "terasort", "-n", "4", "-g", "2", "--params", &params];
    assert!(!volley(None, &args).status.success());
    assert!(dir.0.join("out/part-00001").exists(), "rank 1 wrote its part before failing");
    assert!(stderr(&validate()).contains("_SUCCESS marker"), "{}", stderr(&validate()));
}

#[test]
fn the_demo_generates_sorts_and_validates_and_says_so() {
    let dir = TempDir::new("terasort-demo");
    let storage = format!("file://{}", dir.0.display());
    let args = ["demo", "terasort", "--size", "3000000", "--workers", "4", "--granularity", "2", "--storage", &storage];
    let out = volley(None, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for step in ["1/3 generating 30000 records", "2/3 sorting as one burst of 4 workers in 2 packs", "3/3 validating"] {
        assert!(text.contains(step), "{text}");
    }
    assert!(text.contains("valid in") && text.contains("30000 records in 4 parts"), "{text}");
    // Again, as JSON, replacing the first run's data.
    let report = json_ok(&volley(None, &[&args[..], &["--output", "json"]].concat()));
    assert_eq!(report["validation"]["output"]["records"], 30000, "{report}");
    assert_eq!(report["validation"]["output"], report["validation"]["input"], "{report}");
    // Bad input is refused before anything runs.
    let out = volley(None, &["demo", "terasort", "--size", "50", "--storage", &storage]);
    assert!(stderr(&out).contains("at least one 100-byte record"), "{}", stderr(&out));
}

/// The names and contents of the files in `dir` (to see that nothing changed).
fn snapshot(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap_or_default()))
        .collect();
    files.sort();
    files
}

#[test]
fn an_output_on_the_input_is_refused_before_anything_is_touched() {
    let dir = TempDir::new("terasort-same");
    let input = format!("file://{}/data", dir.0.display());
    assert!(
        volley(None, &["data", "gen", "terasort", "--records", "3000", "--parts", "3", "--to", &input])
            .status
            .success()
    );
    let before = snapshot(&dir.0.join("data"));
    // The same place (spelled differently), a place inside it, a place holding it.
    let outputs = [
        (format!("{}/./data/", dir.0.display()), "is the input"),
        (format!("file://{}/data/sorted", dir.0.display()), "lies inside the input"),
        (format!("file://{}", dir.0.display()), "contains the input"),
    ];
    for (output, says) in outputs {
        let extra = [
            ("terasort", serde_json::json!({})),
            ("pagerank", serde_json::json!({"vertices": 10})),
            ("kmeans", serde_json::json!({"dims": 2, "k": 2})),
        ];
        for (function, extra) in extra {
            let mut params = serde_json::json!({"input": input, "output": output});
            params.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            let out = volley(None, &["run", function, "-n", "2", "--params", &params.to_string()]);
            assert!(!out.status.success(), "{function} into {output} ran");
            assert!(stderr(&out).contains(says), "{function} into {output}: {}", stderr(&out));
        }
        assert_eq!(snapshot(&dir.0.join("data")), before, "the input is untouched after {output}");
    }
}

#[test]
fn data_gen_refuses_a_prefix_holding_a_data_set_unless_told_to_overwrite() {
    let dir = TempDir::new("gen-overwrite");
    let to = format!("file://{}", dir.0.display());
    let generate = |parts: &str, extra: &[&str]| {
        let mut args = vec!["data", "gen", "terasort", "--records", "8000", "--parts", parts, "--to", &to];
        args.extend_from_slice(extra);
        volley(None, &args)
    };
    assert!(generate("8", &[]).status.success());
    let out = generate("2", &[]);
    assert!(!out.status.success(), "2 new parts would have been mixed with 6 stale ones");
    assert!(
        stderr(&out).contains("already holds 8 part-* objects") && stderr(&out).contains("--overwrite"),
        "{}",
        stderr(&out)
    );
    assert_eq!(snapshot(&dir.0).len(), 8, "the old data set is untouched");
    let out = generate("2", &["--overwrite"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let names: Vec<String> = snapshot(&dir.0).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec!["part-00000", "part-00001"]);
}

#[test]
fn half_equal_keys_spread_over_the_workers_and_still_sort() {
    support::on_local_dir("terasort-skew", |base| {
        let (input, output) = (format!("{base}/in"), format!("{base}/out"));
        let args = ["data", "gen", "terasort", "--records", "40000", "--duplicate-keys", "0.5", "--to", &input];
        assert!(volley(None, &args).status.success());
        let params = serde_json::json!({"input": input, "output": output}).to_string();
        let burst =
            json_ok(&volley(None, &["run", "terasort", "-n", "8", "-g", "4", "--params", &params, "--output", "json"]));
        let counts: Vec<u64> =
            burst["workers"].as_array().unwrap().iter().map(|w| w["result"]["records_out"].as_u64().unwrap()).collect();
        let mean = counts.iter().sum::<u64>() as f64 / counts.len() as f64;
        let worst = *counts.iter().max().unwrap() as f64 / mean;
        assert!(worst <= 1.3, "the busiest worker holds {worst:.2}x the mean: {counts:?}");
        let report = json_ok(&volley(
            None,
            &["data", "validate", "terasort", "--input", &input, "--sorted", &output, "--output", "json"],
        ));
        assert_eq!(report["output"], report["input"], "{report}");
    });
}
