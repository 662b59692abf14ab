//! Packs a tree with the library, as packimage does, and prints the figures.
//! Used by `bench/pack`.
//!
//! ```text
//! pack [-m cpio|tar|squashfs] [-c gzip|xz|zstd|none] [-l LEVEL] [-t THREADS] ROOT DIR
//! ```
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use xcat_image::pack::{self, compress::Compression, Format, PackProgress, PackSpec};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut spec = PackSpec {
        format: Format::Cpio,
        compression: Compression::Gzip,
        level: None,
        threads: 0,
    };
    let mut pos = Vec::new();
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .unwrap_or_else(|| die(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "-m" => spec.format = Format::parse(&val()).unwrap_or_else(|| die("bad -m")),
            "-c" => spec.compression = Compression::parse(&val()).unwrap_or_else(|| die("bad -c")),
            "-l" => spec.level = Some(val().parse().unwrap_or_else(|_| die("bad -l"))),
            "-t" => spec.threads = val().parse().unwrap_or_else(|_| die("bad -t")),
            _ => pos.push(a),
        }
    }
    let [root, dir] = pos.as_slice() else {
        die("usage: pack [-m cpio|tar|squashfs] [-c gzip|xz|zstd|none] [-l LEVEL] [-t THREADS] ROOT DIR")
    };
    let t = Instant::now();
    let progress = PackProgress::default();
    let out = pack::pack(
        pack::Tree::whole(root.as_ref()),
        dir.as_ref(),
        &spec.file_name(),
        &spec,
        &pack::RecordInputs::default(),
        &progress,
        &AtomicBool::new(false),
    )
    .unwrap_or_else(|e| die(&e.to_string()));
    println!(
        "{} {} {} {:.3}",
        out.path.display(),
        out.bytes,
        out.stats.content_bytes,
        t.elapsed().as_secs_f64()
    );
}

fn die(m: &str) -> ! {
    eprintln!("pack: {m}");
    std::process::exit(2)
}
