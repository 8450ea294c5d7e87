//! `volley data gen genomics` and `volley genomics baseline` from the command
//! line, with the real tools (installed by scripts/services).

use volley_testkit as support;

use support::{TempDir, json_ok, stderr, volley};

fn tools_present() -> bool {
    match volley_genomics::tools::Tool::check(&volley_genomics::tools::Tool::ALL) {
        Ok(()) => true,
        Err(e) if support::ci() => panic!("{e} (scripts/services installs them)"),
        Err(e) => {
            eprintln!("notice: skipping: {e}");
            false
        }
    }
}

#[test]
fn a_generated_case_goes_through_the_baseline_and_is_scored() {
    if !tools_present() {
        return;
    }
    let dir = TempDir::new("genomics-cli");
    let case = dir.0.join("case");
    let generated = json_ok(&volley(
        None,
        &["data", "gen", "genomics", "--length", "60000", "--to", case.to_str().unwrap(), "--output", "json"],
    ));
    assert_eq!(generated["files"].as_array().unwrap().len(), 4, "{generated}");
    let file = |name: &str| case.join(name).display().to_string();
    let out = dir.0.join("out").display().to_string();
    let args = [
        "genomics",
        "baseline",
        "--reference",
        &file("reference.fa"),
        "--reads",
        &file("reads_1.fq"),
        "--reads",
        &file("reads_2.fq"),
        "--dir",
        &out,
        "--truth",
        &file("truth.vcf.gz"),
        "--output",
        "json",
    ];
    let report = json_ok(&volley(None, &args));
    let accuracy = &report["accuracy"];
    assert!(accuracy["true_positives"].as_u64().unwrap() > 20, "{report}");
    assert!(accuracy["precision"].as_f64().unwrap() >= 0.99, "{report}");
    // Seeded data: measured 55 of 66 (0.833; the 2 kbp repeat is a larger share of 60 kbp).
    assert!(accuracy["recall"].as_f64().unwrap() >= 0.8, "{report}");
    assert!(std::path::Path::new(report["vcf"].as_str().unwrap()).is_file());

    let missing = volley(
        None,
        &["genomics", "baseline", "--reference", &file("reference.fa"), "--reads", &file("nope.fq"), "--dir", "/tmp"],
    );
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("nope.fq is not a file"), "{}", stderr(&missing));
}

/// `volley ARGS` whose embedded platform keeps its cache in `cache`.
fn volley_cached(cache: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(support::volley_exe())
        .args(args)
        .env_remove("VOLLEY_CONTROLLER")
        .env("VOLLEY_LOCAL_STORAGE", support::fs::tests_root())
        .env("VOLLEY_CACHE_DIR", cache)
        .output()
        .unwrap()
}

/// A simulated case in `dir/case`.
fn generated(dir: &TempDir, spec: &volley_genomics::data::Spec) -> volley_genomics::data::Case {
    volley_genomics::data::generate(&dir.0.join("case"), spec).unwrap()
}

/// The single-node pipeline on `case`, in `dir/baseline`.
fn single_node(dir: &TempDir, case: &volley_genomics::data::Case) -> volley_genomics::baseline::Baseline {
    volley_genomics::baseline::run(&dir.0.join("baseline"), &case.reference, &case.reads, 2).unwrap()
}

/// A local file as the burst's storage URL.
fn url(path: &std::path::Path) -> String {
    format!("file://{}", path.display())
}

/// `bcftools view -H`: a VCF's records without its header (whose command
/// lines differ between the two pipelines).
fn records(vcf: &std::path::Path) -> String {
    bcftools(&["view", "-H"], vcf)
}

