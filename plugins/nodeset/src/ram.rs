//! Does a node have the RAM to boot its image? packimage records what booting a
//! packed file takes (`<packed file>.info`, `ram_mib`) and, per format, in
//! `osimage.description` (`[ram cpio=900MiB ...]`); `hwinv.memory` says what the
//! node has. A node with less is still set up (its initrd refuses with the same
//! figures), but the admin hears of it now, with a format that would fit.

use std::collections::BTreeMap;
use std::path::Path;

use xcat_image::pack::record::{self, PackRecord};
use xcat_image::pack::Format;

/// What booting an image takes, per format, in MiB.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RamNeeds {
    /// The packed file nodes are given: its format and need (None without a
    /// readable record: nothing is checked).
    pub chosen: Option<(Format, u64)>,
    /// The other formats: the records of other packed files present, else the
    /// figures packimage kept in `osimage.description`.
    pub others: BTreeMap<Format, u64>,
}

/// The record beside `dir/name`, if there is a readable one.
fn read_record(dir: &Path, name: &str) -> Option<PackRecord> {
    let text = std::fs::read_to_string(dir.join(record::info_name(name))).ok()?;
    PackRecord::parse(&text).ok()
}

/// The needs of an image whose nodes boot `dir/chosen`; `leftovers` are the other
/// packed files present, `description` is `osimage.description`.
pub fn needs(dir: &Path, chosen: &str, leftovers: &[String], description: &str) -> RamNeeds {
    let chosen = read_record(dir, chosen).map(|r| (r.format, r.ram_mib));
    let mut others = record::description_ram(description);
    for r in leftovers.iter().filter_map(|n| read_record(dir, n)) {
        others.insert(r.format, r.ram_mib);
    }
    if let Some((f, _)) = chosen {
        others.remove(&f);
    }
    RamNeeds { chosen, others }
}

/// `hwinv.memory` in MiB. xCAT's discovery stores MemTotal as `<n>MB`; admins
/// write `16GB`, `16G`, `16384` (MiB, the column's unit) and the like. Units are
/// binary whatever their spelling (xCAT's `MB` is MemTotal's KiB / 1024), case and
/// a space before the unit do not matter, and decimals are taken (`15.5GB`).
pub fn parse_memory(value: &str) -> Option<u64> {
    let v = value.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let num: f64 = num.parse().ok()?;
    let per_mib = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "m" | "mb" | "mib" => 1.0,
        "g" | "gb" | "gib" => 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0,
        "k" | "kb" | "kib" => 1.0 / 1024.0,
        "b" => 1.0 / (1024.0 * 1024.0),
        _ => return None,
    };
    let mib = num * per_mib;
    (mib.is_finite() && mib >= 1.0).then_some(mib as u64)
}

