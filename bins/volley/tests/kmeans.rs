//! k-means as a burst gives the sequential result for the same data.

use volley_testkit as support;

use support::{json_ok, stderr, volley};
use volley_apps::kmeans::points::{coordinate, reference};

#[test]
fn kmeans_matches_the_sequential_run() {
    support::on_local_dir("kmeans", matches_the_sequential_run);
}

#[test]
fn kmeans_on_s3_matches_the_sequential_run() {
    support::on_s3("kmeans", matches_the_sequential_run);
}

fn matches_the_sequential_run(base: &str) {
    let (points, dims, k) = (20_000u64, 3usize, 5usize);
    let out = volley(
        None,
        &[
            "data",
            "gen",
            "kmeans",
            "--points",
            "20000",
            "--dims",
            "3",
            "--clusters",
            "5",
            "--seed",
            "7",
            "--to",
            &format!("{base}/points"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let params =
        serde_json::json!({"input": format!("{base}/points"), "output": format!("{base}/out"), "dims": dims, "k": k})
            .to_string();
    let burst =
        json_ok(&volley(None, &["run", "kmeans", "-n", "6", "-g", "3", "--params", &params, "--output", "json"]));
    assert_eq!(burst["state"], "succeeded", "{burst}");

    let all: Vec<f64> = (0..points).flat_map(|i| (0..dims as u64).map(move |d| coordinate(7, 5, i, d))).collect();
    let (expected, iterations) = reference(&all, dims, k, 1e-9, 100);
    let doc: serde_json::Value =
        serde_json::from_slice(&support::read_object(&format!("{base}/out"), "centroids.json")).unwrap();
    assert_eq!(doc["iterations"], iterations);
    let got: Vec<f64> = doc["centroids"].as_array().unwrap().iter().map(|c| c.as_f64().unwrap()).collect();
    let worst = got.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-9, "largest difference {worst}");
}
