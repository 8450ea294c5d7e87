//! `volley slurm` against a real Slurm: four simulated nodes n1..n4 on
//! loopback, one slurmd each (`scripts/services` sets them up; with CI=true a
//! missing cluster fails these tests). The tests share that cluster: nextest
//! runs them one at a time (group `slurm`).

use volley_testkit as support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::{TempDir, eventually, stderr, stdout, volley_exe};

/// Whether the test cluster answers with its four nodes.
fn cluster() -> bool {
    let nodes = Command::new("sinfo").args(["-h", "-N", "-o", "%N %T"]).output();
    let up = nodes.is_ok_and(|o| {
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        ["n1", "n2", "n3", "n4"].iter().all(|n| text.lines().any(|l| l.starts_with(&format!("{n} "))))
    });
    support::services::present("a Slurm cluster with nodes n1..n4 (sinfo)", up)
}

/// A deployment made by `volley slurm up` in a directory of its own; brought
/// down when dropped, whatever the test did.
struct Deployment {
    dir: TempDir,
    env: Vec<(String, String)>,
}

impl Deployment {
    fn up(nodes: usize, extra: &[&str]) -> Deployment {
        let dir = TempDir::new("slurm");
        let state = dir.0.join("state");
        let nodes = nodes.to_string();
        let storage = format!("--invoker-arg=--local-storage={}", support::fs::tests_root().display());
        let mut args = vec![
            "slurm",
            "up",
            "--state-dir",
            state.to_str().unwrap(),
            "--nodes",
            &nodes,
            "--slots",
            "4",
            "--time",
            "10",
            "--controller-host",
            "127.0.0.1",
            "--advertise-host",
            "127.0.0.1",
            "--port",
            "0",
            "--wait",
            "120",
            &storage,
        ];
        args.extend_from_slice(extra);
        let out = Command::new(volley_exe()).args(&args).output().unwrap();
        let mut d = Deployment { dir, env: Vec::new() };
        assert!(out.status.success(), "volley slurm up: {}", stderr(&out));
        // `up` prints the exports a user evaluates: as bash reads them.
        let mut shell = Command::new("bash")
            .args(["-c", r#"eval "$(cat)"; printf '%s\n' "$VOLLEY_CONTROLLER" "$VOLLEY_CA_FILE" "$VOLLEY_API_KEY""#])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        shell.stdin.take().unwrap().write_all(&out.stdout).unwrap();
        let evaluated = shell.wait_with_output().unwrap();
        let values: Vec<String> = stdout(&evaluated).lines().map(String::from).collect();
        assert!(values.len() == 3 && values.iter().all(|v| !v.is_empty()), "{}", stdout(&out));
        for (name, value) in ["VOLLEY_CONTROLLER", "VOLLEY_CA_FILE", "VOLLEY_API_KEY"].iter().zip(values) {
            d.env.push((name.to_string(), value));
        }
        d
    }

    fn state(&self) -> String {
        self.dir.0.join("state").display().to_string()
    }

    fn volley(&self, args: &[&str]) -> Output {
        let mut c = Command::new(volley_exe());
        c.args(args).env_remove("VOLLEY_CONTROLLER").env_remove("VOLLEY_CA_FILE").env_remove("VOLLEY_API_KEY");
        for (name, value) in &self.env {
            c.env(name, value);
        }
        c.output().unwrap()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let out = self.volley(&all);
        assert!(out.status.success(), "volley {args:?}: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)))
    }

    /// Submits a burst without waiting; its id (what `run --detach` prints).
    fn detach(&self, args: &[&str]) -> String {
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        all.push("--detach");
        let out = self.volley(&all);
        assert!(out.status.success(), "volley {all:?}: {}", stderr(&out));
        stdout(&out).trim().to_string()
    }

    fn slurm(&self, command: &str, extra: &[&str]) -> Output {
        let state = self.state();
        let mut args = vec!["slurm", command, "--state-dir", state.as_str()];
        args.extend_from_slice(extra);
        self.volley(&args)
    }

    fn status(&self) -> serde_json::Value {
        let state = self.state();
        self.json(&["slurm", "status", "--state-dir", &state])
    }

    fn ready_invokers(&self) -> Vec<String> {
        let status = self.status();
        let mut names: Vec<String> = status["invokers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["status"] == "ready")
            .map(|i| i["registration"]["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    }

    fn jobs(&self) -> Vec<String> {
        self.status()["allocations"].as_array().unwrap().iter().map(|a| a["job"].as_str().unwrap().into()).collect()
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let jobs = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.jobs())).unwrap_or_default();
        let _ = self.slurm("down", &["--wait", "30"]);
        for job in jobs {
            let _ = Command::new("scancel").arg(job).output();
        }
    }
}

/// `volley invoker` processes started for Slurm allocation `job`.
fn invokers_of(job: &str) -> usize {
    let needle = format!("SLURM_JOB_ID={job}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains("invoker") && String::from_utf8_lossy(&environ).contains(&needle)
        })
        .count()
}

#[test]
fn slurm_up_runs_bursts_across_nodes_grows_drains_and_shrinks() {
    if !cluster() {
        return;
    }
    let d = Deployment::up(2, &["--drain-grace", "30"]);
    let status = d.status();
    assert_eq!(status["allocations"][0]["state"], "RUNNING", "{status}");
    assert_eq!(d.ready_invokers(), ["n1", "n2"], "one invoker per node, named after it: {status}");
    let base = d.jobs()[0].clone();

    // A burst spanning both nodes talks over tcp.
    let burst = d.json(&["run", "sum", "--workers", "8", "--granularity", "4"]);
    assert_eq!(burst["state"], "succeeded", "{burst}");
    assert_eq!(burst["transport"], "tcp", "{burst}");
    let invokers: std::collections::BTreeSet<_> =
        burst["packs"].as_array().unwrap().iter().map(|p| p["invoker"].to_string()).collect();
    assert_eq!(invokers.len(), 2, "{burst}");

    // TeraSort across the two nodes, validated by the demo.
    let data = TempDir::new("slurm-terasort");
    let storage = format!("file://{}", data.0.display());
    let sort = d.volley(&[
        "demo",
        "terasort",
        "--size",
        "32MiB",
        "--workers",
        "8",
        "--granularity",
        "4",
        "--storage",
        &storage,
    ]);
    assert!(sort.status.success(), "terasort: {}\n{}", stderr(&sort), stdout(&sort));

    // Grow by one node: an allocation of its own, on a node of its own.
    let grown = d.slurm("grow", &["--nodes", "1", "--wait", "120"]);
    assert!(grown.status.success(), "{}", stderr(&grown));
    let three = d.ready_invokers();
    assert_eq!(three.len(), 3, "{three:?}");
    assert!(three.windows(2).all(|w| w[0] != w[1]), "the grown invoker has a node of its own: {three:?}");
    let jobs = d.jobs();
    assert_eq!(jobs.len(), 2);
    let added = jobs[1].clone();

    // A burst that needs all three nodes runs while the grown one is released:
    // its invoker drains (the burst finishes), then leaves.
    let id = d.detach(&["sleep", "--workers", "12", "--granularity", "4", "--params", r#"{"seconds": 3}"#]);
    eventually(30, "the burst to run", || d.json(&["bursts", "show", &id])["state"] == "running");
    let shrunk = d.slurm("shrink", &["--nodes", "1"]);
    assert!(shrunk.status.success(), "{}", stderr(&shrunk));
    let done = d.json(&["bursts", "show", &id]);
    assert_eq!(done["state"], "succeeded", "the drain let it finish: {done}");
    assert_eq!(d.ready_invokers(), ["n1", "n2"]);
    assert_eq!(d.jobs(), std::slice::from_ref(&base));
    eventually(30, "the released allocation's invoker to be gone", || invokers_of(&added) == 0);
    // Nothing more can be released than was added.
    let refused = d.slurm("shrink", &["--nodes", "1"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("the base allocation's nodes stay until `volley slurm down`"),
        "{}",
        stderr(&refused)
    );

    // Down: the allocation ends, its invokers and the controller are gone.
    let down = d.slurm("down", &[]);
    assert!(down.status.success(), "{}", stderr(&down));
    eventually(30, "the base allocation's invokers to be gone", || invokers_of(&base) == 0);
    let again = d.slurm("status", &[]);
    assert!(stderr(&again).contains("`volley slurm up` makes one"), "{}", stderr(&again));
}

#[test]
fn a_cancelled_allocation_ends_its_bursts_at_once_with_the_cause() {
    if !cluster() {
        return;
    }
    let d = Deployment::up(2, &[]);
    let job = d.jobs()[0].clone();
    let id = d.detach(&["sleep", "--workers", "8", "--granularity", "4", "--params", r#"{"seconds": 60}"#]);
    eventually(30, "the burst to run", || d.json(&["bursts", "show", &id])["state"] == "running");
    let cancelled = Instant::now();
    let out = Command::new("scancel").arg(&job).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut burst = d.json(&["bursts", "show", &id]);
    while burst["state"] == "running" && cancelled.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
        burst = d.json(&["bursts", "show", &id]);
    }
    // The time it took is printed for the record (docs/notes/slurm.md), not asserted.
    eprintln!("scancel → burst {} after {:?}", burst["state"], cancelled.elapsed());
    assert_eq!(burst["state"], "failed", "{burst}");
    let error = burst["error"].as_str().unwrap();
    let cause = format!("Slurm allocation {job} was cancelled (SIGTERM)");
    assert!(error.starts_with("invoker n") && error.contains(&cause), "{error}");
    // Nothing is left: the invokers said they left, their processes and packs are gone.
    let status = d.status();
    let statuses: Vec<_> = status["invokers"].as_array().unwrap().iter().map(|i| i["status"].clone()).collect();
    assert_eq!(statuses, ["left", "left"], "{status}");
    eventually(30, "the allocation's invokers to be gone", || invokers_of(&job) == 0);
    // Each sandboxed pack's cell goes with its last process.
    for node in ["n1", "n2"] {
        let data = std::env::temp_dir().join(format!("volley-{job}-{node}"));
        assert!(data.is_dir(), "the invoker's data directory on {node}: {}", data.display());
        let cells = data.join("invoker/cells");
        let left: Vec<_> =
            std::fs::read_dir(&cells).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        assert!(left.is_empty(), "cells left on {node}: {left:?}");
    }
}

#[test]
fn the_batch_script_can_be_printed_for_sites_that_submit_by_hand() {
    // No Slurm needed: nothing is submitted or started.
    let dir = TempDir::new("slurm-print");
    let out = Command::new(volley_exe())
        .args(["slurm", "up", "--print", "--nodes", "3", "--partition", "batch", "--time", "1:00:00"])
        .args(["--drain-grace", "60", "--controller-in-allocation", "--state-dir"])
        .arg(dir.0.join("state"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let script = stdout(&out);
    for line in ["#SBATCH --nodes=3", "#SBATCH --partition=batch", "#SBATCH --time=1:00:00", "#SBATCH --signal=USR1@75"]
    {
        assert!(script.contains(line), "{line} missing: {script}");
    }
    assert!(script.contains("controller --listen 0.0.0.0:7070") && script.contains("--drain-grace 60"), "{script}");
    assert!(!dir.0.join("state").exists(), "--print makes nothing");
    let syntax = Command::new("bash").arg("-n").arg("-c").arg(&script).output().unwrap();
    assert!(syntax.status.success(), "bash -n: {}", stderr(&syntax));
}

#[test]
fn the_controller_can_run_inside_the_allocation() {
    if !cluster() {
        return;
    }
    let d = Deployment::up(2, &["--controller-in-allocation"]);
    let status = d.status();
    assert_eq!(status["controller_in_allocation"], true, "{status}");
    let job = d.jobs()[0].clone();
    // Its CA was made inside the allocation, for the node it runs on.
    let ca = status["ca_file"].as_str().unwrap();
    assert!(ca.contains(&format!("job-{job}/certs")), "{status}");
    let burst = d.json(&["run", "sum", "--workers", "8", "--granularity", "4"]);
    assert_eq!(burst["state"], "succeeded", "{burst}");
    let down = d.slurm("down", &[]);
    assert!(down.status.success(), "{}", stderr(&down));
    // The batch script stops the controller once its invokers have left.
    let state = d.state();
    eventually(30, "the allocation's controller to stop", || {
        std::fs::read_dir("/proc").unwrap().flatten().all(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            !(cmdline.contains("controller") && cmdline.contains(&state))
        })
    });
    assert_eq!(invokers_of(&job), 0);
}
