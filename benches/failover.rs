//! Benchmark placeholder: implemented by its issue.
fn main() {
    println!("failover: not implemented yet");
}
