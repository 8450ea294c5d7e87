//! WebAssembly guests (`examples/wasm-*`), built for wasm32-wasip1-threads by
//! the tests that run them (they are modules of their own, outside the
//! workspace's build).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::services::present;

/// The guests' target.
pub const TARGET: &str = "wasm32-wasip1-threads";

/// Whether this toolchain has the guests' target (`rustup target add wasm32-wasip1-threads`).
fn target_installed() -> bool {
    Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .is_some_and(|sysroot| sysroot.join("lib/rustlib").join(TARGET).is_dir())
}

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where guests are built: beside the workspace's target directory's builds.
fn guests_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target")).join("wasm-guests")
}

/// The module `examples/<example>` builds (`wasm-pi`, `wasm-tour`), built
/// now if needed into a directory beside the workspace's target directory;
/// None (skipped, with a notice) where the target is not installed and CI is not set.
pub fn guest(example: &str) -> Option<PathBuf> {
    guest_with(example, "")
}

/// As [`guest`], built with the cargo `features` given (comma separated;
/// each set in a directory of its own, so that builds never overwrite each other).
pub fn guest_with(example: &str, features: &str) -> Option<PathBuf> {
    if !present(&format!("the Rust target {TARGET} (scripts/services adds it)"), target_installed()) {
        return None;
    }
    let root = root();
    let target_dir = match features {
        "" => guests_dir(),
        some => guests_dir().join(some.replace(',', "+")),
    };
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release", "--quiet", "--target", TARGET, "--features", features, "--manifest-path"])
        .arg(root.join("examples").join(example).join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir)
        .current_dir(&root)
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "building {example}: {}", String::from_utf8_lossy(&out.stderr));
    let module = target_dir.join(TARGET).join("release").join(format!("{example}.wasm"));
    assert!(module.exists(), "{} was not built", module.display());
    Some(module)
}

/// The C guest `examples/wasm-c`, built now with the machine's clang (its
/// `build` script); None (skipped, with a notice) where clang or lld is
/// missing and CI is not set.
pub fn c_guest() -> Option<PathBuf> {
    let has = |tool: &str| Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    if !present("clang and lld (scripts/services installs them)", has("clang") && has("wasm-ld")) {
        return None;
    }
    let dir = guests_dir();
    std::fs::create_dir_all(&dir).expect("the guests' directory");
    let module = dir.join(format!("wasm-c-{}.wasm", std::process::id()));
    let out = Command::new("sh").arg(root().join("examples/wasm-c/build")).arg(&module).output().expect("sh runs");
    assert!(out.status.success(), "building examples/wasm-c: {}", String::from_utf8_lossy(&out.stderr));
    Some(module)
}
