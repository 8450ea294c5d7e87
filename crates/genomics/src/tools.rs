//! The external programs of the pipeline: found on PATH (an error names the
//! missing one and its Debian package), run with a timeout, their stderr kept
//! for the error (minimap2 and bcftools exit 0 on some bad input but say so
//! on stderr: `[E::` lines are failures too).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::Error;

/// A program the pipeline runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Minimap2,
    Samtools,
    Bcftools,
    Dwgsim,
}

impl Tool {
    pub const ALL: [Tool; 4] = [Tool::Minimap2, Tool::Samtools, Tool::Bcftools, Tool::Dwgsim];

    /// Its command name.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Minimap2 => "minimap2",
            Tool::Samtools => "samtools",
            Tool::Bcftools => "bcftools",
            Tool::Dwgsim => "dwgsim",
        }
    }

    /// The Debian package that installs it.
    pub fn package(self) -> &'static str {
        self.name()
    }

    /// Where it is on PATH.
    pub fn find(self) -> Result<PathBuf, Error> {
        self.find_in(&std::env::var_os("PATH").unwrap_or_default())
    }

    /// Where it is in the directories of `path` (a PATH-like list).
    fn find_in(self, path: &std::ffi::OsStr) -> Result<PathBuf, Error> {
        std::env::split_paths(path)
            .map(|dir| dir.join(self.name()))
            .find(|p| is_executable(p))
            .ok_or(Error::MissingTool { tool: self.name(), package: self.package() })
    }

    /// Checks that every tool in `tools` is there, naming all that are not.
    pub fn check(tools: &[Tool]) -> Result<(), Error> {
        let missing: Vec<Tool> = tools.iter().copied().filter(|t| t.find().is_err()).collect();
        match missing.as_slice() {
            [] => Ok(()),
            [one] => Err(Error::MissingTool { tool: one.name(), package: one.package() }),
            many => Err(Error::Invalid(format!(
                "{} are not on PATH; install the Debian packages: apt-get install {}",
                many.iter().map(|t| t.name()).collect::<Vec<_>>().join(", "),
                many.iter().map(|t| t.package()).collect::<Vec<_>>().join(" ")
            ))),
        }
    }

    /// Runs it with `args` in `dir`, up to `timeout`; its stdout.
    pub fn run(self, args: &[&str], dir: &Path, timeout: Duration) -> Result<Vec<u8>, Error> {
        pipeline(&[(self, args)], None, dir, timeout)
    }

    /// The same, with `input` written to its stdin (from a thread: the child
    /// reads while it writes, no temporary file).
    pub fn run_with_input(
        self,
        args: &[&str],
        input: Vec<u8>,
        dir: &Path,
        timeout: Duration,
    ) -> Result<Vec<u8>, Error> {
        pipeline(&[(self, args)], Some(input), dir, timeout)
    }
}

/// Runs `stages` as a shell pipeline (each one's stdout into the next one's
/// stdin, through OS pipes), `input` into the first; the last one's stdout.
/// Every stage must succeed within `timeout`; a failure names the stage.
pub fn pipeline(
    stages: &[(Tool, &[&str])],
    input: Option<Vec<u8>>,
    dir: &Path,
    timeout: Duration,
) -> Result<Vec<u8>, Error> {
    let mut children = Vec::new();
    let mut next_stdin = match input {
        Some(_) => Stdio::piped(),
        None => Stdio::null(),
    };
    for (i, (tool, args)) in stages.iter().enumerate() {
        let mut child = Command::new(tool.find()?)
            .args(*args)
            .current_dir(dir)
            .stdin(next_stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(Error::io(dir))?;
        next_stdin = Stdio::null();
        if i + 1 < stages.len() {
            next_stdin = Stdio::from(child.stdout.take().expect("piped"));
        }
        children.push((*tool, child));
    }
    let feeder = match (input, children[0].1.stdin.take()) {
        (Some(bytes), Some(mut stdin)) => Some(std::thread::spawn(move || {
            use std::io::Write;
            // A child that stops reading (it failed) ends the write; its error says why.
            let _ = stdin.write_all(&bytes);
        })),
        _ => None,
    };
    // Every pipe drained apart: a child that fills one never blocks on it.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(children.last_mut().expect("a stage").1.stdout.take().expect("piped")));
    let stderrs: Vec<_> = children.iter_mut().map(|(_, c)| drain(Box::new(c.stderr.take().expect("piped")))).collect();
    let deadline = Instant::now() + timeout;
    let mut statuses = Vec::new();
    for (tool, child) in &mut children {
        let status = loop {
            match child.try_wait().map_err(Error::io(dir))? {
                Some(status) => break status,
                None if Instant::now() >= deadline => {
                    let tool = *tool;
                    for (_, c) in &mut children {
                        let _ = c.kill();
                        let _ = c.wait();
                    }
                    return Err(Error::ToolTimedOut { tool: tool.name(), secs: timeout.as_secs() });
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        statuses.push((*tool, status));
    }
    if let Some(f) = feeder {
        let _ = f.join();
    }
    let out = stdout.join().unwrap_or_default();
    for ((tool, status), stderr) in statuses.into_iter().zip(stderrs) {
        let err = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
        // minimap2 and bcftools exit 0 on some bad input, but say so.
        let said_error = err.lines().any(|l| l.starts_with("[E::") || l.starts_with("ERROR"));
        if !status.success() || said_error {
            return Err(Error::ToolFailed { tool: tool.name(), status: status.to_string(), stderr: tail(&err, 20) });
        }
    }
    Ok(out)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_is_named_with_its_package() {
        let empty = std::env::temp_dir().join(format!("volley-no-tools-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        let err = Tool::Bcftools.find_in(empty.as_os_str()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bcftools is not on PATH; install the Debian package bcftools (apt-get install bcftools)"
        );
        std::fs::remove_dir(&empty).unwrap();
    }

    #[test]
    fn a_failing_program_reports_its_last_stderr_lines() {
        // samtools with an unknown command exits non-zero and says why on stderr.
        if Tool::Samtools.find().is_err() {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "samtools is missing under CI");
            eprintln!("notice: samtools is not installed; skipping");
            return;
        }
        let err = Tool::Samtools.run(&["no-such-command"], &std::env::temp_dir(), Duration::from_secs(10)).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("samtools failed (exit status: 1)"), "{text}");
        assert!(text.contains("no-such-command"), "{text}");
    }
}
