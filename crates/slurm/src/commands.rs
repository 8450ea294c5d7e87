//! The Slurm commands Volley uses, run with a timeout each: `sbatch
//! --parsable` (submit), `scancel` (end or signal), `squeue` (state).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::Error;

/// How long one Slurm command may take (slurmctld answers in milliseconds
/// when it is up; a busy one in seconds).
const TIMEOUT: Duration = Duration::from_secs(30);

/// The Slurm client commands, found on the PATH (or under `bin`).
#[derive(Debug, Clone, Default)]
pub struct Slurm {
    /// A directory holding sbatch, scancel and squeue; None: the PATH.
    pub bin: Option<std::path::PathBuf>,
}

/// One allocation as `squeue` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: String,
    /// PENDING, RUNNING, COMPLETING, ...
    pub state: String,
    /// Its nodes (`n[1-2]`), or why it waits (`(Resources)`) while pending.
    pub nodes: String,
    /// Time used and its limit, as Slurm writes them.
    pub time: String,
    pub limit: String,
}

impl Slurm {
    fn command(&self, name: &str) -> Command {
        let program = match &self.bin {
            Some(dir) => dir.join(name),
            None => name.into(),
        };
        let mut command = Command::new(program);
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        command
    }

    async fn run(&self, name: &str, args: &[&str]) -> Result<String, Error> {
        let said = format!("{name} {}", args.join(" "));
        let child = self.command(name).args(args).spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Missing(name.into()),
            _ => Error::Refused { command: said.clone(), said: e.to_string() },
        })?;
        let out = tokio::time::timeout(TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| Error::Timeout(said.clone(), TIMEOUT.as_secs()))?
            .map_err(|e| Error::Refused { command: said.clone(), said: e.to_string() })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(Error::Refused { command: said, said: stderr });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Submits `script` (written to `path` first, kept for the user to read); the job's id.
    pub async fn sbatch(&self, script: &str, path: &Path) -> Result<String, Error> {
        std::fs::write(path, script)
            .map_err(|e| Error::State(format!("cannot write the batch script {}: {e}", path.display())))?;
        let path = path.to_string_lossy();
        let answer = self.run("sbatch", &["--parsable", &path]).await?;
        // `--parsable` answers `ID` or `ID;CLUSTER`.
        let id = answer.trim().split(';').next().unwrap_or_default().to_string();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
            return Err(Error::Unreadable { command: format!("sbatch --parsable {path}"), answer });
        }
        Ok(id)
    }

    /// Ends the allocation `job` (Slurm's SIGTERM to its steps, SIGKILL after
    /// KillWait); with `signal`, only sends that signal to its steps' processes
    /// (`USR1`: the invokers drain and leave; the allocation then ends by itself).
    pub async fn scancel(&self, job: &str, signal: Option<&str>) -> Result<(), Error> {
        match signal {
            Some(s) => self.run("scancel", &["--signal", s, job]).await.map(drop),
            None => self.run("scancel", &[job]).await.map(drop),
        }
    }

    /// The allocations among `jobs` Slurm still knows (an ended one is soon forgotten).
    pub async fn squeue(&self, jobs: &[String]) -> Result<Vec<Job>, Error> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let list = jobs.join(",");
        // A job Slurm has forgotten makes `squeue -j` fail; --states=all keeps recent ends.
        let answer =
            match self.run("squeue", &["--noheader", "--states=all", "--jobs", &list, "--format=%i|%T|%R|%M|%l"]).await
            {
                Ok(a) => a,
                Err(Error::Refused { said, .. }) if said.contains("Invalid job id") => String::new(),
                Err(e) => return Err(e),
            };
        Ok(parse_squeue(&answer))
    }
}

