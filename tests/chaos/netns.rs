//! Network namespaces for partition faults.
//!
//! Each coordinator runs in its own namespace `vch<pid><k>n<i>` (`k` a letter per setup in
//! this process), joined to a bridge `vch<pid><k>b` in the root namespace by a veth pair
//! (root side `vch<pid><k>v<i>`, namespace side renamed `eth0`). Addresses are `10.77.<run>.<i+1>/24`, the bridge holds
//! `10.77.<run>.254`: the test process and the workers (which bind the bridge address)
//! reach every coordinator from the root namespace, and the coordinators reach each other
//! and the workers through the bridge.
//!
//! Two ways of cutting a node (no iptables/nft on the host, so only `ip` is used):
//! - **isolate**: `ip link set <root-side veth> down`; the node loses every peer, client
//!   and worker (packets silently dropped, connects fail after ARP gives up);
//! - **peer cut** (`cut(i, j)`): in namespace `i`, a permanent neighbour entry maps `j`'s
//!   address to a MAC nobody owns, so frames from `i` to `j` are flooded by the bridge
//!   and dropped by every receiver: a silent, one-way drop. Cutting both directions
//!   between a node and all its peers splits the group 1|2 while clients still reach both
//!   sides, which is what tests that a minority never acknowledges a write.
//!
//! Names carry the test's PID; [`Net::drop`] removes everything, and [`cleanup_stale`]
//! removes leftovers of dead runs (namespaces and links with the `vch` prefix whose PID
//! no longer exists).

use std::process::Command;
use std::sync::Mutex;

/// Serialises [`Net::setup`] within this process (subnet choice, instance letter).
static SETUP: Mutex<u8> = Mutex::new(0);

/// Prefix of every namespace, bridge and veth this module creates.
const PREFIX: &str = "vch";
/// A locally administered MAC that no interface owns (peer cut).
const BLACKHOLE_MAC: &str = "02:77:de:ad:be:ef";

/// Runs `ip <args>`; `Err` carries stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip_out(args: &[&str]) -> String {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Checks that partitions can run here; `Err` is the reason they are skipped.
pub fn probe() -> Result<(), String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !root {
        return Err("not root: `ip netns` needs CAP_NET_ADMIN".into());
    }
    let name = format!("{PREFIX}{}probe", std::process::id());
    ip(&["netns", "add", &name]).map_err(|e| format!("`ip netns add` fails here: {e}"))?;
    let _ = ip(&["netns", "del", &name]);
    Ok(())
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The PID embedded in one of our names (`vch<pid><tag>...`), if any.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Removes namespaces and links left by runs whose process is gone (killed test runs
/// cannot run their destructors).
pub fn cleanup_stale() {
    let me = std::process::id();
    for line in ip_out(&["netns", "list"]).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if let Some(pid) = owner_pid(name) {
            if pid != me && !pid_alive(pid) {
                eprintln!("chaos: removing stale namespace {name}");
                let _ = ip(&["netns", "del", name]);
            }
        }
    }
    for line in ip_out(&["-o", "link", "show"]).lines() {
        // `12: vch123b: <...` or `13: vch123v0@if2: <...`
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or_default();
        if let Some(pid) = owner_pid(name) {
            if pid != me && !pid_alive(pid) {
                eprintln!("chaos: removing stale link {name}");
                let _ = ip(&["link", "del", name]);
            }
        }
    }
}

/// Picks the third octet of `10.77.X.0/24`: starts from the PID and skips subnets an
/// interface of the root namespace already uses (another run in parallel).
fn pick_subnet() -> Result<u8, String> {
    let used = ip_out(&["-o", "-4", "addr", "show"]);
    let start = (std::process::id() % 250) as u16;
    for k in 0..250u16 {
        let x = (start + k) % 250 + 1;
        if !used.contains(&format!("10.77.{x}.")) {
            return Ok(x as u8);
        }
    }
    Err("no free 10.77.X.0/24 subnet".into())
}

/// One coordinator's namespace.
#[derive(Debug)]
pub struct Node {
    /// Namespace name.
    pub ns: String,
    /// Root-side veth (the one taken down to isolate the node).
    pub veth: String,
    /// IPv4 address inside the namespace.
    pub addr: String,
}

