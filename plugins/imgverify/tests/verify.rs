//! imgverify in-process: an image directory signed with the harness's key
//! (as capimage and packimage leave it), then changed one way at a time.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use xcat_image::signature::{update_record, RecordUpdate, SigningKey};
use xcat_plugin::testing::Harness;

/// The manifest of `tree` as it is now, where capimage writes it.
fn write_manifest(tree: &Path, dir: &Path) {
    let mut tsv = Vec::new();
    xcat_image::scan_tree(tree)
        .unwrap()
        .write_tsv(&mut tsv)
        .unwrap();
    fs::write(dir.join("capimage-manifest.tsv"), tsv).unwrap();
}

async fn image(h: &Harness) -> PathBuf {
    let dir = h.settings().install_dir.join("netboot/rocky9/x86_64/cap");
    let tree = dir.join(".private/rootimg");
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc/hostname"), "n1").unwrap();
    fs::write(tree.join("etc/motd"), "hello").unwrap();
    symlink(".private/rootimg", dir.join("rootimg")).unwrap();
    write_manifest(&tree, &dir);
    fs::write(dir.join("rootimg.cpio.zst"), vec![5u8; 10_000]).unwrap();
    let key = SigningKey::load(&h.settings().image_key).unwrap();
    let update = RecordUpdate {
        fresh: true,
        add: &["capimage-manifest.tsv", "rootimg.cpio.zst"],
        ..Default::default()
    };
    update_record(&dir, &key, update).unwrap();
    let d = dir.display().to_string();
    h.db()
        .upsert(
            "linuximage",
            &[("imagename", "img1")],
            &[("rootimgdir", &d)],
        )
        .await
        .unwrap();
    tree
}

#[tokio::test]
async fn passes_untouched_and_names_each_change() {
    let h = Harness::new(plugin_imgverify::handlers()).await;
    let tree = image(&h).await;
    let dir = tree.parent().unwrap().parent().unwrap().to_path_buf();
    let o = h.run("imgverify", &["img1"]).await;
    let lines = o.ok().lines();
    assert!(
        lines[0].contains("the tree and 2 recorded file(s) match"),
        "{lines:?}"
    );

    fs::set_permissions(tree.join("etc/motd"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::remove_file(tree.join("etc/hostname")).unwrap();
    let mut packed = fs::read(dir.join("rootimg.cpio.zst")).unwrap();
    packed[77] ^= 1;
    fs::write(dir.join("rootimg.cpio.zst"), packed).unwrap();
    let o = h.run("imgverify", &["img1"]).await;
    let all = format!("{:?} {:?}", o.kinds(), o.result);
    for want in [
        "/etc/motd: mode changed: recorded 0644, now 0600",
        "/etc/hostname: removed",
        "rootimg.cpio.zst: content differs from the record",
        "difference(s) from the record signed by SHA256:",
    ] {
        assert!(all.contains(want), "{want}: {all}");
    }
    assert!(o.result.is_err());
}

#[tokio::test]
async fn a_changed_manifest_or_another_key_fails() {
    let h = Harness::new(plugin_imgverify::handlers()).await;
    let tree = image(&h).await;
    let dir = tree.parent().unwrap().parent().unwrap().to_path_buf();
    // the manifest edited to match a planted file: its record gives it away
    fs::write(tree.join("etc/planted"), "x").unwrap();
    write_manifest(&tree, &dir);
    let o = h.run("imgverify", &["img1"]).await;
    let all = format!("{:?} {:?}", o.kinds(), o.result);
    assert!(all.contains("capimage-manifest.tsv: "), "{all}");
    assert!(o.result.is_err());
    // another server's key
    fs::remove_file(&h.settings().image_key).unwrap();
    SigningKey::create(&h.settings().image_key).unwrap();
    let o = h.run("imgverify", &["img1"]).await;
    let all = format!("{:?} {:?}", o.kinds(), o.result);
    assert!(all.contains("signature does not verify"), "{all}");
    // no such image, no argument
    assert!(h.run("imgverify", &["nope"]).await.result.is_err());
    let e = h.run("imgverify", &[]).await.usage_err();
    assert!(e.starts_with("imgverify needs an image name"), "{e}");
}
