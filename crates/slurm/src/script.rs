//! The batch script of one allocation: one invoker per node, started by
//! `srun` with the node's name, a data directory on the node's own disk and
//! the deployment's token and CA; the controller too, on the allocation's
//! first node, when it runs inside the allocation. `volley slurm up --print`
//! shows it for sites that submit by hand.

use std::fmt::Write;
use std::path::PathBuf;

/// Seconds between Slurm's early signal (SIGUSR1: drain) and the time limit
/// beyond the drain itself: leaving, stopping packs and the controller hearing it.
pub const DRAIN_MARGIN_SECS: u64 = 15;

/// Where the invokers' controller runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControllerPlace {
    /// Already running (where the user ran `volley slurm up`), at this URL.
    Outside { url: String, ca_file: PathBuf },
    /// Started by the script on the allocation's first node, on `port`, with
    /// a CA and certificate made there for that node (`job-ID/` in the state
    /// directory); `host` names the node for clients (default: its host name).
    Inside { port: u16, host: Option<String>, api_keys: PathBuf },
}

/// One allocation's batch script.
#[derive(Debug, Clone)]
pub struct BatchScript {
    pub job_name: String,
    pub nodes: usize,
    pub partition: Option<String>,
    /// Slurm's time limit (`--time`: minutes, `H:M:S`, `D-H`...).
    pub time: Option<String>,
    /// Where Slurm writes the script's output (`%j`: the job id).
    pub output: PathBuf,
    /// The deployment's directory on a filesystem every node mounts.
    pub state_dir: PathBuf,
    /// The `volley` binary, at a path every node can run.
    pub volley: PathBuf,
    pub controller: ControllerPlace,
    /// The file holding the invoker token (read by the invokers and an inside controller).
    pub token_file: PathBuf,
    /// Worker slots each invoker offers (None: the node's default).
    pub slots: Option<usize>,
    /// The host packs on other nodes reach this node's packs at (None: its host name).
    pub advertise_host: Option<String>,
    /// Seconds an invoker drains before it leaves; with more than 0, Slurm
    /// sends it SIGUSR1 (drain) that long and a margin before the time limit.
    pub drain_grace: u64,
    /// More `volley invoker` arguments, passed as they are.
    pub invoker_args: Vec<String>,
}

/// `s` as one word of a bash command line.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn path(p: &std::path::Path) -> String {
    quote(&p.to_string_lossy())
}

/// Refuses what a `#SBATCH` line cannot carry as it is.
fn directive(what: &str, value: &str) -> Result<(), crate::Error> {
    if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(crate::Error::Usage(format!(
            "the {what} {value:?} cannot be empty or hold spaces or control characters"
        )));
    }
    Ok(())
}

