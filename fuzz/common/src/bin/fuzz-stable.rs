//! Stable-Rust fuzz driver: mutates the seed corpus of each target for a
//! time budget and reports (and saves) any input that panics.
//!
//! ```text
//! fuzz-stable [--seconds N] [--seed S] [--corpus DIR] [--artifacts DIR] [TARGET...]
//! fuzz-stable --replay FILE... --target NAME
//! ```
//!
//! Coverage-blind (no instrumentation, so it runs on a stable toolchain),
//! but seeded with valid inputs and mutated structurally (byte flips,
//! splices, token insertion, duplication), which reaches the parsers' deep
//! paths. Inputs from `corpus/<target>/` (cargo-fuzz's corpus layout) and
//! the crash files saved in `artifacts/<target>/` are replayed first, so a
//! fixed crash stays fixed.
#![forbid(unsafe_code)]

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use xcatd_fuzz_common::TARGETS;

/// Small, fast, reproducible PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Tokens worth inserting: the syntax the parsers care about.
const TOKENS: &[&[u8]] = &[
    b"<xcatrequest>",
    b"</xcatrequest>",
    b"<command>",
    b"</command>",
    b"<arg>",
    b"</arg>",
    b"<noderange>",
    b"<![CDATA[",
    b"]]>",
    b"&amp;",
    b"&#x0;",
    b"&#65;",
    b"<!--",
    b"-->",
    b"<?xml version=\"1.0\"?>",
    b"/>",
    b"[",
    b"]",
    b"-",
    b",",
    b"@",
    b"^",
    b"(",
    b")",
    b"/",
    b"==",
    b"=~",
    b"!=",
    b"+",
    b"*",
    b"#INCLUDE:",
    b"#",
    b"\n",
    b"../",
    b"/..",
    b"./",
    b"\0",
    b"ustar\0",
    b"ustar  \0",
    b"././@LongLink",
    b"path=",
    b"linkpath=",
    b"SCHILY.xattr.",
    b"99999999999",
    b"00000000000",
];

fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>], max_len: usize) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(9) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            2 if !v.is_empty() => {
                let i = rng.below(v.len());
                let n = rng.below(v.len() - i).min(64) + 1;
                v.drain(i..(i + n).min(v.len()));
            }
            3 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                let i = rng.below(v.len() + 1);
                v.splice(i..i, t.iter().copied());
            }
            4 if !v.is_empty() => {
                // Duplicate a slice (repetition finds limits and quadratic paths).
                let i = rng.below(v.len());
                let n = rng.below(v.len() - i).min(256) + 1;
                let piece: Vec<u8> = v[i..i + n].to_vec();
                let at = rng.below(v.len() + 1);
                v.splice(at..at, piece);
            }
            5 if !corpus.is_empty() => {
                // Splice with another corpus entry.
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let i = rng.below(other.len());
                    let at = rng.below(v.len() + 1);
                    v.truncate(at);
                    v.extend_from_slice(&other[i..]);
                }
            }
            6 if v.len() > 1 => {
                let n = rng.below(v.len());
                v.truncate(n);
            }
            7 if !v.is_empty() => {
                // Interesting numbers in ASCII (tar headers keep octal text).
                let i = rng.below(v.len());
                let digits = [b'0', b'7', b'9', b' ', b'\0'];
                for j in i..(i + rng.below(12) + 1).min(v.len()) {
                    v[j] = digits[rng.below(digits.len())];
                }
            }
            _ => {
                let i = rng.below(v.len() + 1);
                let n = rng.below(16) + 1;
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(i..i, bytes);
            }
        }
    }
    v.truncate(max_len);
    v
}

fn read_dir_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Run one input; on a panic, return its message.
fn run_one(f: fn(&[u8]), data: &[u8]) -> Result<(), String> {
    std::panic::catch_unwind(AssertUnwindSafe(|| f(data))).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())
    })
}

struct Opts {
    seconds: f64,
    seed: u64,
    corpus: PathBuf,
    artifacts: PathBuf,
    targets: Vec<String>,
    replay: Vec<PathBuf>,
    max_len: usize,
}

