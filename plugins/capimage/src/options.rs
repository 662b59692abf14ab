//! The command line of `capimage`, parsed strictly: unknown options and stray
//! words are errors (xCAT printed usage and exited 0 for them).

use std::path::PathBuf;

use xcat_image::pack::compress::Compression;
use xcat_image::pack::{Format, PackSpec};
pub use xcat_plugin::args::Parsed;
use xcat_plugin::args::Syntax;
use xcat_plugin::HandlerError;

pub use crate::consistent::SnapshotMode;

pub const USAGE: &str = "\
Usage: capimage <node> [-p|--profile PROFILE] [-o|--osimage IMAGE] [-x|--exlist FILE]
                [--transport-compress auto|none|gzip|zstd]
                [--pack cpio.gz|cpio.xz|cpio.zst|tar.gz|tar.xz|tar.zst|squashfs|none]
                [--snapshot auto|require|off]
                [--dry-run] [--keep N] [--no-sysclean] [--scrub] [-i BOOTIF] [-n NETDRIVERS]
                [-t|--type diskless] [-V|--verbose]
       capimage -h|--help
       capimage -v|--version
Captures the root filesystem of a running diskful node into the netboot image
<installdir>/netboot/<os>/<arch>/<profile>/rootimg (or linuximage.rootimgdir of -o IMAGE).";

/// The command's name and usage for the shared parser.
pub const SYNTAX: Syntax = Syntax::new("capimage", USAGE);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compress {
    Auto,
    None,
    Gzip,
    Zstd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub profile: Option<String>,
    pub osimage: Option<String>,
    pub exlist: Option<PathBuf>,
    pub compress: Compress,
    /// Read btrfs filesystems from snapshots (`--snapshot`).
    pub snapshot: SnapshotMode,
    /// The archive packimage makes after the capture, or None.
    pub pack: Option<PackSpec>,
    pub dry_run: bool,
    /// Earlier trees kept as generations.
    pub keep: usize,
    pub sysclean: bool,
    /// Remove the secrets the audit finds (`--scrub`).
    pub scrub: bool,
    pub bootif: Option<String>,
    pub netdrivers: Option<String>,
    pub verbose: bool,
}

/// The options as clap reads them; [`Cli::options`] checks what is left.
#[derive(Debug, clap::Parser)]
struct Cli {
    #[arg(short = 'p', long = "profile")]
    profile: Option<String>,
    #[arg(short = 'o', long = "osimage")]
    osimage: Option<String>,
    #[arg(short = 'x', long = "exlist")]
    exlist: Option<PathBuf>,
    #[arg(long = "transport-compress", value_parser = compress)]
    compress: Option<Compress>,
    #[arg(long = "snapshot", value_parser = SnapshotMode::parse)]
    snapshot: Option<SnapshotMode>,
    #[arg(long = "pack", value_parser = pack)]
    pack: Option<Pack>,
    #[arg(long = "dry-run")]
    dry_run: bool,
    #[arg(long = "keep", value_parser = keep)]
    keep: Option<usize>,
    #[arg(long = "no-sysclean")]
    no_sysclean: bool,
    #[arg(long = "scrub")]
    scrub: bool,
    #[arg(short = 'i')]
    bootif: Option<String>,
    #[arg(short = 'n')]
    netdrivers: Option<String>,
    /// `-t`: only diskless is captured; the value is checked, then not needed.
    #[arg(short = 't', long = "type", value_parser = image_type)]
    _image_type: Option<Diskless>,
    #[arg(short = 'V', long = "verbose")]
    verbose: bool,
    /// Words after the node, collected to be refused with a hint.
    #[arg(hide = true)]
    words: Vec<String>,
}

/// `--pack` as given: `none` is a value too.
#[derive(Debug, Clone, Copy)]
struct Pack(Option<PackSpec>);

/// The one image type `-t` accepts.
#[derive(Debug, Clone, Copy)]
struct Diskless;

fn compress(v: &str) -> Result<Compress, String> {
    Ok(match v {
        "auto" => Compress::Auto,
        "none" => Compress::None,
        "gzip" => Compress::Gzip,
        "zstd" => Compress::Zstd,
        other => return Err(format!("unknown --transport-compress {other:?}")),
    })
}

/// `--pack` names the archive as its file is named (`cpio.zst`, `sfs`):
/// method and suffix are read with packimage's own `-m` and `-c` parsers.
fn pack(v: &str) -> Result<Pack, String> {
    if v == "none" {
        return Ok(Pack(None));
    }
    let (method, suffix) = v.split_once('.').unwrap_or((v, ""));
    let format = Format::parse(method);
    let compression = match format {
        Some(Format::Squashfs) if suffix.is_empty() => Some(Compression::Zstd),
        Some(Format::Cpio | Format::Tar) => {
            Compression::parse(suffix).filter(|c| *c != Compression::None && c.suffix() == suffix)
        }
        _ => None,
    };
    match (format, compression) {
        (Some(format), Some(compression)) => Ok(Pack(Some(PackSpec {
            format,
            compression,
            level: None,
            threads: 0,
        }))),
        _ => Err(format!("unknown --pack format {v:?}")),
    }
}