impl BatchScript {
    /// The script's text; an error for a setting Slurm's directives cannot carry.
    pub fn render(&self) -> Result<String, crate::Error> {
        if let Some(p) = &self.partition {
            directive("partition", p)?;
        }
        if let Some(t) = &self.time {
            directive("time limit", t)?;
        }
        let output = self.output.to_string_lossy();
        directive("output file", &output)?;
        if self.nodes == 0 {
            return Err(crate::Error::Usage("an allocation needs at least one node".into()));
        }
        let mut s = String::from("#!/bin/bash\n");
        let _ = writeln!(s, "#SBATCH --job-name={}", self.job_name);
        let _ = writeln!(s, "#SBATCH --nodes={}", self.nodes);
        let _ = writeln!(s, "#SBATCH --ntasks-per-node=1");
        // The invoker offers the node's CPUs: no other job shares them.
        let _ = writeln!(s, "#SBATCH --exclusive");
        let _ = writeln!(s, "#SBATCH --output={}", self.output.display());
        if let Some(p) = &self.partition {
            let _ = writeln!(s, "#SBATCH --partition={p}");
        }
        if let Some(t) = &self.time {
            let _ = writeln!(s, "#SBATCH --time={t}");
        }
        if self.drain_grace > 0 {
            // SIGUSR1 to the steps this long before the time limit: the invokers drain.
            let _ = writeln!(s, "#SBATCH --signal=USR1@{}", self.drain_grace.saturating_add(DRAIN_MARGIN_SECS));
        }
        s.push_str(
            "# Made by `volley slurm`: one Volley invoker per node of this allocation.\n\
             # SIGTERM (time limit, scancel, preemption) makes each invoker leave its\n\
             # controller, which ends the bursts running here with that cause at once;\n\
             # SIGUSR1 (before the time limit, volley slurm down/shrink) makes it drain first.\n\
             set -euo pipefail\n",
        );
        let volley = path(&self.volley);
        let _ = writeln!(s, "export VOLLEY_INVOKER_TOKEN_FILE={}", path(&self.token_file));
        match &self.controller {
            ControllerPlace::Outside { url, ca_file } => {
                let _ = writeln!(s, "export VOLLEY_CONTROLLER={}", quote(url));
                let _ = writeln!(s, "export VOLLEY_CA_FILE={}", path(ca_file));
            }
            ControllerPlace::Inside { port, host, api_keys } => {
                self.controller_inside(&mut s, &volley, *port, host.as_deref(), api_keys)
            }
        }
        let _ = write!(
            s,
            "srun --ntasks-per-node=1 --kill-on-bad-exit=0 bash -c '\n  \
             export VOLLEY_ADVERTISE_HOST=\"${{VOLLEY_ADVERTISE_HOST:-$(hostname)}}\"\n  \
             dir=\"${{TMPDIR:-/tmp}}/volley-$SLURM_JOB_ID-$SLURMD_NODENAME\"\n  \
             mkdir -p -m 700 \"$dir\" && [ -O \"$dir\" ] || {{ echo \"volley: $dir is not ours\" >&2; exit 1; }}\n  \
             exec \"$0\" invoker --name \"$SLURMD_NODENAME\" --data-dir \"$dir\" \"$@\"' {volley}"
        );
        if let Some(slots) = self.slots {
            let _ = write!(s, " --slots {slots}");
        }
        if let Some(host) = &self.advertise_host {
            let _ = write!(s, " --advertise-host {}", quote(host));
        }
        if self.drain_grace > 0 {
            let _ = write!(s, " --drain-grace {}", self.drain_grace);
        }
        for arg in &self.invoker_args {
            let _ = write!(s, " {}", quote(arg));
        }
        s.push('\n');
        if matches!(self.controller, ControllerPlace::Inside { .. }) {
            s.push_str("kill -TERM \"$controller\" 2>/dev/null || true\nwait \"$controller\" || true\n");
        }
        Ok(s)
    }

