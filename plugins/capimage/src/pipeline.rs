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

use xcat_remote::{shell_join, shell_quote};

use crate::consistent::Consistency;
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

/// Choose the wire compression from the option and the node's tools; the
/// error names the compressor asked for that the node lacks.
pub fn choose(c: Compress, has_zstd: bool, has_gzip: bool) -> Result<Wire, &'static str> {
    match c {
        // On a LAN, a single-threaded gzip on the node is slower than the
        // network; only zstd is worth it by default.
        Compress::Auto => Ok(if has_zstd { Wire::Zstd } else { Wire::None }),
        Compress::None => Ok(Wire::None),
        Compress::Zstd if has_zstd => Ok(Wire::Zstd),
        Compress::Gzip if has_gzip => Ok(Wire::Gzip),
        Compress::Zstd => Err("zstd"),
        Compress::Gzip => Err("gzip"),
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

/// `patterns` plus, for each that does not end in `*`, the same pattern
/// followed by `/*`: excluding (or re-including) a directory means its
/// whole subtree, whatever the pattern's form.
fn with_subtrees(patterns: &[String]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    let mut push = |p: String| {
        if !v.contains(&p) {
            v.push(p);
        }
    };
    for p in patterns {
        push(p.clone());
        if !p.ends_with('*') && p != "." {
            push(format!("{p}/*"));
        }
    }
    v
}

/// The directories on the way to each re-include pattern (`./a/b/c*` gives
/// `./a` and `./a/b`): an excluded directory matching one of them is kept
/// and walked instead of pruned, so what lies beneath can be re-included.
/// A glob in an early component makes the walk wider, never narrower.
fn include_ancestors(includes: &[String]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for p in includes {
        let parts: Vec<&str> = p.split('/').collect();
        for i in 2..parts.len() {
            let a = parts[..i].join("/");
            if !v.contains(&a) {
                v.push(a);
            }
        }
    }
    v
}

/// ` -path 'P1' -o -path 'P2' ...` (shell-quoted).
fn any_path(patterns: &[String]) -> String {
    let mut s = String::new();
    for (i, p) in patterns.iter().enumerate() {
        if i > 0 {
            s.push_str(" -o");
        }
        s.push_str(" -path ");
        s.push_str(&shell_quote(p));
    }
    s
}

/// The `find` stage: walks `.`, prunes as the patterns say, and runs
/// `action` (e.g. `-print0`) on every entry it keeps.
///
/// An entry is kept unless it matches an exclude pattern (or lies under
/// a directory that does) and matches no re-include pattern, as packimage
/// decides it; excluded directories are pruned unless a re-include pattern
/// lies beneath them, in which case the directory itself is kept and only
/// the re-included part of its contents is walked.
fn find_command(excludes: &[String], includes: &[String], action: &str) -> String {
    let mut find = String::from("find .");
    if !excludes.is_empty() {
        let includes = with_subtrees(includes);
        find.push_str(" \\(");
        find.push_str(&any_path(&with_subtrees(excludes)));
        find.push_str(" \\)");
        if !includes.is_empty() {
            find.push_str(" ! \\(");
            find.push_str(&any_path(&includes));
            find.push_str(" \\)");
        }
        let ancestors = include_ancestors(&includes);
        if ancestors.is_empty() {
            find.push_str(" -prune -o");
        } else {
            find.push_str(" \\( -type d \\(");
            find.push_str(&any_path(&ancestors));
            find.push_str(&format!(" \\) {action} -o -prune \\) -o"));
        }
    }
    find.push(' ');
    find.push_str(action);
    find
}

/// GNU tar reading NUL-separated names from stdin, writing pax to stdout.
fn tar_command(acls: bool) -> String {
    let mut tar = String::from(
        "tar --create --file=- --null --no-recursion --files-from=- --format=posix \
         --xattrs --xattrs-include='*' --sparse --numeric-owner --warning=no-file-ignored",
    );
    if acls {
        tar.push_str(" --acls");
    }
    tar
}

/// The node's zstd is asked for level 1 (`-1`), whose window is 2^19 bytes
/// (zstd's parameter table); the decoder accepts up to 2^23 (8 MiB, the
/// window of every level up to 19), and refuses a stream declaring more
/// instead of allocating what it declares (zstd's own default ceiling is
/// 2^27, 128 MiB per stream).
pub const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// The first line of every script: C-locale messages (so [`crate::churn`]
/// can classify them) and the root as working directory.
const PROLOGUE: &str = "export LC_ALL=C; cd / || exit 97";

/// The bash script for the node: `find | tar [| compressor]`.
///
/// It first reports the node's clock (`@@start SECONDS`), so entries that
/// appear or change during the capture can be found afterwards
/// ([`changed_since_script`]).
/// tar's status 2 and find's 1 do not fail the script: on a busy node they
/// mean entries vanished between the listing and the read, and the daemon
/// tells that from a real failure by the messages ([`crate::churn`]).
pub fn script(excludes: &[String], includes: &[String], wire: Wire, acls: bool) -> String {
    format!("{PROLOGUE}; {}", body(excludes, includes, wire, acls))
}

/// [`script`] read as `c` says: under the package manager's lock, from
/// snapshots where there are any ([`crate::consistent`]).
pub fn consistent_script(
    c: &Consistency,
    excludes: &[String],
    includes: &[String],
    wire: Wire,
    acls: bool,
) -> String {
    format!(
        "export LC_ALL=C\n{}",
        c.wrap(&body(excludes, includes, wire, acls))
    )
}

/// The pipeline, run in the root of the tree it reads.
fn body(excludes: &[String], includes: &[String], wire: Wire, acls: bool) -> String {
    let find = find_command(excludes, includes, "-print0");
    let tar = tar_command(acls);
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
        "echo \"@@start $(date +%s)\" >&2\n{pipe}\ns=(\"${{PIPESTATUS[@]}}\")\n\
         echo \"@@status find=${{s[0]}} tar=${{s[1]}} comp=${{s[2]:-0}}\" >&2\n\
         [ \"${{s[0]}}\" -le 1 ] && [ \"${{s[1]}}\" -le 2 ] && [ \"${{s[2]:-0}}\" -eq 0 ] || exit 3\n"
    )
}