/// A bridge and one namespace per node; removed on drop.
#[derive(Debug)]
pub struct Net {
    /// Bridge in the root namespace.
    pub bridge: String,
    /// Address of the bridge (workers without a namespace bind it; the test's MQTT broker
    /// listens there).
    pub host_addr: String,
    /// The namespaces: `0..coords` for the coordinators, then one per worker.
    pub nodes: Vec<Node>,
    /// How many of `nodes` are coordinators (peer cuts split among them only).
    pub coords: usize,
}

impl Net {
    /// Creates the bridge and `n` namespaces, all coordinators. On error, what was created is
    /// removed.
    pub fn setup(n: usize) -> Result<Self, String> {
        Self::setup_with(n, 0)
    }

    /// Creates the bridge, `coords` coordinator namespaces and `workers` worker namespaces
    /// (node `coords + w` for worker `w`).
    pub fn setup_with(coords: usize, workers: usize) -> Result<Self, String> {
        let n = coords + workers;
        let mut instance = SETUP.lock().unwrap_or_else(|e| e.into_inner());
        cleanup_stale();
        let base = format!(
            "{PREFIX}{}{}",
            std::process::id(),
            char::from(b'a' + *instance % 26)
        );
        *instance = instance.wrapping_add(1);
        let x = pick_subnet()?;
        let mut net = Self {
            bridge: format!("{base}b"),
            host_addr: format!("10.77.{x}.254"),
            nodes: Vec::new(),
            coords,
        };
        ip(&["link", "add", &net.bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", net.host_addr),
            "dev",
            &net.bridge,
        ])?;
        ip(&["link", "set", &net.bridge, "up"])?;
        for i in 0..n {
            let node = Node {
                ns: format!("{base}n{i}"),
                veth: format!("{base}v{i}"),
                addr: format!("10.77.{x}.{}", i + 1),
            };
            let peer = format!("{}p", node.veth);
            ip(&["netns", "add", &node.ns])?;
            net.nodes.push(node);
            let node = &net.nodes[i];
            ip(&[
                "link", "add", &node.veth, "type", "veth", "peer", "name", &peer,
            ])?;
            ip(&["link", "set", &peer, "netns", &node.ns])?;
            ip(&["link", "set", &node.veth, "master", &net.bridge])?;
            ip(&["link", "set", &node.veth, "up"])?;
            ip(&["-n", &node.ns, "link", "set", &peer, "name", "eth0"])?;
            ip(&[
                "-n",
                &node.ns,
                "addr",
                "add",
                &format!("{}/24", node.addr),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &node.ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &node.ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// Command prefix running a program in node `i`'s namespace.
    pub fn exec_prefix(&self, i: usize) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.nodes[i].ns.clone(),
        ]
    }

    /// Takes node `i`'s link down: it is cut from everyone.
    pub fn isolate(&self, i: usize) -> Result<(), String> {
        ip(&["link", "set", &self.nodes[i].veth, "down"])
    }

    /// Brings node `i`'s link back up.
    pub fn rejoin(&self, i: usize) -> Result<(), String> {
        ip(&["link", "set", &self.nodes[i].veth, "up"])
    }

    /// Drops every frame node `from` sends to node `to` (one direction).
    pub fn cut(&self, from: usize, to: usize) -> Result<(), String> {
        ip(&[
            "-n",
            &self.nodes[from].ns,
            "neigh",
            "replace",
            &self.nodes[to].addr,
            "lladdr",
            BLACKHOLE_MAC,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ])
    }

    /// Undoes [`Net::cut`] (the address is resolved again by ARP).
    pub fn uncut(&self, from: usize, to: usize) -> Result<(), String> {
        ip(&[
            "-n",
            &self.nodes[from].ns,
            "neigh",
            "del",
            &self.nodes[to].addr,
            "dev",
            "eth0",
        ])
    }

    /// Cuts coordinator `i` from every other coordinator in both directions (clients and
    /// workers still reach it).
    pub fn split_off(&self, i: usize) -> Result<(), String> {
        for j in (0..self.coords).filter(|&j| j != i) {
            self.cut(i, j)?;
            self.cut(j, i)?;
        }
        Ok(())
    }

    /// Cuts worker `w` (node `coords + w`) from every coordinator in both directions; it
    /// still reaches the bridge (the MQTT broker, the test process).
    pub fn cut_worker(&self, w: usize) -> Result<(), String> {
        let i = self.coords + w;
        for j in 0..self.coords {
            self.cut(i, j)?;
            self.cut(j, i)?;
        }
        Ok(())
    }

    /// Undoes [`Net::cut_worker`].
    pub fn uncut_worker(&self, w: usize) -> Result<(), String> {
        let i = self.coords + w;
        let mut result = Ok(());
        for j in 0..self.coords {
            for (a, b) in [(i, j), (j, i)] {
                if let Err(e) = self.uncut(a, b) {
                    result = Err(e);
                }
            }
        }
        result
    }

    /// Undoes [`Net::split_off`].
    pub fn unsplit(&self, i: usize) -> Result<(), String> {
        let mut result = Ok(());
        for j in (0..self.coords).filter(|&j| j != i) {
            for (a, b) in [(i, j), (j, i)] {
                if let Err(e) = self.uncut(a, b) {
                    result = Err(e);
                }
            }
        }
        result
    }

    /// One line for the report.
    pub fn describe(&self) -> String {
        format!(
            "enabled: bridge {} {}/24, namespaces {}",
            self.bridge,
            self.host_addr,
            self.nodes
                .iter()
                .map(|n| format!("{}={}", n.ns, n.addr))
                .collect::<Vec<_>>()
                .join(" ")
        )
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for node in &self.nodes {
            // Deleting the root side removes the pair; deleting the namespace name lets it
            // vanish once its last process has exited.
            let _ = ip(&["link", "del", &node.veth]);
            let _ = ip(&["netns", "del", &node.ns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_parses_our_names_only() {
        assert_eq!(owner_pid("vch1234ab"), Some(1234));
        assert_eq!(owner_pid("vch4194304zv2p"), Some(4194304));
        assert_eq!(owner_pid("vch77n0"), Some(77));
        assert_eq!(owner_pid("vch9v2p"), Some(9));
        assert_eq!(owner_pid("veth0"), None);
        assert_eq!(owner_pid("vchx"), None);
    }

    /// Runs `f` on a thread that has entered namespace `ns`.
    fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{ns}");
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap();
            // SAFETY: setns(2) on a valid namespace fd; it only affects this thread.
            let rc =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}");
            f()
        })
        .join()
        .unwrap()
    }

    /// Two namespaces on a bridge: reachable, a one-way cut drops traffic, a heal
    /// restores it, and the same for a link taken down; drop removes everything.
    #[test]
    fn netns_cut_and_heal() {
        if let Err(why) = probe() {
            eprintln!("SKIPPED netns_cut_and_heal: {why}");
            return;
        }
        let net = Net::setup(2).unwrap();
        let addr1: std::net::SocketAddr = format!("{}:7000", net.nodes[1].addr).parse().unwrap();
        let listener = in_ns(&net.nodes[1].ns, move || {
            std::net::TcpListener::bind(addr1).unwrap()
        });
        // The listener keeps its namespace; accept in the background.
        std::thread::spawn(move || for _ in listener.incoming() {});
        let ns0 = net.nodes[0].ns.clone();
        let reach = move || {
            in_ns(&ns0, move || {
                std::net::TcpStream::connect_timeout(&addr1, std::time::Duration::from_millis(700))
                    .is_ok()
            })
        };
        // After a heal, ARP and the bridge port may take a moment: retry for a few seconds.
        let reach_soon = || (0..8).any(|_| reach());
        assert!(reach_soon(), "namespaces cannot reach each other");
        net.cut(0, 1).unwrap();
        assert!(!reach(), "cut did not drop traffic");
        net.uncut(0, 1).unwrap();
        assert!(reach_soon(), "heal did not restore traffic");
        net.isolate(1).unwrap();
        assert!(!reach(), "isolate did not drop traffic");
        net.rejoin(1).unwrap();
        assert!(reach_soon(), "rejoin did not restore traffic");
        let names: Vec<String> = net.nodes.iter().map(|n| n.ns.clone()).collect();
        let bridge = net.bridge.clone();
        drop(net);
        let left = ip_out(&["netns", "list"]);
        assert!(names.iter().all(|n| !left.contains(n.as_str())));
        assert!(!ip_out(&["-o", "link", "show"]).contains(&bridge));
    }
}
