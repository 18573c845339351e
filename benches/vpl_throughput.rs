//! Benchmark placeholder: implemented by its issue.
fn main() {
    println!("vpl_throughput: not implemented yet");
}
