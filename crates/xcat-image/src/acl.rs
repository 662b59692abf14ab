//! POSIX ACLs: GNU tar's `--acls` stores `SCHILY.acl.access` / `SCHILY.acl.default`
//! as libacl long text (`user::rw-\nuser:1234:rw-\ngroup::r--\nmask::rw-\nother::r--\n`),
//! with user and group *names* where the writing host could resolve them. The kernel
//! takes ACLs as the binary `system.posix_acl_access` / `system.posix_acl_default`
//! xattrs; this module converts.
//!
//! With `--xattrs --xattrs-include='*'` GNU tar also stores the binary xattrs
//! themselves; the extractor prefers those and uses the text form only when they are
//! absent. Names are resolved by the caller against the *image's* passwd/group, never
//! the management node's.

use std::collections::{HashMap, HashSet};

/// Binary format version written by the kernel and libacl.
const ACL_EA_VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;
const UNDEFINED_ID: u32 = u32::MAX;

/// Why an ACL text could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    #[error("malformed ACL entry {0:?}")]
    Malformed(String),
    #[error("ACL names {kind} {name:?}, unknown in the image")]
    Unresolved { kind: &'static str, name: String },
    #[error("ACL lacks a required user::, group:: or other:: entry")]
    Incomplete,
}

/// Whether an ACL text names users or groups (needs the image's passwd/group).
pub fn has_names(text: &[u8]) -> bool {
    parse_entries(text, &|_, _| None).is_err_and(|e| matches!(e, AclError::Unresolved { .. }))
}

fn parse_perm(p: &str) -> Option<u16> {
    let mut v = 0;
    for c in p.chars() {
        match c {
            'r' => v |= 4,
            'w' => v |= 2,
            'x' => v |= 1,
            '-' => {}
            _ => return None,
        }
    }
    Some(v)
}

type Lookup<'a> = &'a dyn Fn(bool, &str) -> Option<u32>;

/// The entries of an ACL text: one per line or comma, comments and blanks dropped.
fn acl_lines(text: &str) -> impl Iterator<Item = &str> {
    text.split(['\n', ','])
        .map(|raw| raw.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty())
}

/// The user (`true`) and group names an ACL text needs resolved: qualifiers that are
/// neither numeric nor followed by star's numeric fourth field.
pub fn qualifier_names(text: &[u8]) -> Vec<(bool, String)> {
    let text = String::from_utf8_lossy(text);
    let mut out = Vec::new();
    for line in acl_lines(&text) {
        let f: Vec<&str> = line.split(':').collect();
        let is_user = match f[0] {
            "user" | "u" => true,
            "group" | "g" => false,
            _ => continue,
        };
        let numeric = |s: Option<&&str>| s.is_some_and(|s| s.parse::<u32>().is_ok());
        if f.len() >= 3 && !f[1].is_empty() && !numeric(f.get(1)) && !numeric(f.get(3)) {
            out.push((is_user, f[1].to_string()));
        }
    }
    out
}

fn parse_entries(text: &[u8], lookup: Lookup<'_>) -> Result<Vec<(u16, u16, u32)>, AclError> {
    let text = String::from_utf8_lossy(text);
    let mut out = Vec::new();
    for line in acl_lines(&text) {
        let f: Vec<&str> = line.split(':').collect();
        let bad = || AclError::Malformed(line.to_string());
        if f.len() < 3 || f.len() > 4 {
            return Err(bad());
        }
        let perm = parse_perm(f[2]).ok_or_else(bad)?;
        let (tag_obj, tag_named, is_user) = match f[0] {
            "user" | "u" => (USER_OBJ, USER, Some(true)),
            "group" | "g" => (GROUP_OBJ, GROUP, Some(false)),
            "mask" | "m" => (MASK, MASK, None),
            "other" | "o" => (OTHER, OTHER, None),
            _ => return Err(bad()),
        };
        let q = f[1];
        if q.is_empty() {
            out.push((tag_obj, perm, UNDEFINED_ID));
            continue;
        }
        let is_user = is_user.ok_or_else(bad)?;
        // star's format adds the numeric id as a fourth field
        let id = if let Some(n) = f.get(3).and_then(|s| s.parse::<u32>().ok()) {
            n
        } else if let Ok(n) = q.parse::<u32>() {
            n
        } else {
            lookup(is_user, q).ok_or_else(|| AclError::Unresolved {
                kind: if is_user { "user" } else { "group" },
                name: q.to_string(),
            })?
        };
        out.push((tag_named, perm, id));
    }
    Ok(out)
}

