//! The escape suite (bins/volley/tests/escape.rs) deploys this binary; this
//! test makes cargo build it next to `volley`.

use std::process::Command;

#[test]
fn run_by_hand_it_says_how_to_deploy_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_escape")).env_remove("VOLLEY_INVOKER_SOCKET").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("Volley function binary (functions: escape)"), "{text}");
}
