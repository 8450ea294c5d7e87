//! The function binary explains itself when a person runs it (and this test
//! makes cargo build the binary that the platform tests deploy).

use std::process::Command;

#[test]
fn run_by_hand_it_says_how_to_deploy_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_pi")).env_remove("VOLLEY_INVOKER_SOCKET").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("Volley function binary (functions: pi)"), "{text}");
    assert!(text.contains("volley deploy NAME PATH"), "{text}");
}
