//! Network-partition support probe.
//!
//! Partitions need each coordinator in its own network namespace (veth pairs on a bridge,
//! links cut with `ip link set down`). That needs root and a working `ip netns`; this module
//! checks both at runtime and says why partitions are skipped when they are.

use std::process::Command;

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Returns a one-line description of partition support for the report.
///
/// Partition injection itself is not implemented yet (see docs/chaos.md): the harness
/// starts coordinators on 127.0.0.1 with loopback peer URLs, which a namespace cannot
/// reach. The probe still runs so the report says whether the host could do it.
pub fn probe() -> String {
    // SAFETY-free check of the effective uid through `id -u`.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !root {
        return "SKIPPED: not root, `ip netns` needs CAP_NET_ADMIN".into();
    }
    let name = format!("chaos-probe-{}", std::process::id());
    if !ip(&["netns", "add", &name]) {
        return "SKIPPED: `ip netns add` fails on this host".into();
    }
    let _ = ip(&["netns", "del", &name]);
    "SKIPPED: `ip netns` works here, but namespace-based partition injection is not \
     implemented yet (coordinators use loopback peer URLs); see docs/chaos.md"
        .into()
}
