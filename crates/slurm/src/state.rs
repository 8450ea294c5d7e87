//! A deployment as `volley slurm` remembers it between commands: where its
//! controller is, its files, the allocations it submitted. One JSON file in
//! the deployment's directory, which every node must see (the invokers read
//! the token and the CA from it).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;

/// The state file's name in the deployment's directory.
pub const STATE_FILE: &str = "slurm.json";

/// What an allocation is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Submitted by `up` (with the controller, when it runs inside).
    Base,
    /// One node added by `grow`.
    Grow,
}

/// One submitted allocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub job: String,
    pub nodes: usize,
    pub role: Role,
}

/// The deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// The controller's URL (for one inside the allocation: known once it runs).
    pub controller_url: Option<String>,
    /// The controller `volley slurm up` started on this host, if it did.
    pub controller_process: Option<Process>,
    /// Whether the controller runs inside the base allocation.
    pub controller_in_allocation: bool,
    /// The CA clients and invokers trust (for an inside controller: known once it runs).
    pub ca_file: Option<PathBuf>,
    pub token_file: PathBuf,
    /// The API key `volley slurm` made for the user (namespace `default`), if it made one.
    pub api_key_file: Option<PathBuf>,
    /// The settings new allocations are submitted with (`grow`).
    pub script: ScriptSettings,
    pub allocations: Vec<Allocation>,
}

/// A process as it can be told apart from a later one with its pid: the
/// host it runs on and its start time (clock ticks since boot, /proc/PID/stat).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub host: String,
    pub pid: u32,
    pub started: u64,
}

/// The start time of process `pid` on this host (field 22 of /proc/PID/stat).
pub fn started(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// What `grow` repeats from `up`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScriptSettings {
    pub partition: Option<String>,
    pub time: Option<String>,
    pub slots: Option<usize>,
    pub advertise_host: Option<String>,
    pub drain_grace: u64,
    pub invoker_args: Vec<String>,
    pub volley: PathBuf,
}

impl Deployment {
    /// The deployment in `dir`; an error saying how to make one if there is none.
    pub fn load(dir: &Path) -> Result<Deployment, Error> {
        let file = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&file).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::State(format!(
                "no Volley deployment on Slurm in {} (`volley slurm up` makes one; --state-dir names another)",
                dir.display()
            )),
            _ => Error::State(format!("cannot read {}: {e}", file.display())),
        })?;
        serde_json::from_str(&text).map_err(|e| Error::State(format!("{} is damaged: {e}", file.display())))
    }

    /// Writes it whole (a new file renamed over the old: never half a state).
    pub fn save(&self, dir: &Path) -> Result<(), Error> {
        let file = dir.join(STATE_FILE);
        let fresh = dir.join(format!(".{STATE_FILE}.{}", std::process::id()));
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::State(e.to_string()))?;
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&fresh)
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&fresh, &file));
        written.map_err(|e| {
            let _ = std::fs::remove_file(&fresh);
            Error::State(format!("cannot write {}: {e}", file.display()))
        })
    }

    /// Every allocation's job id.
    pub fn jobs(&self) -> Vec<String> {
        self.allocations.iter().map(|a| a.job.clone()).collect()
    }

    /// The base allocation's job id.
    pub fn base_job(&self) -> Option<&str> {
        self.allocations.iter().find(|a| a.role == Role::Base).map(|a| a.job.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployment_is_saved_whole_and_read_back() {
        let dir = std::env::temp_dir().join(format!("volley-slurm-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = Deployment::load(&dir).unwrap_err().to_string();
        assert!(missing.contains("`volley slurm up` makes one"), "{missing}");
        let d = Deployment {
            controller_url: Some("https://h:7070".into()),
            controller_process: Some(Process { host: "login1".into(), pid: 42, started: 7 }),
            controller_in_allocation: false,
            ca_file: Some(dir.join("ca.crt")),
            token_file: dir.join("invoker-token"),
            api_key_file: None,
            script: ScriptSettings {
                partition: None,
                time: Some("10".into()),
                slots: Some(4),
                advertise_host: None,
                drain_grace: 0,
                invoker_args: vec![],
                volley: "/usr/bin/volley".into(),
            },
            allocations: vec![Allocation { job: "7".into(), nodes: 2, role: Role::Base }],
        };
        d.save(&dir).unwrap();
        assert_eq!(Deployment::load(&dir).unwrap(), d);
        assert_eq!(d.base_job(), Some("7"));
        assert!(started(std::process::id()).is_some_and(|t| t > 0), "this process's start time");
        std::fs::write(dir.join(STATE_FILE), "{").unwrap();
        assert!(Deployment::load(&dir).unwrap_err().to_string().contains("is damaged"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