    /// The lines that start the controller on this (the first) node and
    /// point the invokers at it.
    fn controller_inside(
        &self,
        s: &mut String,
        volley: &str,
        port: u16,
        host: Option<&str>,
        api_keys: &std::path::Path,
    ) {
        let state = path(&self.state_dir);
        let _ = writeln!(s, "job_dir={state}/\"job-$SLURM_JOB_ID\"");
        s.push_str("mkdir -p \"$job_dir\"\n");
        match host {
            Some(h) => {
                let _ = writeln!(s, "controller_host={}", quote(h));
            }
            None => s.push_str("controller_host=\"$(hostname)\"\n"),
        }
        s.push_str("names=(--host \"$controller_host\")\nfor a in $(hostname -I 2>/dev/null || true); do names+=(--host \"$a\"); done\n");
        let _ = writeln!(s, "{volley} certificates --out \"$job_dir/certs\" \"${{names[@]}}\"");
        // Nothing is signed after this: no key that could make certificates the clients trust.
        s.push_str("rm -f \"$job_dir/certs/ca.key\"\n");
        let _ = writeln!(
            s,
            "VOLLEY_INVOKER_TOKEN=\"$(cat \"$VOLLEY_INVOKER_TOKEN_FILE\")\" {volley} controller --listen 0.0.0.0:{port} \
             --data-dir \"$job_dir/controller\" --tls-cert \"$job_dir/certs/controller.crt\" \
             --tls-key \"$job_dir/certs/controller.key\" --api-keys {} --elastic > \"$job_dir/controller.log\" 2>&1 &",
            path(api_keys)
        );
        s.push_str(
            "controller=$!\n\
             # Whatever ends this script (a failure included) stops the controller.\n\
             trap 'kill -TERM \"$controller\" 2>/dev/null || true' EXIT\n\
             for _ in $(seq 1 300); do\n  \
             grep -q 'listening on ' \"$job_dir/controller.log\" && break\n  \
             kill -0 \"$controller\" 2>/dev/null || { cat \"$job_dir/controller.log\" >&2; exit 1; }\n  \
             sleep 0.2\n\
             done\n\
             port=$(grep -m1 -o 'listening on https://[^ ]*' \"$job_dir/controller.log\" | sed 's/.*://' || true)\n\
             [ -n \"$port\" ] || { echo \"volley: the controller did not start\" >&2; cat \"$job_dir/controller.log\" >&2; exit 1; }\n\
             export VOLLEY_CONTROLLER=\"https://$controller_host:$port\"\n\
             export VOLLEY_CA_FILE=\"$job_dir/certs/ca.crt\"\n\
             echo \"$VOLLEY_CONTROLLER\" > \"$job_dir/controller-url.tmp\" && mv \"$job_dir/controller-url.tmp\" \"$job_dir/controller-url\"\n",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(controller: ControllerPlace) -> BatchScript {
        BatchScript {
            job_name: "volley".into(),
            nodes: 2,
            partition: Some("debug".into()),
            time: Some("10".into()),
            output: "/state/slurm-%j.out".into(),
            state_dir: "/state".into(),
            volley: "/opt/volley's/volley".into(),
            controller,
            token_file: "/state/invoker-token".into(),
            slots: Some(4),
            advertise_host: None,
            drain_grace: 0,
            invoker_args: vec!["--local-storage".into(), "/data dir".into()],
        }
    }

    #[test]
    fn an_outside_controller_is_joined_by_one_invoker_per_node() {
        let s = script(ControllerPlace::Outside { url: "https://login:7070".into(), ca_file: "/state/ca.crt".into() })
            .render()
            .unwrap();
        assert!(s.contains("#SBATCH --nodes=2\n#SBATCH --ntasks-per-node=1\n"), "{s}");
        assert!(s.contains("#SBATCH --partition=debug\n#SBATCH --time=10\n"), "{s}");
        assert!(!s.contains("--signal"), "no drain, no early signal: {s}");
        assert!(s.contains("export VOLLEY_CONTROLLER='https://login:7070'"), "{s}");
        // A quote in a path survives bash; arguments stay one word each.
        assert!(s.contains(r"'/opt/volley'\''s/volley' --slots 4 '--local-storage' '/data dir'"), "{s}");
        assert!(s.contains("--name \"$SLURMD_NODENAME\""), "{s}");
        assert!(!s.contains("controller --listen"), "{s}");
    }

    #[test]
    fn a_drain_asks_slurm_for_an_early_signal() {
        let mut b = script(ControllerPlace::Outside { url: "https://h:1".into(), ca_file: "/c".into() });
        b.drain_grace = 30;
        let s = b.render().unwrap();
        assert!(s.contains("#SBATCH --signal=USR1@45\n"), "{s}");
        assert!(s.contains(" --drain-grace 30"), "{s}");
    }

    #[test]
    fn a_directive_that_would_break_the_script_is_refused() {
        let mut b = script(ControllerPlace::Outside { url: "https://h:1".into(), ca_file: "/c".into() });
        b.partition = Some("debug\nrm -rf ~".into());
        let e = b.render().unwrap_err().to_string();
        assert!(e.contains("partition") && e.contains("control characters"), "{e}");
        b.partition = None;
        b.output = "/my state/slurm-%j.out".into();
        assert!(b.render().is_err(), "a space in the output path");
    }

    #[test]
    fn an_inside_controller_is_started_first_and_stopped_last() {
        let s = script(ControllerPlace::Inside { port: 7070, host: None, api_keys: "/state/api-keys".into() })
            .render()
            .unwrap();
        let started = s.find("controller --listen 0.0.0.0:7070").expect("the controller starts");
        let invokers = s.find("srun ").expect("the invokers start");
        let stopped = s.rfind("kill -TERM \"$controller\"").expect("the controller stops");
        assert!(started < invokers && invokers < stopped, "{s}");
        assert!(s.contains("--api-keys '/state/api-keys' --elastic"), "{s}");
        assert!(s.contains("export VOLLEY_CA_FILE=\"$job_dir/certs/ca.crt\""), "{s}");
        let syntax = std::process::Command::new("bash").args(["-n", "-c", &s]).output().unwrap();
        assert!(syntax.status.success(), "{}", String::from_utf8_lossy(&syntax.stderr));
    }
}
