//! Benchmark placeholder: implemented by its issue.
fn main() {
    println!("raft_writes: not implemented yet");
}
