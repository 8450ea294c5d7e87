//! An emulated cluster network on one machine, for `volley bench network`.
//!
//! Each host is a network namespace with one link (a veth pair) to a shared
//! bridge; the root namespace holds the bridge's address (where the
//! controller listens). Every link is limited to the same rate in both
//! directions with `tc`'s token bucket: on the host's end for what the host
//! sends, on the bridge's end for what it receives. Traffic within a host
//! (its loopback, its Unix sockets) is not limited, as on a real machine.
//! The bytes through each link are the kernel's counters of the bridge's end.
//! Needs root and iproute2; everything is removed when the value is dropped.

use std::process::Command;

use crate::{Error, Result};

fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| Error::Invalid(format!("cannot run {program} (install iproute2): {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "{program} {} failed: {} (the emulated network needs root)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// One emulated host.
pub struct Host {
    /// What the host is called in reports (`host0`, `broker`).
    pub name: String,
    pub namespace: String,
    pub addr: String,
    /// The bridge's end of the host's link, in the root namespace.
    link: String,
}

/// Hosts joined by rate-limited links.
pub struct Network {
    bridge: String,
    net: u32,
    pub hosts: Vec<Host>,
}

impl Network {
    /// Hosts named `names` on subnet 10.78.N.0/24, each link limited to
    /// `rate` (a `tc` rate such as `1gbit`) both ways.
    pub fn new(names: &[String], rate: &str) -> Result<Network> {
        // A subnet no other emulated network on this machine uses (its bridge
        // exists while it does); adding the bridge claims it.
        let first = std::process::id() % 200;
        let net = (0..200)
            .map(|k| (first + k) % 200 + 20)
            .find(|net| !std::path::Path::new(&format!("/sys/class/net/vnbr{net}")).exists())
            .ok_or_else(|| Error::Invalid("200 emulated networks exist already on this machine".into()))?;
        let bridge = format!("vnbr{net}");
        run("ip", &["link", "add", &bridge, "type", "bridge"])?;
        // Made right after the first step, so a failure from here removes what was made.
        let mut made = Network { bridge: bridge.clone(), net, hosts: Vec::new() };
        run("ip", &["addr", "add", &format!("{}/24", made.gateway()), "dev", &bridge])?;
        run("ip", &["link", "set", &bridge, "up"])?;
        for (i, name) in names.iter().enumerate() {
            let host = Host {
                name: name.clone(),
                namespace: format!("vn{net}h{i}"),
                addr: format!("10.78.{net}.{}", 10 + i),
                link: format!("vn{net}v{i}"),
            };
            let ns = host.namespace.clone();
            run("ip", &["netns", "add", &ns])?;
            made.hosts.push(host);
            let host = &made.hosts[i];
            run("ip", &["link", "add", &host.link, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
            run("ip", &["link", "set", &host.link, "master", &bridge])?;
            run("ip", &["link", "set", &host.link, "up"])?;
            run("ip", &["-n", &ns, "addr", "add", &format!("{}/24", host.addr), "dev", "eth0"])?;
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
            // A 256 KiB bucket (a few segment offloads: about 2 ms at 1 Gbit/s),
            // and up to 50 ms of queue before drops.
            let limit = ["root", "tbf", "rate", rate, "burst", "256kb", "latency", "50ms"];
            let mut host_end = vec!["-n", ns.as_str(), "qdisc", "add", "dev", "eth0"];
            host_end.extend(limit);
            run("tc", &host_end)?;
            let mut bridge_end = vec!["qdisc", "add", "dev", host.link.as_str()];
            bridge_end.extend(limit);
            run("tc", &bridge_end)?;
        }
        Ok(made)
    }

    /// The root namespace's address on the bridge.
    pub fn gateway(&self) -> String {
        format!("10.78.{}.1", self.net)
    }

    /// `program args` to run on host `i`.
    pub fn command(&self, i: usize, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.hosts[i].namespace, program]);
        cmd
    }

    /// Bytes through each host's link so far, both directions together.
    pub fn traffic(&self) -> Result<Vec<u64>> {
        self.hosts
            .iter()
            .map(|h| {
                let read = |what: &str| -> Result<u64> {
                    let path = format!("/sys/class/net/{}/statistics/{what}", h.link);
                    let text =
                        std::fs::read_to_string(&path).map_err(|e| Error::Invalid(format!("reading {path}: {e}")))?;
                    text.trim().parse().map_err(|e| Error::Invalid(format!("{path}: {e}")))
                };
                Ok(read("rx_bytes")? + read("tx_bytes")?)
            })
            .collect()
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for h in &self.hosts {
            // Whatever still runs on the host (a pack its invoker left behind)
            // would outlive the namespace's name.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", &h.namespace]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = run("ip", &["netns", "del", &h.namespace]);
        }
        let _ = run("ip", &["link", "del", &self.bridge]);
    }
}