/// The node's warning, if it has less RAM than its image needs (or a
/// `hwinv.memory` that is not a size). `memory` is the raw `hwinv.memory`.
pub fn warning(image: &str, needs: &RamNeeds, memory: &str) -> Option<String> {
    let (format, need) = needs.chosen?;
    let Some(has) = parse_memory(memory) else {
        return Some(format!(
            "hwinv.memory \"{memory}\" is not a memory size (such as 4096MB or 16GB): \
             not checked against the {need} MiB image {image} needs"
        ));
    };
    if has >= need {
        return None;
    }
    let mut text = format!(
        "image {image} needs {need} MiB of RAM to boot as {}, the node has {has} MiB",
        format.name()
    );
    // the smallest other format that fits
    if let Some((f, n)) = needs
        .others
        .iter()
        .filter(|(_, n)| **n <= has)
        .min_by_key(|(_, n)| **n)
    {
        text.push_str(&format!(
            " ({} needs {n} MiB: packimage -m {})",
            f.name(),
            f.name()
        ));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_values() {
        assert_eq!(parse_memory("4096MB"), Some(4096));
        assert_eq!(parse_memory("32097MB"), Some(32097));
        assert_eq!(parse_memory(" 4096 MB "), Some(4096));
        assert_eq!(parse_memory("4096"), Some(4096));
        assert_eq!(parse_memory("4096M"), Some(4096));
        assert_eq!(parse_memory("4096MiB"), Some(4096));
        assert_eq!(parse_memory("16GB"), Some(16384));
        assert_eq!(parse_memory("16g"), Some(16384));
        assert_eq!(parse_memory("15.5GiB"), Some(15872));
        assert_eq!(parse_memory("1TB"), Some(1 << 20));
        assert_eq!(parse_memory("8388608kB"), Some(8192));
        assert_eq!(parse_memory("17179869184B"), Some(16384));
        for bad in ["", "MB", "lots", "16 PB", "-4GB", "0", "1.2.3G", "16GBx"] {
            assert_eq!(parse_memory(bad), None, "{bad}");
        }
    }

    fn given(chosen: Option<(Format, u64)>, others: &[(Format, u64)]) -> RamNeeds {
        RamNeeds {
            chosen,
            others: others.iter().copied().collect(),
        }
    }

    #[test]
    fn warnings_and_the_format_that_fits() {
        let n = given(
            Some((Format::Cpio, 5000)),
            &[(Format::Tar, 4800), (Format::Squashfs, 1200)],
        );
        assert_eq!(warning("img", &n, "8GB"), None);
        assert_eq!(warning("img", &n, "5000MB"), None, "exactly enough");
        assert_eq!(
            warning("img", &n, "4096MB").as_deref(),
            Some(
                "image img needs 5000 MiB of RAM to boot as cpio, the node has 4096 MiB \
                 (squashfs needs 1200 MiB: packimage -m squashfs)"
            )
        );
        // Nothing else fits: no suggestion.
        assert_eq!(
            warning("img", &n, "1024").as_deref(),
            Some("image img needs 5000 MiB of RAM to boot as cpio, the node has 1024 MiB")
        );
        // Both fit: the smaller one.
        let n = given(
            Some((Format::Squashfs, 9000)),
            &[(Format::Tar, 4800), (Format::Cpio, 4900)],
        );
        assert!(warning("img", &n, "6GB")
            .unwrap()
            .ends_with("(tar needs 4800 MiB: packimage -m tar)"));
        // No record of the chosen file: nothing to say.
        assert_eq!(
            warning("img", &given(None, &[(Format::Tar, 1)]), "1MB"),
            None
        );
        let w = warning("img", &given(Some((Format::Tar, 10)), &[]), "big").unwrap();
        assert!(
            w.starts_with("hwinv.memory \"big\" is not a memory size"),
            "{w}"
        );
    }

    #[test]
    fn needs_from_records_and_description() {
        let t = tempfile::tempdir().unwrap();
        let rec = |format: Format, ram_mib: u64| PackRecord {
            format,
            compression: xcat_image::pack::compress::Compression::Gzip,
            size: 1,
            sha256: "0".repeat(64),
            tree_bytes: 1,
            ram_mib,
        };
        let put = |name: &str, r: PackRecord| {
            std::fs::write(t.path().join(format!("{name}.info")), r.render()).unwrap()
        };
        put("rootimg.cpio.gz", rec(Format::Cpio, 3000));
        put("rootimg.sfs", rec(Format::Squashfs, 900));
        let desc = "Lab [ram cpio=2000MiB tar=2900MiB squashfs=1000MiB]";
        let n = needs(t.path(), "rootimg.cpio.gz", &["rootimg.sfs".into()], desc);
        assert_eq!(n.chosen, Some((Format::Cpio, 3000)), "the record wins");
        assert_eq!(
            n.others,
            BTreeMap::from([(Format::Tar, 2900), (Format::Squashfs, 900)])
        );
        // Without a record for the chosen file nothing is known of it.
        let n = needs(t.path(), "rootimg.tar.gz", &[], desc);
        assert_eq!(n.chosen, None);
        std::fs::write(t.path().join("rootimg.tar.gz.info"), "format=tar\n").unwrap();
        assert_eq!(needs(t.path(), "rootimg.tar.gz", &[], "").chosen, None);
    }
}