/// What `bcftools ARGS VCF` prints.
fn bcftools(args: &[&str], vcf: &std::path::Path) -> String {
    let out = std::process::Command::new("bcftools").args(args).arg(vcf).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_burst_calls_what_the_single_node_pipeline_calls() {
    if !tools_present() {
        return;
    }
    let dir = TempDir::new("genomics-burst");
    let case = generated(&dir, &volley_genomics::data::Spec::default());
    let baseline = single_node(&dir, &case);
    let local = dir.0.display().to_string();
    // A cache of this test's own: the first run indexes, the second finds the index.
    let cache = dir.0.join("cache");
    for (workers, granularity) in [("4", "2"), ("3", "1")] {
        let out = dir.0.join(format!("out-{workers}-{granularity}"));
        let params = serde_json::json!({
            "reference": url(&case.reference),
            "reads": [url(&case.reads[0]), url(&case.reads[1])],
            "output": url(&out),
        })
        .to_string();
        let args = [
            "run",
            "--local-storage",
            &local,
            "genomics",
            "-n",
            workers,
            "-g",
            granularity,
            "--params",
            &params,
            "--output",
            "json",
        ];
        let burst = json_ok(&volley_cached(&cache, &args));
        assert_eq!(burst["state"], "succeeded", "{burst}");
        let indexed = burst["workers"].as_array().unwrap().iter().filter(|w| w["result"]["indexed"] == true).count();
        if workers == "4" {
            // One worker per pack indexes (both packs may miss the cache at once).
            assert!((1..=2).contains(&indexed), "{burst}");
        } else {
            assert_eq!(indexed, 0, "the second run on the same reference finds the index: {burst}");
        }
        let phases: Vec<&str> =
            burst["workers"][0]["phases"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(phases, ["index", "split", "align", "shuffle", "call", "merge"]);
        let reads: u64 =
            burst["workers"].as_array().unwrap().iter().map(|w| w["result"]["reads"].as_u64().unwrap()).sum();
        assert_eq!(reads, 13_333, "every pair once (200 kbp at 20x, 150 bp reads)");
        assert!(out.join("_SUCCESS").is_file() && out.join("calls.vcf.gz.tbi").is_file());
        let (ours, theirs) = (records(&out.join("calls.vcf.gz")), records(&baseline.vcf));
        assert!(theirs.lines().count() > 150);
        assert_eq!(ours, theirs, "{workers} workers in packs of {granularity}: the same records as one machine");
    }
}

#[test]
fn bad_reads_and_a_foreign_reference_are_refused_by_name() {
    if !tools_present() {
        return;
    }
    let dir = TempDir::new("genomics-bad");
    let spec = volley_genomics::data::Spec {
        contigs: vec![("chr1".into(), 30_000)],
        repeat: 0,
        copies: 0,
        coverage: 5.0,
        ..Default::default()
    };
    let case = generated(&dir, &spec);
    let other = volley_genomics::data::generate(&dir.0.join("other"), &volley_genomics::data::Spec { seed: 7, ..spec })
        .unwrap();
    let reads = std::fs::read(&case.reads[0]).unwrap();
    let truncated = dir.0.join("truncated.fq");
    std::fs::write(&truncated, &reads[..reads.len() - 40]).unwrap();
    let local = dir.0.display().to_string();
    let run = |reference: &std::path::Path, reads: &std::path::Path| {
        let params =
            serde_json::json!({"reference": url(reference), "reads": [url(reads)], "output": url(&dir.0.join("out"))})
                .to_string();
        volley(None, &["run", "--local-storage", &local, "genomics", "-n", "2", "--params", &params])
    };
    let out = run(&case.reference, &truncated);
    assert!(!out.status.success());
    let said = stderr(&out);
    assert!(said.contains("truncated.fq: the record at byte") && said.contains("quality has"), "{said}");
    let out = run(&other.reference, &case.reads[0]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("aligned to the reference: do the reads come from it?"), "{}", stderr(&out));
    assert!(!dir.0.join("out").join("_SUCCESS").exists(), "no output that looks complete");

    // One burst per stage: the failing align stage ends the run, named,
    // and the call and merge stages are never submitted.
    let path = |p: &std::path::Path| p.display().to_string();
    let to = dir.0.join("staged");
    let args = ["genomics", "call", "--reference", &path(&case.reference), "--reads", &path(&truncated)];
    let out = volley(None, &[&args[..], &["--to", &path(&to), "-n", "2", "--stages", "--output", "json"]].concat());
    assert!(!out.status.success());
    let said = stderr(&out);
    assert!(said.contains("failed") && said.contains("truncated.fq: the record at byte"), "{said}");
    let ended: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ended["request"]["params"]["stage"], "align", "only the align stage ran: {ended}");
    assert!(said.contains(ended["id"].as_str().unwrap()), "the error names the burst: {said}");
    assert!(!to.join("_SUCCESS").exists() && !to.join("calls.vcf.gz").exists());
}

#[test]
fn genomics_call_takes_paths_and_s3_and_gives_the_same_calls() {
    if !tools_present() {
        return;
    }
    let dir = TempDir::new("genomics-call");
    let spec = volley_genomics::data::Spec {
        contigs: vec![("chr1".into(), 60_000), ("chr2".into(), 40_000)],
        ..Default::default()
    };
    let case = generated(&dir, &spec);
    let baseline = single_node(&dir, &case);
    let expected = records(&baseline.vcf);
    let path = |p: &std::path::Path| p.display().to_string();

    // Plain paths: the command makes them file:// URLs and grants their directories to the packs.
    let out = dir.0.join("calls");
    let args = [
        "genomics",
        "call",
        "--reference",
        &path(&case.reference),
        "--reads",
        &path(&case.reads[0]),
        "--reads",
        &path(&case.reads[1]),
        "--to",
        &path(&out),
        "-n",
        "3",
    ];
    let run = volley(None, &args);
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(records(&out.join("calls.vcf.gz")), expected);

    // The same on S3, as the FaaS original ran it: three bursts of one worker
    // per pack, the alignments regrouped through the bucket.
    support::on_s3("genomics", |base| {
        for file in [&case.reference, &case.reads[0], &case.reads[1]] {
            let name = file.file_name().unwrap().to_str().unwrap();
            support::write_object(base, name, &std::fs::read(file).unwrap());
        }
        let url = |name: &str| format!("{base}/{name}");
        let to = url("calls");
        let args = [
            "genomics",
            "call",
            "--reference",
            &url("reference.fa"),
            "--reads",
            &url("reads_1.fq"),
            "--reads",
            &url("reads_2.fq"),
            "--to",
            &to,
            "-n",
            "3",
            "-g",
            "1",
            "--stages",
            "--output",
            "json",
        ];
        let bursts = json_ok(&volley(None, &args));
        let stages: Vec<(u64, &str)> = bursts
            .as_array()
            .unwrap()
            .iter()
            .map(|b| (b["workers"].as_array().unwrap().len() as u64, b["request"]["params"]["stage"].as_str().unwrap()))
            .collect();
        assert_eq!(stages, [(3, "align"), (3, "call"), (1, "merge")], "{bursts}");
        let stored: u64 = bursts[0]["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["result"]["stored_bytes"].as_u64().unwrap())
            .sum();
        assert!(stored > 100_000, "the alignments went through the bucket: {bursts}");
        let vcf = dir.0.join("from-s3.vcf.gz");
        std::fs::write(&vcf, support::read_object(&to, "calls.vcf.gz")).unwrap();
        assert_eq!(records(&vcf), expected, "the calls on S3");
        assert!(support::read_object(&to, "_SUCCESS").is_empty());
        let left: Vec<String> =
            support::list_objects(&to).into_iter().map(|(k, _)| k).filter(|k| k.contains("_regroup")).collect();
        assert!(left.is_empty(), "the merge removed the regrouped alignments: {left:?}");
    });
}

#[test]
fn the_faas_style_stages_as_a_workflow_give_the_same_calls() {
    if !tools_present() {
        return;
    }
    let dir = TempDir::new("genomics-flow");
    let spec = volley_genomics::data::Spec { contigs: vec![("chr1".into(), 80_000)], ..Default::default() };
    let case = generated(&dir, &spec);
    let baseline = single_node(&dir, &case);
    let out = dir.0.join("calls");
    // A failed earlier run's leftovers: a stale part of region 0 must be overwritten, not mixed in.
    std::fs::create_dir_all(out.join("_regroup/to-00000")).unwrap();
    std::fs::write(out.join("_regroup/to-00000/from-00003.sam"), "garbage\n").unwrap();
    let input = serde_json::json!({
        "reference": url(&case.reference),
        "reads_1": url(&case.reads[0]),
        "reads_2": url(&case.reads[1]),
        "output": url(&out),
    });
    let flow = format!("{}/../../examples/flows/genomics.yaml", env!("CARGO_MANIFEST_DIR"));
    let run = json_ok(&volley(None, &["flow", "run", &flow, "--input", &input.to_string(), "--output", "json"]));
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(records(&out.join("calls.vcf.gz")), records(&baseline.vcf));
    assert!(out.join("_SUCCESS").is_file());
    assert_eq!(files_under(&out.join("_regroup")), 0, "the merge removed the regrouped alignments");
    let stored: u64 =
        run["steps"]["align"]["output"].as_array().unwrap().iter().map(|w| w["stored_bytes"].as_u64().unwrap()).sum();
    assert!(stored > 1_000_000, "the alignments went through storage: {run}");
}

/// Files (not directories) anywhere under `dir`.
fn files_under(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries.flatten().map(|e| if e.path().is_dir() { files_under(&e.path()) } else { 1 }).sum()
}

/// Debian's bowtie2-examples: the lambda phage genome and 10,000 real read
/// pairs, gzipped (plain gzip, as sequencers' files usually are).
const LAMBDA: &str = "/usr/share/doc/bowtie2/examples";

#[test]
fn the_lambda_phage_reads_gzipped_are_prepared_once_and_give_the_single_node_calls() {
    if !tools_present() {
        return;
    }
    let lambda = std::path::Path::new(LAMBDA);
    if !lambda.join("reads/reads_1.fq.gz").is_file() {
        assert!(!support::ci(), "bowtie2-examples is not installed (scripts/services installs it)");
        eprintln!("notice: skipping: apt-get install bowtie2-examples for the lambda phage case");
        return;
    }
    let dir = TempDir::new("genomics-lambda");
    let copy = |from: &str, to: &str| {
        std::fs::copy(lambda.join(from), dir.0.join(to)).unwrap();
        dir.0.join(to).display().to_string()
    };
    let reference = copy("reference/lambda_virus.fa.gz", "lambda_virus.fa.gz");
    let reads = [copy("reads/reads_1.fq.gz", "reads_1.fq.gz"), copy("reads/reads_2.fq.gz", "reads_2.fq.gz")];
    let call = |reads: &[String], to: &str| {
        let to = dir.0.join(to).display().to_string();
        let mut args = vec!["genomics", "call", "--reference", &reference, "--to", &to, "-n", "3", "-g", "1"];
        for r in reads {
            args.extend(["--reads", r]);
        }
        volley(None, &args)
    };

    // Plain gzip cannot be split by byte ranges: refused with the way out, nothing written.
    let refused = call(&reads, "refused");
    assert!(!refused.status.success());
    let said = stderr(&refused);
    assert!(said.contains("reads_1.fq.gz is plain gzip") && said.contains("volley genomics prepare-reads"), "{said}");
    assert!(!dir.0.join("refused/_SUCCESS").exists());

    let prepared = json_ok(&volley(None, &["genomics", "prepare-reads", &reads[0], &reads[1], "--output", "json"]));
    let bgz: Vec<String> =
        prepared.as_array().unwrap().iter().map(|p| p["file"].as_str().unwrap().to_string()).collect();
    assert!(bgz[0].ends_with("reads_1.fq.bgz") && std::path::Path::new(&format!("{}.gzi", bgz[0])).is_file());
    let out = call(&bgz, "calls");
    assert!(out.status.success(), "{}", stderr(&out));

    // The single node on the original gzipped files.
    let base = volley_genomics::baseline::run(
        &dir.0.join("baseline"),
        std::path::Path::new(&reference),
        &[reads[0].clone().into(), reads[1].clone().into()],
        2,
    )
    .unwrap();
    // The same variants and genotypes; annotations such as DP4 and MQSBZ may
    // differ: minimap2 infers the pairs' insert size from each batch of reads
    // it aligns, and these real reads (40-366 bp, random reads among them)
    // give each worker's share a slightly different estimate.
    let expected = sites(&base.vcf);
    assert!(expected.lines().count() > 50, "the lambda reads carry variants: {expected}");
    let ours = sites(&dir.0.join("calls/calls.vcf.gz"));
    let differ: Vec<_> = ours.lines().zip(expected.lines()).filter(|(a, b)| a != b).take(3).collect();
    assert!(ours.lines().count() == expected.lines().count() && differ.is_empty(), "{differ:?}");
}

/// A VCF's variants and genotypes: contig, position, alleles, GT.
fn sites(vcf: &std::path::Path) -> String {
    bcftools(&["query", "-f", "%CHROM\t%POS\t%REF\t%ALT\t[%GT]\n"], vcf)
}

#[test]
fn a_contig_no_read_covers_gets_no_calls_in_either_pipeline() {
    if !tools_present() {
        return;
    }
    let dir = TempDir::new("genomics-uncovered");
    let spec = volley_genomics::data::Spec { contigs: vec![("chr1".into(), 60_000)], ..Default::default() };
    let case = generated(&dir, &spec);
    // A second contig as long as the first that no read comes from: with
    // regions by length, two of four workers would get nothing to call.
    let mut fasta = std::fs::read(&case.reference).unwrap();
    fasta.extend_from_slice(b">chrU\n");
    let mut x = 7u64;
    for _ in 0..1000 {
        for _ in 0..60 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            fasta.push(b"ACGT"[(x >> 62) as usize]);
        }
        fasta.push(b'\n');
    }
    std::fs::write(&case.reference, fasta).unwrap();
    let baseline = single_node(&dir, &case);
    for stage in ["all", "staged"] {
        let out = dir.0.join(stage);
        let params = |stage: &str, extra: serde_json::Value| {
            let mut p = serde_json::json!({
                "reference": url(&case.reference),
                "reads": [url(&case.reads[0]), url(&case.reads[1])],
                "output": url(&out),
                "stage": stage,
            });
            p.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            p.to_string()
        };
        let local = dir.0.display().to_string();
        let run = |workers: &str, params: String| {
            json_ok(&volley(
                None,
                &[
                    "run",
                    "--local-storage",
                    &local,
                    "genomics",
                    "-n",
                    workers,
                    "-g",
                    "1",
                    "--params",
                    &params,
                    "--output",
                    "json",
                ],
            ))
        };
        if stage == "all" {
            let burst = run("4", params("all", serde_json::json!({})));
            // Balanced by coverage: chrU joins the last region instead of taking two workers.
            let bases: Vec<u64> =
                burst["workers"].as_array().unwrap().iter().map(|w| w["result"]["bases"].as_u64().unwrap()).collect();
            assert!(bases[..3].iter().sum::<u64>() < 60_000 && bases[3] > 60_000, "{bases:?}");
        } else {
            // By length: workers 2 and 3 call chrU, where no read lies.
            run("4", params("align", serde_json::json!({})));
            let call = run("4", params("call", serde_json::json!({})));
            let fetched: Vec<u64> = call["workers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| w["result"]["fetched_bytes"].as_u64().unwrap())
                .collect();
            assert_eq!(fetched[2..], [0, 0], "nothing aligned to chrU: {call}");
            run("1", params("merge", serde_json::json!({"regions": 4})));
        }
        let ours = records(&out.join("calls.vcf.gz"));
        assert!(!ours.contains("chrU"), "no call where no read lies");
        assert_eq!(ours, records(&baseline.vcf), "{stage}");
    }
}

#[test]
fn the_benchmark_runs_every_mode_and_checks_their_calls() {
    if !tools_present() {
        return;
    }
    let dir = TempDir::new("genomics-bench");
    let args = [
        "bench",
        "genomics",
        "--length",
        "100000",
        "--contigs",
        "1",
        "--coverage",
        "10",
        "--workers",
        "3",
        "--granularity",
        "1",
        "--dir",
        dir.0.to_str().unwrap(),
        "--output",
        "json",
    ];
    let report = json_ok(&volley(None, &args));
    let modes: Vec<&str> = report["rows"].as_array().unwrap().iter().map(|r| r["mode"].as_str().unwrap()).collect();
    assert_eq!(modes, ["single node", "burst", "faas style", "burst, cached index"]);
    for row in report["rows"].as_array().unwrap() {
        assert_eq!(row["accuracy"]["same_as_single_node"], true, "{row}");
        assert!(row["accuracy"]["records"].as_u64().unwrap() > 50, "{row}");
    }
    let row = |mode: &str| report["rows"].as_array().unwrap().iter().find(|r| r["mode"] == mode).unwrap().clone();
    assert!(row("burst")["indexed_by"].as_u64().unwrap() >= 1 && row("burst, cached index")["indexed_by"] == 0);
    assert!(row("faas style")["regroup_storage_bytes"].as_u64().unwrap() > 1_000_000);
    // Three packs of one: about two thirds of the alignments cross between packs.
    assert!(row("burst")["between_packs_bytes"].as_u64().unwrap() > 1_000_000, "{report}");
    assert!(report["burst_over_single_node"].as_f64().unwrap() > 0.0);
    // The run's files are gone.
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 0);
}