/// Converts ACL text to the kernel's binary xattr value. `lookup(is_user, name)`
/// resolves names. Returns `None` for an empty ACL, and for an access ACL that only
/// repeats the mode bits (`access_minimal_is_none`), which the kernel would drop anyway.
pub fn text_to_xattr(
    text: &[u8],
    lookup: Lookup<'_>,
    access_minimal_is_none: bool,
) -> Result<Option<Vec<u8>>, AclError> {
    let mut entries = parse_entries(text, lookup)?;
    if entries.is_empty() {
        return Ok(None);
    }
    let count = |t: u16| entries.iter().filter(|e| e.0 == t).count();
    if count(USER_OBJ) != 1 || count(GROUP_OBJ) != 1 || count(OTHER) != 1 {
        return Err(AclError::Incomplete);
    }
    let named = count(USER) + count(GROUP);
    if named == 0 && access_minimal_is_none {
        return Ok(None);
    }
    if named > 0 && count(MASK) == 0 {
        // like libacl's acl_calc_mask: the union of the group class
        let m = entries
            .iter()
            .filter(|e| matches!(e.0, USER | GROUP | GROUP_OBJ))
            .fold(0, |a, e| a | e.1);
        entries.push((MASK, m, UNDEFINED_ID));
    }
    entries.sort_by_key(|e| (e.0, e.2));
    entries.dedup_by_key(|e| (e.0, e.2));
    let mut v = Vec::with_capacity(4 + entries.len() * 8);
    v.extend_from_slice(&ACL_EA_VERSION.to_le_bytes());
    for (tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    Ok(Some(v))
}

/// The ids of the `wanted` names in passwd/group-format text (`name:x:id:...`), in one
/// pass over the text; the first line naming a user wins, as with `getpwnam`. Only
/// wanted names are kept, so memory follows the ACLs, not the (image-chosen) file.
pub fn ids_of(db: &[u8], wanted: &HashSet<&str>) -> HashMap<String, u32> {
    let mut out = HashMap::new();
    for line in db.split(|&b| b == b'\n') {
        let mut f = line.split(|&b| b == b':');
        let Some(name) = f.next().and_then(|n| std::str::from_utf8(n).ok()) else {
            continue;
        };
        if !wanted.contains(name) || out.contains_key(name) {
            continue;
        }
        let id = f
            .nth(1)
            .and_then(|i| std::str::from_utf8(i).ok()?.parse().ok());
        if let Some(id) = id {
            out.insert(name.to_string(), id);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_text_matches_kernel_binary() {
        // exactly what the kernel stored for `setfacl -m u:1234:rw,g:55:r` (read back
        // with getfattr), and what GNU tar wrote as text for it
        let text = b"user::rw-\nuser:1234:rw-\ngroup::r--\ngroup:55:r--\nmask::rw-\nother::r--\n";
        let expect: Vec<u8> = [
            2u32.to_le_bytes().to_vec(),
            [1u8, 0, 6, 0, 0xff, 0xff, 0xff, 0xff].to_vec(),
            [2u8, 0, 6, 0, 0xd2, 0x04, 0, 0].to_vec(),
            [4u8, 0, 4, 0, 0xff, 0xff, 0xff, 0xff].to_vec(),
            [8u8, 0, 4, 0, 55, 0, 0, 0].to_vec(),
            [0x10u8, 0, 6, 0, 0xff, 0xff, 0xff, 0xff].to_vec(),
            [0x20u8, 0, 4, 0, 0xff, 0xff, 0xff, 0xff].to_vec(),
        ]
        .concat();
        assert_eq!(
            text_to_xattr(text, &|_, _| None, true).unwrap().unwrap(),
            expect
        );
    }

    #[test]
    fn names_minimal_and_errors() {
        let text = b"user::rw-\nuser:daemon:r--\ngroup::r--\nmask::r--\nother::---\n";
        assert!(has_names(text));
        let e = text_to_xattr(text, &|_, _| None, true).unwrap_err();
        assert!(matches!(e, AclError::Unresolved { .. }));
        let passwd = b"root:x:0:0::/root:/bin/sh\ndaemon:x:1:1::/:/bin/false\n";
        assert_eq!(qualifier_names(text), vec![(true, "daemon".to_string())]);
        let users = ids_of(passwd, &HashSet::from(["daemon"]));
        let v = text_to_xattr(
            text,
            &|u, n| if u { users.get(n).copied() } else { None },
            true,
        )
        .unwrap()
        .unwrap();
        assert_eq!(&v[12..20], &[2u8, 0, 4, 0, 1, 0, 0, 0]);
        assert_eq!(
            text_to_xattr(b"user::rwx\ngroup::r-x\nother::r-x\n", &|_, _| None, true).unwrap(),
            None
        );
        assert!(
            text_to_xattr(b"user::rwx\ngroup::r-x\nother::r-x\n", &|_, _| None, false)
                .unwrap()
                .is_some()
        );
        assert_eq!(text_to_xattr(b"", &|_, _| None, false).unwrap(), None);
        assert!(text_to_xattr(b"user::rwz\n", &|_, _| None, true).is_err());
        assert!(text_to_xattr(b"user::rw-\n", &|_, _| None, true).is_err());
        // missing mask is computed
        let v = text_to_xattr(b"u::rw-,u:7:r-x,g::r--,o::---", &|_, _| None, true)
            .unwrap()
            .unwrap();
        assert_eq!(
            &v[v.len() - 16..v.len() - 8],
            &[0x10u8, 0, 5, 0, 0xff, 0xff, 0xff, 0xff]
        );
    }
}
