//! The capture pipeline that runs on the node.
//!
//! `find` walks `/` once, pruning excluded trees (exlist patterns and the
//! contents of skipped mount points) unless a `+` pattern re-includes them,
//! and feeds NUL-separated names to GNU tar, which writes a POSIX (pax)
//! archive with xattrs, ACLs, sparse files and numeric owners to stdout,
//! optionally through a compressor. Nothing is written on the node.
//!
//! Every pattern and path is data: each is shell-quoted, never spliced in as
//! code. The script reports the exit status of every stage on stderr
//! (`@@status find=N tar=N comp=N`) so a failing stage is never masked by a
//! succeeding last one.

use xcat_remote::shell_quote;

use crate::exlist::{glob_escape, ExList};
use crate::options::Compress;

/// The compression actually used on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    None,
    Gzip,
    Zstd,
}

impl Wire {
    pub fn name(self) -> &'static str {
        match self {
            Wire::None => "none",
            Wire::Gzip => "gzip",
            Wire::Zstd => "zstd",
        }
    }
}

/// Choose the wire compression from the option and the node's tools.
pub fn choose(c: Compress, has_zstd: bool, has_gzip: bool) -> Result<Wire, String> {
    match c {
        // On a LAN, a single-threaded gzip on the node is slower than the
        // network; only zstd is worth it by default.
        Compress::Auto => Ok(if has_zstd { Wire::Zstd } else { Wire::None }),
        Compress::None => Ok(Wire::None),
        Compress::Zstd if has_zstd => Ok(Wire::Zstd),
        Compress::Gzip if has_gzip => Ok(Wire::Gzip),
        Compress::Zstd => Err("zstd is not installed on the node; use --transport-compress none or auto".into()),
        Compress::Gzip => Err("gzip is not installed on the node; use --transport-compress none or auto".into()),
    }
}

/// Patterns excluded: the exlist's and `./<mountpoint>/*` of skipped mounts.
pub fn effective_excludes(ex: &ExList, skipped_mounts: &[String]) -> Vec<String> {
    let mut v = ex.exclude.clone();
    for m in skipped_mounts {
        let rel = m.trim_start_matches('/');
        if rel.is_empty() {
            continue;
        }
        let p = format!("./{}/*", glob_escape(rel));
        if !v.contains(&p) {
            v.push(p);
        }
    }
    v
}

/// The bash script for the node.
pub fn script(excludes: &[String], includes: &[String], wire: Wire, acls: bool) -> String {
    let mut find = String::from("find .");
    if !excludes.is_empty() {
        find.push_str(" \\(");
        for (i, p) in excludes.iter().enumerate() {
            if i > 0 {
                find.push_str(" -o");
            }
            find.push_str(" -path ");
            find.push_str(&shell_quote(p));
        }
        find.push_str(" \\)");
        if !includes.is_empty() {
            find.push_str(" ! \\(");
            for (i, p) in includes.iter().enumerate() {
                if i > 0 {
                    find.push_str(" -o");
                }
                find.push_str(" -path ");
                find.push_str(&shell_quote(p));
            }
            find.push_str(" \\)");
        }
        find.push_str(" -prune -o");
    }
    find.push_str(" -print0");
    let mut tar = String::from(
        "tar --create --file=- --null --no-recursion --files-from=- --format=posix \
         --xattrs --xattrs-include='*' --sparse --numeric-owner --warning=no-file-ignored",
    );
    if acls {
        tar.push_str(" --acls");
    }
    let comp = match wire {
        Wire::None => None,
        Wire::Zstd => Some("zstd -q -c -T0 -1"),
        Wire::Gzip => Some("gzip -c -1"),
    };
    let pipe = match comp {
        Some(c) => format!("{find} | {tar} | {c}"),
        None => format!("{find} | {tar}"),
    };
    format!(
        "cd / || exit 97\n{pipe}\ns=(\"${{PIPESTATUS[@]}}\")\n\
         echo \"@@status find=${{s[0]}} tar=${{s[1]}} comp=${{s[2]:-0}}\" >&2\n\
         [ \"${{s[0]}}\" -le 1 ] && [ \"${{s[1]}}\" -le 1 ] && [ \"${{s[2]:-0}}\" -eq 0 ] || exit 3\n"
    )
}

/// The command line for ssh: the script run by bash (for PIPESTATUS).
pub fn command(script: &str) -> String {
    format!("exec bash -c {}", shell_quote(script))
}

/// Exit statuses the script reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Statuses {
    pub find: i32,
    pub tar: i32,
    pub comp: i32,
}

pub fn parse_status(line: &str) -> Option<Statuses> {
    let rest = line.strip_prefix("@@status ")?;
    let mut s = Statuses::default();
    for kv in rest.split_whitespace() {
        let (k, v) = kv.split_once('=')?;
        let v: i32 = v.parse().ok()?;
        match k {
            "find" => s.find = v,
            "tar" => s.tar = v,
            "comp" => s.comp = v,
            _ => {}
        }
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_patterns_stay_data() {
        let ex = ExList {
            exclude: vec!["./tmp/*".into(), "./x'; touch PWNED #".into()],
            include: vec!["./tmp/keep*".into()],
            source: None,
        };
        let excl = effective_excludes(&ex, &["/mnt/other fs".into(), "/proc".into()]);
        assert_eq!(excl[2], "./mnt/other fs/*");
        let s = script(&excl, &ex.include, Wire::Zstd, true);
        // Run the find part for real in a scratch tree through bash: the
        // hostile pattern must not execute, and pruning must work.
        let d = tempfile::tempdir().unwrap();
        for p in ["tmp/a", "tmp/keep1", "mnt/other fs/m", "proc/p", "etc/e"] {
            let full = d.path().join(p);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(&full, "x").unwrap();
        }
        let find_line = s.lines().nth(1).unwrap().split(" | ").next().unwrap().replace("-print0", "-print");
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(&find_line)
            .current_dir(d.path())
            .output()
            .unwrap();
        let mut listed: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(String::from).collect();
        listed.sort();
        assert_eq!(
            listed,
            vec![".", "./etc", "./etc/e", "./mnt", "./mnt/other fs", "./proc", "./tmp", "./tmp/keep1"]
        );
        assert!(!d.path().join("PWNED").exists(), "a pattern ran as code");
    }

    #[test]
    fn status_line() {
        assert_eq!(
            parse_status("@@status find=0 tar=1 comp=0"),
            Some(Statuses { find: 0, tar: 1, comp: 0 })
        );
        assert_eq!(parse_status("tar: x: file changed as we read it"), None);
    }

    #[test]
    fn compression_choice() {
        assert_eq!(choose(Compress::Auto, true, true), Ok(Wire::Zstd));
        assert_eq!(choose(Compress::Auto, false, true), Ok(Wire::None));
        assert!(choose(Compress::Zstd, false, true).is_err());
    }
}
