//! The statelite entries of an image, merged as xCAT merges them, and the
//! lines the commands print. Pure: the rows come from the caller.
//!
//! `litefile` rows apply to an image by name, by one of its `osimage.groups`,
//! by `ALL` or by an empty image; they are taken in that order of increasing
//! weight (groups, empty, `ALL`, the image itself) and a later row wins for
//! the same path. An empty option is served as `tmpfs,rw`, and Linux images
//! always get `/etc/mtab` (as `link` unless a row names it). `litetree` rows
//! merge the same way by priority and are listed by ascending priority.

use std::collections::BTreeMap;

/// One `litefile` row as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiteFileRow {
    pub image: String,
    pub file: String,
    pub options: String,
}

/// One `litetree` row as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiteTreeRow {
    pub priority: String,
    pub image: String,
    pub directory: String,
    pub mntopts: String,
}

/// What an entry with no option means (xCAT's compatible default).
pub const DEFAULT_OPTIONS: &str = "tmpfs,rw";
/// The file every Linux statelite image has.
const MTAB: &str = "/etc/mtab";

/// The image names a row may carry to apply to `image`, weakest first.
fn scopes<'a>(image: &'a str, groups: &'a [String]) -> Vec<&'a str> {
    let mut v: Vec<&str> = groups.iter().map(String::as_str).collect();
    v.extend(["", "ALL", image]);
    v
}

/// The litefile entries of `image` (member of `groups`): path → options,
/// sorted by path as xCAT sorts them (byte order).
pub fn files_of(image: &str, groups: &[String], rows: &[LiteFileRow]) -> BTreeMap<String, String> {
    let mut merged = BTreeMap::new();
    for scope in scopes(image, groups) {
        for r in rows
            .iter()
            .filter(|r| r.image == scope && !r.file.is_empty())
        {
            let o = if r.options.trim().is_empty() || r.file == MTAB {
                // xCAT serves /etc/mtab as tmpfs,rw whatever the row says
                // (liteimg then makes it a link).
                DEFAULT_OPTIONS
            } else {
                r.options.trim()
            };
            merged.insert(r.file.clone(), o.to_string());
        }
    }
    merged
        .entry(MTAB.to_string())
        .or_insert_with(|| "link".to_string());
    merged
}

/// The litetree entries of `image`: (priority, `directory:mntopts`), by
/// ascending numeric priority.
pub fn trees_of(image: &str, groups: &[String], rows: &[LiteTreeRow]) -> Vec<(String, String)> {
    let mut merged: BTreeMap<String, String> = BTreeMap::new();
    for scope in scopes(image, groups) {
        for r in rows
            .iter()
            .filter(|r| r.image == scope && !r.directory.is_empty())
        {
            merged.insert(r.priority.clone(), format!("{}:{}", r.directory, r.mntopts));
        }
    }
    let mut v: Vec<(String, String)> = merged.into_iter().collect();
    v.sort_by(|a, b| priority(&a.0).total_cmp(&priority(&b.0)));
    v
}

/// A priority as a number (Perl's `<=>` on a non-number sees 0).
fn priority(p: &str) -> f64 {
    p.trim().parse().unwrap_or(0.0)
}

/// A litefile line: `<who>: <options, padded to 13> <file>` (who is a node
/// for `litefile`, an image for `ilitefile`), or lslite's indented form.
pub fn file_line(who: Option<&str>, options: &str, file: &str) -> String {
    match who {
        Some(w) => format!("{w}: {options:<13} {file}"),
        None => format!("        {options:<13} {file}"),
    }
}

/// Where a litetree entry mounts from, as the node reads it:
/// `server:dir` (or `dir` with no server), then ` :mntopts` when set.
/// `$node` in the server or directory becomes the node's name.
pub fn tree_mount(entry: &str, node: &str) -> String {
    let mut parts = entry.split(':');
    let (a, b, opts) = (parts.next().unwrap_or(""), parts.next(), parts.next());
    let (server, dir) = match b.filter(|d| !d.is_empty()) {
        Some(d) => (a, d),
        None => ("", a),
    };
    let dir = dir.replace("$node", node).replace("//", "/");
    let mut m = if server.is_empty() {
        dir
    } else {
        format!("{}:{dir}", server.replace("$node", node))
    };
    if let Some(o) = opts.filter(|o| !o.is_empty()) {
        m.push_str(" :");
        m.push_str(o);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(image: &str, file: &str, options: &str) -> LiteFileRow {
        LiteFileRow {
            image: image.into(),
            file: file.into(),
            options: options.into(),
        }
    }

    #[test]
    fn later_scopes_win_and_defaults_apply() {
        let rows = vec![
            f("img", "/var/", "persistent"),
            f("ALL", "/var/", "tmpfs"),
            f("ALL", "/etc/ssh/", ""),
            f("grp", "/etc/ssh/", "ro"),
            f("", "/tmp/", "tmpfs"),
            f("other", "/srv/", "tmpfs"),
            f("grp", "/opt/", "rw"),
        ];
        let m = files_of("img", &["grp".into()], &rows);
        let got: Vec<(&str, &str)> = m.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(
            got,
            vec![
                ("/etc/mtab", "link"),
                ("/etc/ssh/", "tmpfs,rw"),
                ("/opt/", "rw"),
                ("/tmp/", "tmpfs"),
                ("/var/", "persistent"),
            ]
        );
    }

    #[test]
    fn a_named_mtab_is_served_as_tmpfs_rw() {
        let m = files_of("img", &[], &[f("img", "/etc/mtab", "persistent")]);
        assert_eq!(m["/etc/mtab"], "tmpfs,rw");
    }

    #[test]
    fn lines_are_padded_as_xcat_pads_them() {
        assert_eq!(
            file_line(Some("cn1"), "tmpfs", "/etc/adjtime"),
            "cn1: tmpfs         /etc/adjtime"
        );
        assert_eq!(
            file_line(None, "link,persistent", "/var/"),
            "        link,persistent /var/"
        );
    }

    #[test]
    fn trees_sort_by_number_and_show_their_options() {
        let t = |p: &str, d: &str, o: &str| LiteTreeRow {
            priority: p.into(),
            image: "ALL".into(),
            directory: d.into(),
            mntopts: o.into(),
        };
        let rows = vec![
            t("10", "srv:/b", ""),
            t("2", "srv:/a/$node", "nfsvers=4"),
            t("1.5", "/local", ""),
        ];
        let v = trees_of("img", &[], &rows);
        let shown: Vec<String> = v.iter().map(|(_, e)| tree_mount(e, "cn1")).collect();
        assert_eq!(shown, vec!["/local", "srv:/a/cn1 :nfsvers=4", "srv:/b"]);
        assert_eq!(v[0].0, "1.5");
    }
}
