//! PageRank as a burst matches a straightforward sequential implementation.

use volley_testkit as support;

use support::{TempDir, json_ok, service_up, stderr, volley};
use volley_apps::pagerank::graph::{Settings, edge, reference};

const VERTICES: u32 = 3000;
const EDGES: u64 = 40_000;

fn ranks_of(output: &str) -> Vec<f64> {
    let bytes = support::read_object(output, "ranks");
    bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()
}

#[test]
fn pagerank_matches_the_sequential_reference_in_burst_and_faas_modes() {
    support::on_local_dir("pagerank", matches_the_reference);
}

#[test]
fn pagerank_on_s3_matches_the_sequential_reference() {
    support::on_s3("pagerank", matches_the_reference);
}

/// Generates a graph under `base`, runs PageRank in burst and FaaS modes, and
/// compares the ranks with the sequential reference.
fn matches_the_reference(base: &str) {
    let graph = format!("{base}/graph");
    let out = volley(
        None,
        &["data", "gen", "pagerank", "--vertices", "3000", "--edges", "40000", "--seed", "9", "--to", &graph],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Vec<(u32, u32)> = (0..EDGES).map(|e| edge(9, VERTICES, e)).collect();
    let (expected, iterations) = reference(&list, VERTICES as usize, Settings::default());

    let mut modes = vec![("burst", "3", "uds")];
    if service_up("Redis", "127.0.0.1:6379") {
        modes.push(("faas", "1", "redis"));
    }
    let mut remote = Vec::new();
    for (mode, g, transport) in modes {
        let output = format!("{base}/{mode}");
        let params = serde_json::json!({"input": graph, "output": output, "vertices": VERTICES}).to_string();
        let burst = json_ok(&volley(
            None,
            &["run", "pagerank", "-n", "6", "-g", g, "--transport", transport, "--params", &params, "--output", "json"],
        ));
        assert_eq!(burst["state"], "succeeded", "{burst}");
        assert_eq!(burst["workers"][0]["result"]["iterations"], iterations, "{mode}: same number of iterations");
        let got = ranks_of(&output);
        assert_eq!(got.len(), VERTICES as usize);
        let worst = got.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst <= 1e-9, "{mode}: largest difference {worst}");
        remote.push(
            burst["workers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| w["result"]["remote_bytes"].as_u64().unwrap())
                .sum::<u64>(),
        );
    }
    if remote.len() == 2 {
        assert!(remote[0] < remote[1], "packs of 3 send less between processes than 6 single workers: {remote:?}");
    }
}

#[test]
fn a_wrong_vertex_count_is_a_clear_error() {
    let dir = TempDir::new("pagerank-bad");
    let graph = format!("file://{}/graph", dir.0.display());
    assert!(
        volley(None, &["data", "gen", "pagerank", "--vertices", "500", "--edges", "2000", "--to", &graph])
            .status
            .success()
    );
    let params =
        serde_json::json!({"input": graph, "output": format!("file://{}/out", dir.0.display()), "vertices": 10})
            .to_string();
    let out = volley(None, &["run", "pagerank", "-n", "2", "--params", &params]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("beyond the 10 vertices"), "{}", stderr(&out));
}
