//! Benchmark placeholder: implemented by its issue.
fn main() {
    println!("heartbeats: not implemented yet");
}
