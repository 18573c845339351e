//! Benchmark placeholder: implemented by its issue.
fn main() {
    println!("worker_inject: not implemented yet");
}
