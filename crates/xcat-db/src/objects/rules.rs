//! Rules on attribute values that hold wherever the value is written or
//! used (xCAT checks them in `mkdef`/`chdef` and again when it boots).

use super::ObjType;
use crate::Attrs;

/// The extra mount options of a statelite NFS root (`osimage.nfsrootopts`),
/// without `ro` (always added): a comma-separated list without whitespace
/// or empty items, and never `rw` or `defaults` (the root is read-only).
pub fn nfsroot_options(value: &str) -> Result<Vec<&str>, String> {
    let mut opts = Vec::new();
    for o in value.split(',') {
        if o.is_empty() || o.contains(char::is_whitespace) {
            return Err(
                "nfsrootopts must be a comma-separated list without whitespace or empty options"
                    .into(),
            );
        }
        let name = o.split('=').next().unwrap_or_default().to_ascii_lowercase();
        if name == "rw" || name == "defaults" {
            return Err(format!(
                "nfsrootopts cannot contain '{name}'; statelite NFS roots are always read-only"
            ));
        }
        if !o.eq_ignore_ascii_case("ro") {
            opts.push(o);
        }
    }
    Ok(opts)
}

/// The value rules of the attributes `attrs` sets on an object of type `t`
/// (an empty value clears and is always allowed).
pub fn check_values(t: &ObjType, attrs: &Attrs) -> Result<(), String> {
    match attrs.get("nfsrootopts") {
        Some(v) if t.name == "osimage" && !v.is_empty() => nfsroot_options(v).map(|_| ()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nfs_root_options_stay_read_only() {
        assert_eq!(
            nfsroot_options("vers=4.1,ro,noac").unwrap(),
            ["vers=4.1", "noac"]
        );
        for (bad, why) in [
            ("rw", "cannot contain 'rw'"),
            ("noac,RW", "cannot contain 'rw'"),
            ("defaults", "cannot contain 'defaults'"),
            ("noac,,vers=3", "without whitespace or empty"),
            ("noac, vers=3", "without whitespace or empty"),
        ] {
            let e = nfsroot_options(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let osimage = super::super::obj_type("osimage").unwrap();
        let attrs: Attrs = [("nfsrootopts".to_string(), "rw".to_string())].into();
        assert!(check_values(osimage, &attrs).is_err());
        let node = super::super::obj_type("node").unwrap();
        assert!(check_values(node, &attrs).is_ok());
    }
}
