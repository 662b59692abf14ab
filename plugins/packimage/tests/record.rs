//! packimage in-process: the record `<packed file>.info` beside each archive (what
//! `sha256sum` and `stat` say of it, the RAM rule), the RAM line of the report and
//! the per-format entry in `osimage.description`, the admin's text kept. Needs
//! sha256sum, and mksquashfs for the squashfs step.

use std::path::Path;
use std::process::Command;

use xcat_image::pack::record::{self, PackRecord};
use xcat_image::pack::Format;
use xcat_plugin::testing::{Harness, Outcome};

const IMG: &str = "img1";
const KERNEL_BYTES: usize = 300_000;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

/// An image directory with a small tree: a kernel, some files, a sparse file.
fn image(dir: &Path) {
    let r = dir.join("rootimg");
    std::fs::create_dir_all(r.join("boot")).unwrap();
    std::fs::create_dir_all(r.join("etc")).unwrap();
    std::fs::write(r.join("boot/vmlinuz-1.0"), vec![7u8; KERNEL_BYTES]).unwrap();
    let text: String = (0..50_000).map(|i| format!("{i}\n")).collect();
    std::fs::write(r.join("etc/numbers"), text).unwrap();
    let f = std::fs::File::create(r.join("var-lastlog")).unwrap();
    f.set_len(512 << 20).unwrap();
}

async fn harness(dir: &Path, description: Option<&str>) -> Harness {
    let h = Harness::new(plugin_packimage::handlers()).await;
    let d = dir.display().to_string();
    h.db()
        .upsert(
            "linuximage",
            &[("imagename", IMG)],
            &[("rootimgdir", &d), ("kernelver", "1.0")],
        )
        .await
        .unwrap();
    if let Some(desc) = description {
        h.db()
            .upsert(
                "osimage",
                &[("imagename", IMG)],
                &[("description", desc), ("provmethod", "netboot")],
            )
            .await
            .unwrap();
    }
    h
}

async fn description(h: &Harness) -> Option<String> {
    let row = h.db().get_row("osimage", IMG).await.unwrap()?;
    row.get("description").cloned()
}

/// The record of `packed`, checked against the file itself and the RAM rule.
fn check_record(dir: &Path, packed: &str, format: Format, boot_bytes: u64) -> PackRecord {
    let text = std::fs::read_to_string(dir.join(format!("{packed}.info"))).unwrap();
    let rec = PackRecord::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
    let path = dir.join(packed);
    assert_eq!(rec.format, format);
    assert_eq!(rec.size, std::fs::metadata(&path).unwrap().len());
    let sum = Command::new("sha256sum").arg(&path).output().unwrap();
    let sum = String::from_utf8(sum.stdout).unwrap();
    assert_eq!(sum.split_whitespace().next(), Some(rec.sha256.as_str()));
    // The 512 MiB sparse file costs nothing in a tmpfs: the tree is small.
    assert!(rec.tree_bytes < 2 << 20, "{rec:?}");
    assert!(rec.tree_bytes > 300_000, "{rec:?}");
    let want = record::ram_need(format, rec.tree_bytes, rec.size, boot_bytes);
    assert_eq!(rec.ram_mib, want, "{rec:?}");
    rec
}

fn ram_line(o: &Outcome) -> String {
    o.lines()
        .into_iter()
        .find(|l| l.contains("a node needs"))
        .unwrap_or_else(|| panic!("no RAM line in {:?}", o.kinds()))
}

#[tokio::test]
async fn records_beside_each_archive_and_in_the_description() {
    if !have("sha256sum") {
        eprintln!("skipped: sha256sum missing");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("img");
    image(&dir);
    let h = harness(&dir, Some("Compute nodes, lab 2")).await;

    // tar: the initrd is not built yet, 64 MiB stands in for it.
    let o = h.run("packimage", &["-m", "tar", "-c", "zstd", IMG]).await;
    o.ok();
    let boot = KERNEL_BYTES as u64 + record::INITRD_ASSUMED_BYTES;
    let tar = check_record(&dir, "rootimg.tar.zst", Format::Tar, boot);
    let line = ram_line(&o);
    assert!(
        line.starts_with(&format!(
            "packimage: {IMG}: a node needs {} MiB of RAM to boot it as tar (tree ",
            tar.ram_mib
        )),
        "{line}"
    );
    assert!(
        line.contains("initrd 64.0 MiB assumed: initrd-stateless.gz is not built yet"),
        "{line}"
    );
    assert_eq!(
        description(&h).await.as_deref(),
        Some(format!("Compute nodes, lab 2 [ram tar={}MiB]", tar.ram_mib).as_str())
    );

    // cpio, with a built initrd of 2 MiB: the tar and its record go, the
    // description keeps tar's entry and gains cpio's.
    std::fs::write(dir.join("initrd-stateless.gz"), vec![0u8; 2 << 20]).unwrap();
    let o = h.run("packimage", &["-m", "cpio", "-c", "gzip", IMG]).await;
    o.ok();
    let boot = KERNEL_BYTES as u64 + (2 << 20);
    let cpio = check_record(&dir, "rootimg.cpio.gz", Format::Cpio, boot);
    assert!(!dir.join("rootimg.tar.zst").exists());
    assert!(!dir.join("rootimg.tar.zst.info").exists());
    assert!(
        ram_line(&o).contains(", initrd 2.0 MiB, "),
        "{}",
        ram_line(&o)
    );
    assert_eq!(
        description(&h).await.as_deref(),
        Some(
            format!(
                "Compute nodes, lab 2 [ram cpio={}MiB tar={}MiB]",
                cpio.ram_mib, tar.ram_mib
            )
            .as_str()
        )
    );

    // squashfs: the packed file held in RAM is what counts.
    if have("mksquashfs") {
        let o = h.run("packimage", &["-m", "squashfs", IMG]).await;
        o.ok();
        let sfs = check_record(&dir, "rootimg.sfs", Format::Squashfs, boot);
        assert_eq!(
            sfs.compression,
            xcat_image::pack::compress::Compression::None
        );
        assert!(ram_line(&o).contains("squashfs file held in RAM"));
        assert!(!dir.join("rootimg.cpio.gz.info").exists());
        let d = description(&h).await.unwrap();
        assert!(
            d.ends_with(&format!(
                "[ram cpio={}MiB tar={}MiB squashfs={}MiB]",
                cpio.ram_mib, tar.ram_mib, sfs.ram_mib
            )),
            "{d}"
        );
    }
    // No temporary file is left.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with(".rootimg.pack-")),
        "{names:?}"
    );
}

#[tokio::test]
async fn without_an_osimage_row_the_record_is_still_written() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("img");
    image(&dir);
    let h = harness(&dir, None).await;
    let o = h.run("packimage", &["-m", "tar", IMG]).await;
    o.ok();
    assert!(dir.join("rootimg.tar.gz.info").is_file());
    assert!(
        o.lines()
            .iter()
            .any(|l| l.contains("no osimage row, so the RAM need is not recorded")),
        "{:?}",
        o.lines()
    );
    assert_eq!(description(&h).await, None);
}
