//! Hosts for cluster tests: network namespaces joined by a bridge (needs root
//! and iproute2). The root namespace holds the bridge address (the controller's
//! host); each namespace is one more host. Everything is removed when dropped.

use std::process::Command;

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Whether this machine can make namespaces; with CI=true it must.
pub fn available() -> bool {
    let probe = format!("vtprobe{}", std::process::id() % 10_000);
    let ok = ip(&["netns", "add", &probe]).is_ok();
    let _ = ip(&["netns", "del", &probe]);
    crate::services::present("network namespaces (root and iproute2)", ok)
}

/// A bridge and `hosts` namespaces on subnet 10.77.N.0/24.
pub struct Hosts {
    bridge: String,
    pub namespaces: Vec<String>,
    net: u32,
}

impl Hosts {
    pub fn new(hosts: usize) -> Hosts {
        let net = std::process::id() % 200 + 20;
        let bridge = format!("vtbr{net}");
        let mut made = Hosts { bridge: bridge.clone(), namespaces: Vec::new(), net };
        let step = |r: Result<(), String>| r.unwrap_or_else(|e| panic!("setting up test hosts: {e}"));
        let _ = ip(&["link", "del", &bridge]);
        step(ip(&["link", "add", &bridge, "type", "bridge"]));
        step(ip(&["addr", "add", &format!("10.77.{net}.1/24"), "dev", &bridge]));
        step(ip(&["link", "set", &bridge, "up"]));
        for i in 0..hosts {
            let ns = format!("vt{net}h{i}");
            let host_end = format!("vt{net}v{i}");
            let _ = ip(&["netns", "del", &ns]);
            step(ip(&["netns", "add", &ns]));
            made.namespaces.push(ns.clone());
            step(ip(&["link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", &ns]));
            step(ip(&["link", "set", &host_end, "master", &bridge]));
            step(ip(&["link", "set", &host_end, "up"]));
            step(ip(&["-n", &ns, "addr", "add", &format!("{}/24", made.addr(i)), "dev", "eth0"]));
            step(ip(&["-n", &ns, "link", "set", "eth0", "up"]));
            step(ip(&["-n", &ns, "link", "set", "lo", "up"]));
        }
        made
    }

    /// The root namespace's address on the bridge (where the controller listens).
    pub fn gateway(&self) -> String {
        format!("10.77.{}.1", self.net)
    }

    /// Host `i`'s address.
    pub fn addr(&self, i: usize) -> String {
        format!("10.77.{}.{}", self.net, 10 + i)
    }

    /// Cuts host `i` off the network with an nftables rule inside its namespace
    /// that drops everything through its link (loopback inside the host, where the
    /// invoker talks to its packs, keeps working), or lifts the cut.
    pub fn partition(&self, i: usize, cut: bool) {
        let ns = &self.namespaces[i];
        let nft = |rule: &str| {
            let out = Command::new("ip").args(["netns", "exec", ns, "nft", rule]).output().expect("running nft");
            assert!(out.status.success(), "nft {rule}: {}", String::from_utf8_lossy(&out.stderr));
        };
        if cut {
            nft("add table inet volley_cut");
            nft("add chain inet volley_cut in { type filter hook input priority 0; policy accept; }");
            nft("add chain inet volley_cut out { type filter hook output priority 0; policy accept; }");
            nft("add rule inet volley_cut in iifname \"eth0\" drop");
            nft("add rule inet volley_cut out oifname \"eth0\" drop");
        } else {
            nft("delete table inet volley_cut");
        }
    }
}

/// Whether nftables is installed (scripts/services installs it); with CI=true it must be.
pub fn nft_available() -> bool {
    let ok = Command::new("nft").arg("--version").output().is_ok_and(|o| o.status.success());
    crate::services::present("nftables", ok)
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}
