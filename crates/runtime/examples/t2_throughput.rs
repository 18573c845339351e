//! Runs the VPL throughput bench (`benches/vpl_throughput.rs`, Tier 1 and Tier 2 workloads)
//! while building only the runtime crate, which is much cheaper on a shared machine than the
//! root package's `cargo bench -p varpulis --bench vpl_throughput`. Same arguments:
//!
//! `cargo run --release -p varpulis-runtime --example t2_throughput -- [tier1 events] [tier2 events]`

#[path = "../../../benches/vpl_throughput.rs"]
mod bench;

fn main() {
    bench::main();
}
