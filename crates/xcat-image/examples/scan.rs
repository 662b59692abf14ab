//! Time one `scan_tree_parallel` of a tree (imgverify's walk and hashing),
//! for bench/verify: prints the seconds and the entry count.
//!
//! ```text
//! cargo run --release -p xcat-image --example scan -- ROOT [THREADS]
//! ```

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let root = std::path::Path::new(args.get(1).expect("ROOT"));
    let threads = args.get(2).and_then(|t| t.parse().ok()).unwrap_or(2);
    let t = std::time::Instant::now();
    let m = xcat_image::scan_tree_parallel(root, threads).expect("scan");
    println!("{:.3} {}", t.elapsed().as_secs_f64(), m.len());
}
