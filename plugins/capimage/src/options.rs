//! The command line of `capimage`, parsed strictly: unknown options and stray
//! words are errors (xCAT printed usage and exited 0 for them).

use std::path::PathBuf;

pub const USAGE: &str = "\
Usage: capimage <node> [-p|--profile PROFILE] [-o|--osimage IMAGE] [-x|--exlist FILE]
                [--transport-compress auto|none|gzip|zstd]
                [--pack cpio.gz|cpio.xz|cpio.zst|tar.gz|tar.xz|tar.zst|squashfs|none]
                [--dry-run] [--keep N] [--no-sysclean] [-i BOOTIF] [-n NETDRIVERS]
                [-t diskless] [-V|--verbose]
       capimage -h|--help
       capimage -v|--version
Captures the root filesystem of a running diskful node into the netboot image
<installdir>/netboot/<os>/<arch>/<profile>/rootimg (or linuximage.rootimgdir of -o IMAGE).";

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
    /// Pack method and compressor as packimage takes them (`cpio`, `gz`), or None.
    pub pack: Option<(String, String)>,
    pub dry_run: bool,
    /// Earlier trees kept as generations.
    pub keep: usize,
    pub sysclean: bool,
    pub bootif: Option<String>,
    pub netdrivers: Option<String>,
    pub verbose: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Help,
    Version,
    Run(Options),
}

fn value<'a>(
    it: &mut impl Iterator<Item = &'a String>,
    opt: &str,
    inline: Option<&'a str>,
) -> Result<&'a str, String> {
    if let Some(v) = inline {
        return Ok(v);
    }
    it.next()
        .map(String::as_str)
        .ok_or_else(|| format!("option {opt} needs a value"))
}

fn pack_spec(v: &str) -> Result<Option<(String, String)>, String> {
    Ok(Some(match v {
        "none" => return Ok(None),
        "cpio.gz" => ("cpio".into(), "gzip".into()),
        "cpio.xz" => ("cpio".into(), "xz".into()),
        "cpio.zst" => ("cpio".into(), "zstd".into()),
        "tar.gz" => ("tar".into(), "gzip".into()),
        "tar.xz" => ("tar".into(), "xz".into()),
        "tar.zst" => ("tar".into(), "zstd".into()),
        "squashfs" | "sfs" => ("squashfs".into(), "zstd".into()),
        other => return Err(format!("unknown --pack format {other:?}")),
    }))
}

/// Parse the arguments after the node (the client took the noderange out).
pub fn parse(args: &[String]) -> Result<Parsed, String> {
    let mut o = Options {
        profile: None,
        osimage: None,
        exlist: None,
        compress: Compress::Auto,
        pack: None,
        dry_run: false,
        keep: 1,
        sysclean: true,
        bootif: None,
        netdrivers: None,
        verbose: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v)),
            _ => (a.as_str(), None),
        };
        match name {
            "-h" | "--help" => return Ok(Parsed::Help),
            "-v" | "--version" => return Ok(Parsed::Version),
            "-p" | "--profile" => o.profile = Some(value(&mut it, name, inline)?.to_string()),
            "-o" | "--osimage" => o.osimage = Some(value(&mut it, name, inline)?.to_string()),
            "-x" | "--exlist" => o.exlist = Some(PathBuf::from(value(&mut it, name, inline)?)),
            "-i" => o.bootif = Some(value(&mut it, name, inline)?.to_string()),
            "-n" => o.netdrivers = Some(value(&mut it, name, inline)?.to_string()),
            "-t" | "--type" => match value(&mut it, name, inline)? {
                "diskless" | "netboot" | "stateless" => {}
                "sysclone" => {
                    return Err("-t sysclone is not supported: capimage captures diskless (netboot) images only".into())
                }
                other => return Err(format!("unknown image type {other:?}; the only type is diskless")),
            },
            "--transport-compress" => {
                o.compress = match value(&mut it, name, inline)? {
                    "auto" => Compress::Auto,
                    "none" => Compress::None,
                    "gzip" => Compress::Gzip,
                    "zstd" => Compress::Zstd,
                    other => return Err(format!("unknown --transport-compress {other:?}")),
                }
            }
            "--pack" => o.pack = pack_spec(value(&mut it, name, inline)?)?,
            "--dry-run" => o.dry_run = true,
            "--keep" => {
                let v = value(&mut it, name, inline)?;
                o.keep = v.parse().map_err(|_| format!("--keep needs a number, not {v:?}"))?;
            }
            "--no-sysclean" => o.sysclean = false,
            "-V" | "--verbose" => o.verbose = true,
            other if other.starts_with('-') => return Err(format!("unknown option {other}")),
            other => return Err(format!("unexpected argument {other:?} (the node must come first)")),
        }
    }
    Ok(Parsed::Run(o))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> Result<Parsed, String> {
        parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
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
        assert_eq!(o.pack, Some(("cpio".into(), "zstd".into())));
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
}
