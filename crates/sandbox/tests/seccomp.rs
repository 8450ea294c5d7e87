//! The packs' seccomp filter on real processes: the same command run with
//! and without it, so that a refusal is the filter's doing.

use std::os::unix::process::CommandExt;
use std::process::Command;

use volley_sandbox::Filter;

/// Runs `sh -c script`, under the packs' filter if `filtered`: its exit code and output.
fn run(script: &str, filtered: bool) -> (i32, String) {
    let mut command = Command::new("sh");
    command.args(["-c", script]);
    if filtered {
        let filter = Filter::for_packs().expect("the filter builds");
        // SAFETY: install only makes prctl and seccomp calls.
        unsafe {
            command.pre_exec(move || filter.install());
        }
    }
    let out = command.output().expect("sh runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

fn root() -> bool {
    // SAFETY: geteuid(2) reads the caller's effective uid.
    let root = unsafe { libc::geteuid() } == 0;
    let unshare = Command::new("unshare").arg("--version").output().is_ok_and(|o| o.status.success());
    volley_testkit::services::present("root and util-linux's unshare", root && unshare)
}

#[test]
fn new_namespaces_are_refused_under_the_filter_and_allowed_without_it() {
    if !root() {
        return;
    }
    // A new user namespace (what an escape would start with), and a new mount
    // namespace through unshare(2) and through clone(2) (unshare --fork).
    for script in ["unshare --user true", "unshare --mount true", "unshare --mount --fork true"] {
        assert_eq!(run(script, false).0, 0, "{script} works unfiltered");
        let (code, text) = run(script, true);
        assert_ne!(code, 0, "{script} is refused: {text}");
        assert!(text.contains("Operation not permitted"), "{script} says why: {text}");
    }
}

#[test]
fn clone_with_a_new_namespace_flag_is_refused() {
    if !root() {
        return;
    }
    // clone(CLONE_NEWNS | SIGCHLD) made directly (56 is clone on x86_64); the child leaves at once.
    let script = "python3 -c 'import ctypes, os\n\
                  libc = ctypes.CDLL(None, use_errno=True)\n\
                  r = libc.syscall(56, 0x00020000 | 17, 0, 0, 0, 0)\n\
                  r == 0 and os._exit(0)\n\
                  r > 0 and os.waitpid(r, 0)\n\
                  print(\"cloned\" if r > 0 else os.strerror(ctypes.get_errno()))'";
    if std::env::consts::ARCH != "x86_64" {
        return;
    }
    assert_eq!(run(script, false).1.trim(), "cloned");
    assert_eq!(run(script, true).1.trim(), "Operation not permitted");
}

#[test]
fn what_functions_do_still_works_under_the_filter() {
    // Forks, pipes, files, threads (clone3 refused with ENOSYS falls back to clone).
    let script = "echo a | cat > /dev/null && x=$(echo forked) && echo $x \
                  && python3 -c 'import threading; t = threading.Thread(target=print, args=(\"thread\",)); t.start(); t.join()'";
    let (code, text) = run(script, true);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("forked") && text.contains("thread"), "{text}");
}

#[test]
fn tracing_another_process_is_refused() {
    // PTRACE_TRACEME is the one ptrace request any process may make of itself:
    // refused, it shows the call itself is filtered.
    let script = "python3 -c 'import ctypes, os; r = ctypes.CDLL(None, use_errno=True).ptrace(0, 0, 0, 0); print(r, os.strerror(ctypes.get_errno()))'";
    let (code, text) = run(script, false);
    assert!(code == 0 && text.trim().starts_with('0'), "unfiltered: {text}");
    let (code, text) = run(script, true);
    assert!(code == 0 && text.contains("-1 Operation not permitted"), "filtered: {text}");
}
