//! liteimg's checks of an image's litefile entries, with xCAT's messages
//! (scripts and admins know them).

use xcat_image::linkfarm::Entry;

/// Options liteimg accepts (xCAT's list; `tmpfs,rw` is rewritten to `link`
/// before the check).
const OPTIONS: &[&str] = &[
    "tmpfs",
    "persistent",
    "localdisk",
    "rw",
    "ro",
    "con",
    "link",
    "tmpfs,rw",
    "link,ro",
    "link,persistent",
    "link,con",
];

/// The first problem with `entries`, in xCAT's words.
pub fn check(entries: &[Entry]) -> Result<(), String> {
    for e in entries {
        check_one(e)?;
    }
    for parent in entries.iter().filter(|p| p.is_dir()) {
        for child in entries.iter().filter(|c| parent.holds(c)) {
            check_pair(parent, child)?;
        }
    }
    Ok(())
}

fn check_one(e: &Entry) -> Result<(), String> {
    if !OPTIONS.contains(&e.options.as_str()) {
        return Err(format!(
            " {} has invalid option. The valid options: tmpfs persistent localdisk rw ro con link tmpfs,rw link,ro link,persistent link,con",
            e.path
        ));
    }
    let plain = e.path.starts_with('/')
        && e.path
            .split('/')
            .all(|c| c != "." && c != ".." && !c.contains('\0'))
        && !e.path.contains(char::is_whitespace);
    if !plain {
        return Err(format!(" {} is not one absolute path. ", e.path));
    }
    if e.options.contains("con") && e.is_dir() {
        return Err(format!(
            " {} is directory, don't use \"con\" as its option ",
            e.path
        ));
    }
    Ok(())
}

/// xCAT's parent and child rules.
fn check_pair(parent: &Entry, child: &Entry) -> Result<(), String> {
    let (f, fc) = (&parent.path, &child.path);
    if parent.options.ends_with("ro") || parent.options.ends_with("con") {
        return Err(format!(
            "the directory \"{f}\" should not be with \"ro\" or \"con\" as its option"
        ));
    }
    if parent.is_link() {
        if child.options == "link,ro" {
            return Err(format!(
                "Based on the option of {f}, {fc} should not use \"link,ro\" as its option"
            ));
        }
        if !child.is_link() {
            return Err(format!(
                "Based on the option of {f}, {fc} can only use \"link\"-based options"
            ));
        }
    } else if child.is_link() && fc != "/etc/mtab" {
        return Err(format!(
            "Based on the option of {f}, {fc} should not use \"link\"-based options"
        ));
    }
    if parent.options.contains("persistent") && !child.options.contains("persistent") {
        return Err(format!("{fc} should have persistent option like {f} "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(options: &str, path: &str) -> Entry {
        Entry {
            options: options.into(),
            path: path.into(),
        }
    }

    #[test]
    fn single_entries_are_checked() {
        assert!(check(&[e("bogus", "/a")])
            .unwrap_err()
            .contains("has invalid option"));
        assert!(check(&[e("tmpfs", "a/b")])
            .unwrap_err()
            .contains("not one absolute path"));
        assert!(check(&[e("tmpfs", "/a/../b")])
            .unwrap_err()
            .contains("not one absolute path"));
        assert!(check(&[e("con", "/etc/")])
            .unwrap_err()
            .contains("don't use \"con\""));
        assert!(check(&[e("link", "/etc/"), e("tmpfs", "/var/")]).is_ok());
    }

    #[test]
    fn parents_and_children_follow_xcat_rules() {
        let err = |v: &[Entry]| check(v).unwrap_err();
        assert!(err(&[e("ro", "/opt/"), e("ro", "/opt/a")]).contains("should not be with \"ro\""));
        assert!(err(&[e("link", "/opt/"), e("link,ro", "/opt/a")]).contains("\"link,ro\""));
        assert!(err(&[e("link", "/opt/"), e("tmpfs", "/opt/a")]).contains("can only use"));
        assert!(err(&[e("tmpfs", "/opt/"), e("link", "/opt/a")]).contains("should not use"));
        assert!(err(&[e("persistent", "/opt/"), e("tmpfs", "/opt/a")])
            .contains("should have persistent"));
        assert!(check(&[
            e("link,persistent", "/opt/"),
            e("link,persistent", "/opt/a")
        ])
        .is_ok());
        assert!(check(&[e("tmpfs", "/etc/"), e("link", "/etc/mtab")]).is_ok());
    }
}