fn parse_args() -> Opts {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("fuzz dir")
        .to_path_buf();
    let mut o = Opts {
        seconds: 60.0,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1,
        corpus: here.join("corpus"),
        artifacts: here.join("artifacts"),
        targets: Vec::new(),
        replay: Vec::new(),
        max_len: 64 * 1024,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| {
            args.next()
                .unwrap_or_else(|| panic!("{name} needs a value"))
        };
        match a.as_str() {
            "--seconds" => o.seconds = val("--seconds").parse().expect("--seconds: a number"),
            "--seed" => o.seed = val("--seed").parse::<u64>().expect("--seed: a number") | 1,
            "--corpus" => o.corpus = val("--corpus").into(),
            "--artifacts" => o.artifacts = val("--artifacts").into(),
            "--max-len" => o.max_len = val("--max-len").parse().expect("--max-len: a number"),
            "--target" => o.targets.push(val("--target")),
            "--replay" => o.replay.push(val("--replay").into()),
            "-h" | "--help" => {
                println!(
                    "usage: fuzz-stable [--seconds N] [--seed S] [--corpus DIR] [--artifacts DIR] [--max-len N] [TARGET...]\n       \
                     fuzz-stable --target NAME --replay FILE...\ntargets: {}",
                    TARGETS.iter().map(|t| t.0).collect::<Vec<_>>().join(", ")
                );
                std::process::exit(0);
            }
            t if !t.starts_with('-') => o.targets.push(t.to_string()),
            other => panic!("unknown option {other}"),
        }
    }
    if o.targets.is_empty() {
        o.targets = TARGETS.iter().map(|t| t.0.to_string()).collect();
    }
    o
}

fn main() {
    let o = parse_args();
    // Findings are reported below; the default hook would print each one twice.
    std::panic::set_hook(Box::new(|_| {}));
    let mut failed = 0;
    for name in &o.targets {
        let f = TARGETS
            .iter()
            .find(|t| t.0 == name)
            .unwrap_or_else(|| panic!("no target {name}"))
            .1;
        if !o.replay.is_empty() {
            for p in &o.replay {
                let data = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                match run_one(f, &data) {
                    Ok(()) => println!("{name}: {} ok", p.display()),
                    Err(msg) => {
                        println!("{name}: {} PANICS: {msg}", p.display());
                        failed += 1;
                    }
                }
            }
            continue;
        }
        let mut corpus: Vec<Vec<u8>> = read_dir_files(&o.corpus.join(name))
            .into_iter()
            .map(|(_, b)| b)
            .collect();
        // Earlier findings must stay fixed.
        let known = read_dir_files(&o.artifacts.join(name));
        for (p, data) in &known {
            if let Err(msg) = run_one(f, data) {
                println!("{name}: saved finding {} still panics: {msg}", p.display());
                failed += 1;
            }
        }
        if corpus.is_empty() {
            corpus.push(Vec::new());
        }
        for seed in corpus.clone() {
            if let Err(msg) = run_one(f, &seed) {
                println!("{name}: a corpus input panics: {msg}");
                failed += 1;
            }
        }
        let mut rng = Rng(o.seed ^ name.bytes().fold(0u64, |h, b| h.rotate_left(5) ^ b as u64));
        let budget = Duration::from_secs_f64(o.seconds);
        let start = Instant::now();
        let (mut runs, mut found) = (0u64, 0usize);
        while start.elapsed() < budget && found < 5 {
            let base = corpus[rng.below(corpus.len())].clone();
            let input = mutate(&mut rng, &base, &corpus, o.max_len);
            runs += 1;
            if let Err(msg) = run_one(f, &input) {
                found += 1;
                failed += 1;
                let dir = o.artifacts.join(name);
                let _ = std::fs::create_dir_all(&dir);
                let h = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
                });
                let path = dir.join(format!("crash-{h:016x}"));
                let _ = std::fs::write(&path, &input);
                println!(
                    "{name}: PANIC after {runs} runs: {msg}\n  input saved to {}",
                    path.display()
                );
            } else if rng.below(64) == 0 && corpus.len() < 4096 {
                // Keep some mutants as new starting points (no coverage
                // feedback, so a random sample of them).
                corpus.push(input);
            }
        }
        println!(
            "{name}: {runs} runs in {:.1} s (seed {}), {found} finding(s)",
            start.elapsed().as_secs_f64(),
            o.seed
        );
    }
    xcatd_fuzz_common::remove_scratch();
    if failed > 0 {
        println!("{failed} failing input(s)");
        std::process::exit(1);
    }
}