/// Why Slurm is ending allocation `job`, in words, as far as `squeue` can
/// tell while its steps receive SIGTERM (None: it cannot say). `early` is
/// how long before the time limit the allocation asked for its signal
/// (`--signal=USR1@N`, 0: it did not).
///
/// What Slurm shows at that moment: a cancelled allocation, or one at its
/// time limit, is COMPLETING while its processes get SIGTERM; one signalled
/// early (SIGUSR1 before the time limit), or by `scancel --signal`
/// (`volley slurm down/shrink`), is still RUNNING.
pub async fn why_ending(job: &str, early: u64) -> Option<String> {
    let found = Slurm::default().squeue(&[job.to_string()]).await.ok()?;
    let job = found.into_iter().next()?;
    let left = match (seconds(&job.limit), seconds(&job.time)) {
        (Some(limit), Some(used)) => Some(limit.saturating_sub(used)),
        _ => None,
    };
    Some(match (job.state.as_str(), left) {
        ("CANCELLED", _) => "was cancelled".into(),
        ("TIMEOUT", _) => "reached its time limit".into(),
        ("PREEMPTED", _) => "was preempted".into(),
        ("NODE_FAIL", _) => "lost a node".into(),
        ("COMPLETING", Some(s)) if s <= 5 => "reached its time limit".into(),
        ("COMPLETING", _) => "was cancelled".into(),
        ("RUNNING", Some(s)) if early > 0 && s <= early.saturating_add(5) => {
            format!("reaches its time limit in {s} s")
        }
        ("RUNNING", _) => "is being released (scancel --signal, volley slurm shrink or down)".into(),
        (other, _) => format!("ended ({})", other.to_ascii_lowercase()),
    })
}

/// Seconds of a Slurm duration: `M:SS`, `H:MM:SS`, `D-HH:MM:SS`, or minutes alone.
pub fn seconds(duration: &str) -> Option<u64> {
    let (days, rest) = match duration.split_once('-') {
        Some((d, r)) => (d.parse::<u64>().ok()?, r),
        None => (0, duration),
    };
    let parts: Vec<u64> = rest.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let (h, m, s) = match parts.as_slice() {
        [m] => (0, *m, 0),
        [m, s] => (0, *m, *s),
        [h, m, s] => (*h, *m, *s),
        _ => return None,
    };
    days.checked_mul(86_400)?.checked_add(h.checked_mul(3600)?)?.checked_add(m.checked_mul(60)?)?.checked_add(s)
}

/// `ID|STATE|NODES or REASON|TIME|LIMIT` lines.
pub fn parse_squeue(answer: &str) -> Vec<Job> {
    answer
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.trim().split('|').collect();
            let [id, state, nodes, time, limit] = f.as_slice() else { return None };
            Some(Job {
                id: id.to_string(),
                state: state.to_string(),
                nodes: nodes.to_string(),
                time: time.to_string(),
                limit: limit.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_lines_are_read_and_others_skipped() {
        let jobs = parse_squeue("42|RUNNING|n[1-2]|0:05|10:00\n43|PENDING|(Resources)|0:00|10:00\ngarbage\n");
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].nodes, "n[1-2]");
        assert_eq!(jobs[1].state, "PENDING");
    }

    #[test]
    fn slurm_durations_are_read() {
        assert_eq!(seconds("5:07"), Some(307));
        assert_eq!(seconds("1:00:00"), Some(3600));
        assert_eq!(seconds("2-01:00:00"), Some(2 * 86_400 + 3600));
        assert_eq!(seconds("10"), Some(600));
        assert_eq!(seconds("UNLIMITED"), None);
        assert_eq!(seconds("99999999999999999-0:0:0"), None, "an overflow is no duration");
    }

    #[tokio::test]
    async fn a_missing_slurm_says_where_to_run() {
        let slurm = Slurm { bin: Some("/nonexistent-slurm-bin".into()) };
        let e = slurm.squeue(&["1".into()]).await.unwrap_err();
        assert!(e.to_string().contains("squeue is not installed here"), "{e}");
    }
}
