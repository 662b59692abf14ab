//! `bench/netboot`: how long a diskless node takes from power-on to ssh
//! for each packed format, and how fast the stateless initrd fetches and
//! unpacks an image inside a guest against `curl | zstd -d | tar -x` of the
//! same file in the same guest. See docs/benchmarks.md.
//!
//!   netboot [RUNS]        (default 3; run by bench/netboot, as root)
//!
//! One test-bed node with the Debian kernel is captured once; then, in each
//! round, every format (in a rotated order) is packed, `nodeset`, and a
//! diskless qemu guest (TCG, BIOS, 2 CPUs) PXE-boots it through real
//! dnsmasq and the boot service; the time is from starting qemu to the
//! guest's first ssh answer. Then one guest booted from tar stays up and
//! both fetchers take turns on the packed tar.zst.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use xcat_remote::testbed::{Node, NodeOptions, TestBed};
use xcatd_tests::netboot::{
    debian_kernel, define_network_and_guests, install_kernel, sh, ssh, stateless_daemon, tail,
    wait_for_ssh, Booted, IMAGE, IMAGE_DIR, SL1,
};
use xcatd_tests::{netinit_binary, Daemon, PxeBed, PxeGuest};

const FORMATS: &[&str] = &["cpio", "tar", "squashfs"];
/// Enough RAM for a tar root and a second unpacked copy beside it.
const GUEST_MIB: u32 = 4096;
const BOOT_LIMIT: Duration = Duration::from_secs(600);
/// The guest's own tools are not enough for the baseline: these host
/// binaries (and the libraries they need that the image may lack) go to
/// the guest; the host is the same Debian release as the image.
const TOOLS: &[&str] = &["/usr/bin/curl", "/usr/bin/zstd"];
const GUEST_TOOLS: &str = "/root/bench";
/// The figure the initrd must reach, as a share of the baseline's rate.
const RATE_TARGET: f64 = 0.9;

struct Bench<'a> {
    d: &'a Daemon,
    bed: &'a PxeBed,
    node: &'a Node,
    work: PathBuf,
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .map_or(3, |a| a.parse().expect("RUNS: a number"));
    let (_, kver) = debian_kernel();
    let node = TestBed::node_with(
        "nbb",
        &NodeOptions {
            disk_mb: Some(6144),
            ..NodeOptions::default()
        },
    );
    install_kernel(&node, &kver);
    let bed = PxeBed::up();
    let sup = stateless_daemon(&node);
    let d = &sup.0;
    let t = Instant::now();
    d.ok(&["capimage", &node.name]);
    println!(
        "captured {} in {:.1} s",
        node.name,
        t.elapsed().as_secs_f64()
    );
    d.ok(&[
        "chtab",
        &format!("imagename={IMAGE}"),
        &format!("linuximage.kernelver={kver}"),
    ]);
    define_network_and_guests(d, &[&SL1]);
    d.ok(&["makedhcp", "-n"]);
    let b = Bench {
        d,
        bed: &bed,
        node: &node,
        work: tempfile::tempdir().expect("tempdir").keep(),
    };
    let boots = b.boot_times(runs);
    let rates = b.fetch_rates(runs);
    report(&boots, &rates);
    let _ = std::fs::remove_dir_all(&b.work);
}

