//! ACLs the extractor sets only at the end of the archive, once every entry exists:
//!
//! * default ACLs of directories: set earlier, every file extracted inside would
//!   inherit entries it never had on the node (the kernel derives a new file's ACL
//!   from its directory's default ACL);
//! * ACLs whose text names users or groups: the names are resolved against the
//!   image's own `etc/passwd` and `etc/group`, which may come anywhere in the archive.
//!
//! Each is remembered with the identity (device, inode, file type) of the inode it
//! was extracted as, and lands on that inode only: the path is held with `O_PATH`
//! beneath the root (never followed, never opened, so a device node put there
//! meanwhile is not driven) and its identity compared before the xattr is set
//! through the held descriptor.

use crate::acl;
use crate::beneath::Root;
use crate::util::display_path;
use std::collections::{HashMap, HashSet};

/// Most bytes read of the image's `etc/passwd` or `etc/group`.
const ID_DB_MAX: u64 = 16 << 20;

/// An ACL's value: final, or text that names users or groups.
pub(crate) enum AclValue {
    Binary(Vec<u8>),
    Named(Vec<u8>),
}

/// One ACL to set at the end.
pub(crate) struct DeferredAcl {
    pub path: Vec<u8>,
    pub name: &'static str,
    pub value: AclValue,
    /// (device, inode, file type) of the inode extracted at `path`.
    pub identity: (u64, u64, u32),
}

/// What the end pass did with one deferred ACL.
pub(crate) enum Outcome {
    /// Set; for a named ACL, with this resolved value (the manifest records it).
    Set(Option<Vec<u8>>),
    /// Not set, with the reason.
    Failed(String),
}

/// Sets every deferred ACL, in archive order; `done(acl, outcome)` reports each.
pub(crate) fn apply_all(
    root: &Root,
    list: Vec<DeferredAcl>,
    mut done: impl FnMut(&DeferredAcl, Outcome),
) {
    let ids = IdMaps::load(root, &list);
    for d in &list {
        let outcome = match apply_one(root, d, &ids) {
            Ok(v) => Outcome::Set(v),
            Err(e) => Outcome::Failed(e),
        };
        done(d, outcome);
    }
}

fn apply_one(root: &Root, d: &DeferredAcl, ids: &IdMaps) -> Result<Option<Vec<u8>>, String> {
    let (value, resolved) = match &d.value {
        AclValue::Binary(v) => (v.clone(), false),
        AclValue::Named(text) => {
            let lookup = |is_user: bool, n: &str| ids.lookup(is_user, n);
            match acl::text_to_xattr(text, &lookup, d.name.ends_with("access"))
                .map_err(|e| e.to_string())?
            {
                Some(v) => (v, true),
                None => return Ok(None),
            }
        }
    };
    let held = root.hold(&d.path).map_err(|e| e.to_string())?;
    if held.identity() != d.identity {
        return Err(format!(
            "{} is no longer the entry extracted there",
            display_path(&d.path)
        ));
    }
    held.set_xattr(d.name.as_bytes(), &value)
        .map_err(|e| e.to_string())?;
    Ok(resolved.then_some(value))
}

/// The ids of the names the deferred ACLs use, from the image's passwd and group.
struct IdMaps {
    users: HashMap<String, u32>,
    groups: HashMap<String, u32>,
}

impl IdMaps {
    fn load(root: &Root, list: &[DeferredAcl]) -> IdMaps {
        // a missing or unreadable (non-regular, oversized) file resolves nothing: the
        // ACLs naming its users are then reported one by one
        let read = |db: &[u8]| root.read_file(db, ID_DB_MAX).unwrap_or_default();
        IdMaps::from_dbs(read, list)
    }

    /// The maps from passwd and group texts, which `read` is asked for only when an
    /// ACL names a user (group).
    fn from_dbs(read: impl Fn(&[u8]) -> Vec<u8>, list: &[DeferredAcl]) -> IdMaps {
        let mut users: Vec<String> = Vec::new();
        let mut groups: Vec<String> = Vec::new();
        for d in list {
            if let AclValue::Named(text) = &d.value {
                for (is_user, n) in acl::qualifier_names(text) {
                    if is_user { &mut users } else { &mut groups }.push(n);
                }
            }
        }
        let from = |db: &[u8], names: &[String]| {
            if names.is_empty() {
                return HashMap::new();
            }
            let text = read(db);
            let wanted: HashSet<&str> = names.iter().map(String::as_str).collect();
            acl::ids_of(&text, &wanted)
        };
        IdMaps {
            users: from(b"etc/passwd", &users),
            groups: from(b"etc/group", &groups),
        }
    }

    fn lookup(&self, is_user: bool, name: &str) -> Option<u32> {
        if is_user { &self.users } else { &self.groups }
            .get(name)
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 100,000 ACLs naming as many users of a 100,000-line passwd: one pass over the
    /// file and one map look-up per name (a scan of the file per name would take
    /// minutes).
    #[test]
    fn names_resolve_in_one_pass_over_passwd() {
        let n = 100_000;
        let passwd: String = (0..n)
            .map(|i| format!("u{i}:x:{i}:{i}::/:/bin/sh\n"))
            .collect();
        let list: Vec<DeferredAcl> = (0..n)
            .map(|i| DeferredAcl {
                path: format!("f{i}").into_bytes(),
                name: "system.posix_acl_access",
                value: AclValue::Named(format!("u::rw-,u:u{i}:r--,g::r--,o::---").into_bytes()),
                identity: (0, 0, 0),
            })
            .collect();
        let t = std::time::Instant::now();
        let ids = IdMaps::from_dbs(
            |db| match db {
                b"etc/passwd" => passwd.clone().into_bytes(),
                _ => panic!("no ACL names a group"),
            },
            &list,
        );
        for i in (0..n).step_by(7) {
            assert_eq!(ids.lookup(true, &format!("u{i}")), Some(i as u32));
        }
        assert_eq!(ids.lookup(true, "nobody"), None);
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            t.elapsed()
        );
    }
}