fn keep(v: &str) -> Result<usize, String> {
    v.parse()
        .map_err(|_| format!("--keep needs a number, not {v:?}"))
}

fn image_type(v: &str) -> Result<Diskless, String> {
    match v {
        "diskless" | "netboot" | "stateless" => Ok(Diskless),
        "sysclone" => Err(
            "-t sysclone is not supported: capimage captures diskless (netboot) images only".into(),
        ),
        other => Err(format!(
            "unknown image type {other:?}; the only type is diskless"
        )),
    }
}

impl Cli {
    fn options(self) -> Result<Options, HandlerError> {
        if let Some(w) = self.words.first() {
            return Err(SYNTAX.error(format!(
                "unexpected argument {w:?} (the node must come first)"
            )));
        }
        Ok(Options {
            profile: self.profile,
            osimage: self.osimage,
            exlist: self.exlist,
            compress: self.compress.unwrap_or(Compress::Auto),
            snapshot: self.snapshot.unwrap_or(SnapshotMode::Auto),
            pack: self.pack.and_then(|p| p.0),
            dry_run: self.dry_run,
            keep: self.keep.unwrap_or(1),
            sysclean: !self.no_sysclean,
            scrub: self.scrub,
            bootif: self.bootif,
            netdrivers: self.netdrivers,
            verbose: self.verbose,
        })
    }
}

/// Parse the arguments after the node (the client took the noderange out).
pub fn parse(args: &[String]) -> Result<Parsed<Options>, HandlerError> {
    SYNTAX.parse::<Cli>(args)?.and_then(Cli::options)
}

/// The arguments of the packimage sub-request that makes `spec`'s archive.
pub fn packimage_args(spec: &PackSpec, image: &str) -> Vec<String> {
    let (method, compressor) = (spec.format.name(), spec.compression.suffix());
    ["-m", method, "-c", compressor, image]
        .map(String::from)
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> Result<Parsed<Options>, String> {
        parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).map_err(|e| e.to_string())
    }

    #[test]
    fn options_parse_strictly() {
        let Parsed::Run(o) = p(&[
            "-p",
            "compute",
            "--pack=cpio.zst",
            "--keep",
            "3",
            "-V",
            "-t",
            "diskless",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(o.profile.as_deref(), Some("compute"));
        let pack = o.pack.map(|s| (s.format, s.compression));
        assert_eq!(pack, Some((Format::Cpio, Compression::Zstd)));
        assert_eq!(o.keep, 3);
        assert!(o.verbose && o.sysclean);
        assert!(p(&["--bogus"]).unwrap_err().contains("unknown option"));
        assert!(p(&["node2"]).unwrap_err().contains("unexpected argument"));
        assert!(p(&["-t", "sysclone"])
            .unwrap_err()
            .contains("not supported"));
        assert!(p(&["-p"]).unwrap_err().contains("needs a value"));
        assert_eq!(p(&["-h"]).unwrap(), Parsed::Help);
    }

    #[test]
    fn pack_formats_are_the_archive_names() {
        let name = |v: &str| match p(&["--pack", v]) {
            Ok(Parsed::Run(o)) => o.pack.map(|s| s.file_name()),
            other => panic!("{v}: {other:?}"),
        };
        for v in [
            "cpio.gz", "cpio.xz", "cpio.zst", "tar.gz", "tar.xz", "tar.zst",
        ] {
            assert_eq!(name(v), Some(format!("rootimg.{v}")));
        }
        assert_eq!(name("squashfs"), Some("rootimg.sfs".into()));
        assert_eq!(name("sfs"), Some("rootimg.sfs".into()));
        assert_eq!(name("none"), None);
        for bad in [
            "zip",
            "cpio",
            "cpio.gzip",
            "cpio.none",
            "tar.",
            "sfs.zst",
            "cpio.gz.x",
        ] {
            let e = p(&["--pack", bad]).unwrap_err();
            assert!(
                e.starts_with(&format!("unknown --pack format {bad:?}\n")),
                "{e}"
            );
        }
        let spec = PackSpec {
            format: Format::Squashfs,
            compression: Compression::Zstd,
            level: None,
            threads: 0,
        };
        assert_eq!(
            packimage_args(&spec, "img"),
            ["-m", "squashfs", "-c", "zst", "img"]
        );
    }
}