/// Seconds from power-on to ssh, per format.
type BootTimes = Vec<(&'static str, Vec<f64>)>;

impl Bench<'_> {
    fn dir(&self) -> PathBuf {
        self.d.install_dir().join(IMAGE_DIR)
    }

    /// packimage and nodeset for the guest; the packed file.
    fn pack(&self, format: &str) -> PathBuf {
        self.d.ok(&["packimage", "-m", format, "-c", "zstd", IMAGE]);
        self.d
            .ok(&["nodeset", SL1.node, &format!("osimage={IMAGE}")]);
        let suffix = if format == "squashfs" {
            "sfs".to_string()
        } else {
            format!("{format}.zst")
        };
        self.dir().join(format!("rootimg.{suffix}"))
    }

    fn boot(&self, tag: &str) -> (PxeGuest, Booted) {
        let console = self.work.join(format!("console-{tag}.log"));
        let started = Instant::now();
        let guest = self
            .bed
            .guest_sized(SL1.slot, SL1.mac, "bios", &console, GUEST_MIB, 2);
        let booted = wait_for_ssh(
            &SL1,
            &self.node.identity,
            &self.work,
            started,
            BOOT_LIMIT,
            "true",
        );
        let booted = booted.unwrap_or_else(|| {
            let text = std::fs::read_to_string(&console).unwrap_or_default();
            panic!(
                "{tag}: no ssh within {BOOT_LIMIT:?}; console:\n{}",
                tail(&text, 60)
            )
        });
        (guest, booted)
    }

    fn boot_times(&self, runs: usize) -> BootTimes {
        let mut times: BootTimes = FORMATS.iter().map(|f| (*f, Vec::new())).collect();
        for round in 0..runs {
            for i in 0..FORMATS.len() {
                let k = (i + round) % FORMATS.len();
                let format = FORMATS[k];
                let packed = self.pack(format);
                let (guest, booted) = self.boot(&format!("{format}-{round}"));
                drop(guest);
                let secs = booted.after.as_secs_f64();
                println!(
                    "round {round}: {format} ({:.0} MiB packed): ssh after {secs:.1} s",
                    mib(file_size(&packed))
                );
                times[k].1.push(secs);
            }
        }
        times
    }

    /// The tar image booted once; then, in turns, the initrd's fetch+unpack
    /// and the baseline pipeline into a fresh tmpfs inside that guest.
    fn fetch_rates(&self, runs: usize) -> Rates {
        let packed = self.pack("tar");
        let (guest, booted) = self.boot("rates");
        let in_guest = |cmd: &str| {
            ssh(SL1.ip, &self.node.identity, &booted.known_hosts, cmd).unwrap_or_else(|| {
                let log = ssh(
                    SL1.ip,
                    &self.node.identity,
                    &booted.known_hosts,
                    "cat /run/nb/log",
                );
                panic!("in the guest: {cmd}: failed; the helper's log: {log:?}")
            })
        };
        self.send_tools(&booted);
        let url = in_guest("tr ' ' '\\n' < /proc/cmdline | sed -n 's/^imgurl=//p'");
        let url = url.trim();
        assert!(
            url.ends_with(".tar.zst"),
            "imgurl of the tar image: {url:?}"
        );
        let mut r = Rates {
            packed: file_size(&packed),
            tree: None,
            ours: Vec::new(),
            baseline: Vec::new(),
        };
        for round in 0..runs {
            for first in [round % 2 == 0, round % 2 == 1] {
                if first {
                    r.ours.push(timed(&in_guest(&netinit_run())));
                } else {
                    let out = in_guest(&baseline_run(url));
                    r.baseline.push(timed(&out));
                    r.tree = out
                        .lines()
                        .find_map(|l| l.strip_prefix("tree "))
                        .and_then(|v| v.trim().parse().ok());
                    // The guest's shell may lack pipefail: a cut pipeline
                    // shows as a small tree instead.
                    assert!(
                        r.tree.is_some_and(|t| t > r.packed),
                        "the baseline unpacked too little ({:?} bytes): {out}",
                        r.tree
                    );
                }
            }
            println!(
                "round {round}: initrd {:.1} s, baseline {:.1} s",
                r.ours[round], r.baseline[round]
            );
        }
        drop(guest);
        r
    }

    /// The initrd's helper and the baseline's tools, with the libraries
    /// they need, into the guest's GUEST_TOOLS.
    fn send_tools(&self, booted: &Booted) {
        let stage = self.work.join("tools");
        std::fs::create_dir_all(stage.join("lib")).expect("stage");
        std::fs::copy(netinit_binary(), stage.join("xcat-netinit")).expect("copy netinit");
        for tool in TOOLS {
            let name = Path::new(tool).file_name().expect("name");
            std::fs::copy(tool, stage.join(name)).unwrap_or_else(|e| panic!("{tool}: {e}"));
            for lib in libraries(tool) {
                let name = Path::new(&lib).file_name().expect("name").to_owned();
                std::fs::copy(&lib, stage.join("lib").join(name)).expect("copy library");
            }
        }
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(&stage)
            .args(["-chf", "-", "."])
            .stdout(Stdio::piped())
            .spawn()
            .expect("tar");
        let status = Command::new("ssh")
            .arg("-i")
            .arg(&self.node.identity)
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                booted.known_hosts.display()
            ))
            .arg(format!("root@{}", SL1.ip))
            .arg(format!(
                "mkdir -p {GUEST_TOOLS} && tar -C {GUEST_TOOLS} -xf -"
            ))
            .stdin(tar.stdout.take().expect("pipe"))
            .status()
            .expect("ssh");
        assert!(
            status.success() && tar.wait().expect("tar").success(),
            "sending the tools"
        );
    }
}

