//! The packs' Landlock confinement on real processes: each attempt is run
//! confined and unconfined, so that a refusal is Landlock's doing.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use volley_sandbox::{Confinement, Paths};

/// What every confined command reads: the system's programs and libraries.
fn system() -> Vec<PathBuf> {
    ["/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc", "/proc"].iter().map(PathBuf::from).collect()
}

/// Runs `program args` (confined to `paths` if given): exit code and output.
fn run(program: &Path, args: &[&str], paths: Option<&Paths>) -> (i32, String) {
    let mut command = Command::new(program);
    command.args(args);
    if let Some(paths) = paths {
        let mut confinement = Confinement::new(paths).expect("the ruleset is made");
        // SAFETY: enforce makes the Landlock and prctl calls only.
        unsafe {
            command.pre_exec(move || confinement.enforce());
        }
    }
    let out = command.output().expect("the command runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// A pack's cell (writable) and a neighbour's directory with a secret in it.
struct Dirs {
    root: PathBuf,
    cell: PathBuf,
    other: PathBuf,
}

impl Dirs {
    fn new(what: &str) -> Dirs {
        let root = std::env::temp_dir().join(format!("volley-landlock-{what}-{}", std::process::id()));
        let (cell, other) = (root.join("cell"), root.join("other"));
        std::fs::create_dir_all(&cell).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("secret"), "s3cret").unwrap();
        Dirs { root, cell, other }
    }

    fn paths(&self, extra_read: &[PathBuf]) -> Paths {
        let mut read = system();
        read.extend_from_slice(extra_read);
        Paths { read, write: vec![self.cell.clone(), PathBuf::from("/dev/null")] }
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn sh() -> PathBuf {
    PathBuf::from("/bin/sh")
}

#[test]
fn a_confined_pack_writes_its_cell_and_cannot_read_or_write_beside_it() {
    let dirs = Dirs::new("fs");
    let paths = dirs.paths(&[]);
    let (cell, other) = (dirs.cell.display().to_string(), dirs.other.display().to_string());
    let script = format!("cat /etc/hostname > /dev/null && echo mine > {cell}/f && cat {cell}/f");
    assert_eq!(run(&sh(), &["-c", &script], Some(&paths)), (0, "mine\n".to_string()));
    for attempt in [format!("cat {other}/secret"), format!("echo x > {other}/planted"), "ls /root".to_string()] {
        let (code, _) = run(&sh(), &["-c", &attempt], None);
        assert_eq!(code, 0, "unconfined, {attempt} works");
        let (code, text) = run(&sh(), &["-c", &attempt], Some(&paths));
        assert!(code != 0 && text.contains("Permission denied"), "confined, {attempt} is refused: {text}");
    }
}

#[test]
fn a_confined_pack_cannot_signal_a_process_outside_its_domain() {
    let dirs = Dirs::new("signal");
    let mut outside = Command::new("sleep").arg("30").spawn().unwrap();
    let script = format!("kill -0 {}", outside.id());
    assert_eq!(run(&sh(), &["-c", &script], None).0, 0, "unconfined, the signal is sent");
    let (code, text) = run(&sh(), &["-c", &script], Some(&dirs.paths(&[])));
    assert!(code != 0 && text.contains("not permitted"), "confined, it is refused: {text}");
    // Its own children it may still signal (the same domain).
    let own = run(&sh(), &["-c", "sleep 30 & kill $! && wait $!; echo $?"], Some(&dirs.paths(&[])));
    outside.kill().unwrap();
    let _ = outside.wait();
    assert!(own.1.starts_with("143"), "killed by its SIGTERM: {own:?}");
}

#[test]
fn a_confined_pack_cannot_reach_an_abstract_socket_outside_its_domain() {
    let dirs = Dirs::new("socket");
    // This machine's Python, called directly, with its installation readable.
    let found = Command::new("python3")
        .args(["-c", "import os, sys; print(os.path.realpath(sys.executable)); print(sys.base_prefix)"])
        .output();
    let Some(found) = found.ok().filter(|o| o.status.success()) else {
        volley_testkit::services::present("python3", false);
        return;
    };
    let found = String::from_utf8_lossy(&found.stdout).to_string();
    let mut lines = found.lines();
    let (python, prefix) = (PathBuf::from(lines.next().unwrap()), PathBuf::from(lines.next().unwrap()));
    let name = format!("volley-landlock-test-{}", std::process::id());
    let listener = std::os::unix::net::UnixListener::bind_addr(
        &<std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(name.as_bytes())
            .unwrap(),
    )
    .unwrap();
    let client = format!(
        "import socket\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect('\\0{name}'); print('connected')\nexcept OSError as e:\n    print(e.strerror)"
    );
    let unconfined = run(&python, &["-c", &client], None);
    assert_eq!(unconfined.1.trim(), "connected", "{unconfined:?}");
    let confined = run(&python, &["-c", &client], Some(&dirs.paths(&[prefix])));
    assert_eq!(confined.1.trim(), "Operation not permitted", "{confined:?}");
    drop(listener);
}
