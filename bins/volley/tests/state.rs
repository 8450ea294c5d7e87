//! State survives the platform: finished bursts and deployed functions are
//! still there after a restart, on the embedded store and on PostgreSQL.

use volley_testkit as support;

use support::{Platform, TempDir, json_ok, service_up};

/// Runs a burst, restarts the platform on the same state, and reads the burst back.
fn survives_a_restart(args: &[&str]) {
    let dir = TempDir::new("state");
    let first = Platform::up_in(&dir.0, args);
    let burst = json_ok(&first.cli(&["run", "sum", "-n", "4", "-g", "2", "--output", "json"]));
    let id = burst["id"].as_str().unwrap().to_string();
    drop(first);

    let second = Platform::up_in(&dir.0, args);
    let again = json_ok(&second.cli(&["bursts", "show", &id, "--output", "json"]));
    assert_eq!(again["state"], "succeeded");
    assert_eq!(again["workers"], burst["workers"], "every result survived the restart");
}

#[test]
fn finished_bursts_survive_a_restart_on_the_embedded_store() {
    survives_a_restart(&[]);
}

#[test]
fn finished_bursts_survive_a_restart_on_postgres() {
    if !service_up("PostgreSQL", "127.0.0.1:5432") {
        return;
    }
    let schema = support::PgSchema::new("volley_cli");
    survives_a_restart(&["--store", &schema.url()]);
}