/// The shared libraries `tool` loads, without the C library's own (the
/// guest has the same glibc).
fn libraries(tool: &str) -> Vec<String> {
    let out = sh(&format!("ldd '{tool}'"));
    out.lines()
        .filter_map(|l| l.split("=>").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .filter(|p| p.starts_with('/'))
        .filter(|p| {
            let name = Path::new(p)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("");
            ![
                "libc.so",
                "libm.so",
                "libpthread.so",
                "libdl.so",
                "librt.so",
                "ld-linux",
            ]
            .iter()
            .any(|g| name.starts_with(g))
        })
        .map(str::to_string)
        .collect()
}

/// One run of the initrd's helper as `/init` runs it: the guest's own
/// command line (`imgurl=`), a tmpfs it mounts itself, the record fetched
/// and checked, then unmounted again. Prints `start`/`end` in seconds.
fn netinit_run() -> String {
    format!(
        "set -e; mkdir -p /mnt/ni /run/nb; s=$(date +%s.%N); \
         XCAT_NETINIT_RUNDIR=/run/nb {GUEST_TOOLS}/xcat-netinit boot /mnt/ni 2>/run/nb/log; \
         e=$(date +%s.%N); umount /mnt/ni; echo start $s; echo end $e"
    )
}

/// One run of the baseline into a tmpfs as large as the guest allows,
/// keeping what the initrd keeps (owners, modes, xattrs).
fn baseline_run(url: &str) -> String {
    format!(
        "set -e; mkdir -p /mnt/cz; mount -t tmpfs -o size=75% tmpfs /mnt/cz; \
         export LD_LIBRARY_PATH={GUEST_TOOLS}/lib; s=$(date +%s.%N); \
         {GUEST_TOOLS}/curl -sSf '{url}' | {GUEST_TOOLS}/zstd -dc \
           | tar -x -p --numeric-owner --xattrs --xattrs-include='*' -C /mnt/cz; \
         e=$(date +%s.%N); echo tree $(du -sb --apparent-size /mnt/cz | cut -f1); \
         umount /mnt/cz; echo start $s; echo end $e"
    )
}

/// `end - start` from a run's output.
fn timed(out: &str) -> f64 {
    let field = |k: &str| -> f64 {
        out.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {k:?} in {out:?}"))
    };
    field("end ") - field("start ")
}

struct Rates {
    packed: u64,
    tree: Option<u64>,
    ours: Vec<f64>,
    baseline: Vec<f64>,
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .len()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn range(v: &[f64]) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{lo:.1} - {hi:.1}")
}

/// The table, and bench/results/netboot-latest.json (the entries bench/run
/// reports).
fn report(boots: &BootTimes, r: &Rates) {
    let mut entries = Vec::new();
    println!("\n| case | median | range | baseline | ratio | target | met |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (format, secs) in boots {
        println!(
            "| power-on to ssh, {format} | {:.1} s | {} s | | | | |",
            median(secs),
            range(secs)
        );
        entries.push(
            json!({"name": format!("netboot power-on to ssh {format}"), "value": median(secs),
            "unit": "s", "baseline": null, "ratio": null, "target": null, "met": null}),
        );
    }
    let rate = |secs: &[f64]| mib(r.packed) / median(secs);
    let (ours, base) = (rate(&r.ours), rate(&r.baseline));
    let ratio = ours / base;
    let met = ratio >= RATE_TARGET;
    println!(
        "| initrd fetch+verify+unpack | {ours:.1} MiB/s ({:.1} s) | {} s | {base:.1} MiB/s ({:.1} s) | {ratio:.2}x | >= {RATE_TARGET}x | {} |",
        median(&r.ours),
        range(&r.ours),
        median(&r.baseline),
        if met { "yes" } else { "no" }
    );
    println!(
        "(rates of the packed file, {:.0} MiB of tar.zst; the tree is {} MiB; baseline: curl | zstd -d | tar -x in the same guest)",
        mib(r.packed),
        r.tree.map_or("?".to_string(), |t| format!("{:.0}", mib(t)))
    );
    entries.push(
        json!({"name": "netboot initrd fetch+unpack rate", "value": ours, "unit": "MiB/s",
        "baseline": "curl | zstd -d | tar -x in the guest", "ratio": ratio,
        "target": format!(">= {RATE_TARGET}"), "met": met}),
    );
    let results = xcatd_tests::repo_root().join("bench/results");
    let _ = std::fs::create_dir_all(&results);
    let mut f = std::fs::File::create(results.join("netboot-latest.json")).expect("results");
    writeln!(
        f,
        "{}",
        serde_json::to_string_pretty(&entries).expect("json")
    )
    .expect("write");
}