/// The script that reads `names` (root-relative, `./`-prefixed) again, as
/// an uncompressed archive on stdout; same status reporting as [`script`].
/// Afterwards it names (`@@changed ./NAME`) each of `names[check_from..]`
/// whose inode changed since the re-read began: a rename onto the name is
/// invisible to tar, which reads whichever inode it opened to the end.
pub fn reread_script(names: &[String], check_from: usize, acls: bool) -> String {
    let tar = tar_command(acls);
    let checked = &names[check_from.min(names.len())..];
    // The kernel stamps ctime from a coarse clock (a tick behind `date`),
    // so the check starts 20 ms early: a change just before counts too.
    // find's complaints about names gone by now are not news: tar's are.
    let check = if checked.is_empty() {
        String::new()
    } else {
        format!(
            "find {} -maxdepth 0 -newerct \"@${{t:0:-9}}.${{t: -9}}\" \
             -printf '@@changed %p\\n' >&2 2>/dev/null\n",
            shell_join(checked)
        )
    };
    format!(
        "{PROLOGUE}\nt=$(( $(date +%s%N) - 20000000 ))\n\
         printf '%s\\0' {all} | {tar}\ns=(\"${{PIPESTATUS[@]}}\")\n{check}\
         echo \"@@status find=0 tar=${{s[1]}} comp=0\" >&2\n\
         [ \"${{s[1]}}\" -le 2 ] || exit 3\n",
        all = shell_join(names),
    )
}

/// The script that lists the entries the capture's walk would keep whose
/// inode changed at or after `since` (the node's clock at the start of the
/// capture, minus a second for clock granularity): every entry created or
/// replaced since, and every one whose content or metadata changed. Each
/// is its type letter (find's `%y`) and its `./`-prefixed name, NUL-ended.
pub fn changed_since_script(excludes: &[String], includes: &[String], since: u64) -> String {
    let since = since.saturating_sub(1);
    let find = find_command(
        excludes,
        includes,
        &format!("-newerct @{since} -printf '%y%p\\0'"),
    );
    format!("{PROLOGUE}\n{find}\n")
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
        let find_line = s
            .lines()
            .nth(1)
            .unwrap()
            .split(" | ")
            .next()
            .unwrap()
            .replace("-print0", "-print");
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(&find_line)
            .current_dir(d.path())
            .output()
            .unwrap();
        let mut listed: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        listed.sort();
        assert_eq!(
            listed,
            vec![
                ".",
                "./etc",
                "./etc/e",
                "./mnt",
                "./mnt/other fs",
                "./proc",
                "./tmp",
                "./tmp/keep1"
            ]
        );
        assert!(!d.path().join("PWNED").exists(), "a pattern ran as code");
    }

    /// Run the `find` stage of a script in `root`; the sorted names it lists.
    fn listed(script: &str, root: &std::path::Path) -> Vec<String> {
        let find_line = script
            .lines()
            .nth(1)
            .unwrap()
            .split(" | ")
            .next()
            .unwrap()
            .replace("-print0", "-print");
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(&find_line)
            .current_dir(root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{find_line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut v: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn reincludes_reach_under_pruned_trees() {
        let d = tempfile::tempdir().unwrap();
        for p in [
            "a/deep/keep/k1",
            "a/deep/keep/sub/k2",
            "a/deep/other/o",
            "a/deep/file",
            "b/cache/keepme",
            "b/cache/gone/g",
            "c/tree/x",
        ] {
            let full = d.path().join(p);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(&full, "x").unwrap();
        }
        let s = |ex: &[&str], inc: &[&str]| {
            let ex: Vec<String> = ex.iter().map(|s| s.to_string()).collect();
            let inc: Vec<String> = inc.iter().map(|s| s.to_string()).collect();
            script(&ex, &inc, Wire::None, false)
        };
        // `./a/deep*` names the directory itself: a re-include beneath it
        // keeps the directory (for its metadata) and the re-included subtree.
        let got = listed(
            &s(
                &["./a/deep*", "./b/cache", "./c/tree"],
                &["./a/deep/keep", "./b/cache/keep*"],
            ),
            d.path(),
        );
        assert_eq!(
            got,
            vec![
                ".",
                "./a",
                "./a/deep",
                "./a/deep/keep",
                "./a/deep/keep/k1",
                "./a/deep/keep/sub",
                "./a/deep/keep/sub/k2",
                "./b",
                "./b/cache",
                "./b/cache/keepme",
                "./c"
            ]
        );
        // Without re-includes, excluded directories are pruned whole.
        let got = listed(&s(&["./a/deep", "./b/cache/*"], &[]), d.path());
        assert_eq!(
            got,
            vec![
                ".",
                "./a",
                "./b",
                "./b/cache",
                "./c",
                "./c/tree",
                "./c/tree/x"
            ]
        );
    }

    #[test]
    fn status_line() {
        assert_eq!(
            parse_status("@@status find=0 tar=1 comp=0"),
            Some(Statuses {
                find: 0,
                tar: 1,
                comp: 0
            })
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
