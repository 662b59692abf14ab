use super::*;
use std::os::unix::fs::symlink;
use std::sync::{Arc, Mutex};

fn collect() -> (Say, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l = lines.clone();
    (
        Arc::new(move |s: &str| l.lock().unwrap().push(s.to_string())),
        lines,
    )
}

fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn entries_in_xcats_words_parents_first() {
    let (say, said) = collect();
    let e = entries(
        &lines(&[
            "tmpfs,rw      /etc/ssh/x",
            "link          /etc/ssh/",
            "persistent    /root/keep/",
            "bogus         /a",
            "tmpfs         /../etc",
            "/var/",
        ]),
        &say,
    );
    let got: Vec<(&str, Kind)> = e.iter().map(|e| (e.rel.as_str(), e.kind)).collect();
    assert_eq!(
        got,
        [
            ("etc/ssh/", Kind::Link),
            ("etc/ssh/x", Kind::Link),
            ("root/keep/", Kind::Persistent),
            ("var/", Kind::Tmpfs),
        ]
    );
    assert_eq!(said.lock().unwrap().len(), 2, "{:?}", said.lock().unwrap());
    let t = trees(
        &lines(&[
            "10.99.60.1:/lite :vers=4.1,port=2050",
            "10.99.60.1:/b",
            "mn:/x",
        ]),
        &say,
    );
    assert_eq!(t.len(), 2);
    assert_eq!(
        (t[0].share.to_string(), t[0].options.as_str()),
        ("10.99.60.1:/lite".into(), "vers=4.1,port=2050")
    );
    assert_eq!(t[1].options, "");
}

/// A root with liteimg's link farm for `etc/linked`, and a litetree.
fn fixture(t: &Path) -> Layout {
    let root = t.join("root");
    fs::create_dir_all(root.join(".default/etc")).unwrap();
    fs::create_dir_all(root.join(".statelite/tmpfs/etc")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join(".default/etc/linked"), "original").unwrap();
    symlink("../../.statelite/tmpfs/etc/linked", root.join("etc/linked")).unwrap();
    fs::write(root.join("etc/plain"), "image").unwrap();
    fs::create_dir_all(root.join("opt/site")).unwrap();
    fs::create_dir_all(root.join("keep")).unwrap();
    fs::write(root.join("keep/f"), "first").unwrap();
    let tree = t.join("tree");
    fs::create_dir_all(tree.join("opt/site")).unwrap();
    fs::write(tree.join("opt/site/motd"), "from the tree").unwrap();
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc/linked"), "tree's").unwrap();
    Layout {
        root,
        trees: vec![tree],
        persistent: true,
        local: false,
    }
}

fn entry(options: &str, rel: &str) -> Entry {
    Entry {
        options: options.into(),
        kind: Kind::parse(options).unwrap(),
        rel: rel.into(),
    }
}

fn umount_all(under: &Path) {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .filter(|p| p.starts_with(under.to_str().unwrap()))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = mount::unmount(Path::new(p));
    }
}

#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn every_option_lands_where_the_booted_node_looks() {
    let t = tempfile::tempdir().unwrap();
    let mut l = fixture(t.path());
    // the tmpfs the real step mounts on /.statelite, here a plain directory
    fs::remove_dir_all(l.root.join(".statelite")).unwrap();
    fs::create_dir_all(l.root.join(".statelite/persistent")).unwrap();
    let r = &l.root.clone();

    apply(&l, &entry("tmpfs,rw", "etc/linked")).unwrap();
    assert_eq!(
        fs::read_to_string(r.join(".statelite/tmpfs/etc/linked")).unwrap(),
        "tree's",
        "a litetree copy comes before .default"
    );

    apply(&l, &entry("tmpfs", "etc/plain")).unwrap();
    fs::write(r.join("etc/plain"), "changed").unwrap();
    assert_eq!(
        fs::read_to_string(r.join(".statelite/tmpfs/etc/plain")).unwrap(),
        "changed",
        "writes go to the tmpfs copy"
    );

    apply(&l, &entry("persistent", "keep/")).unwrap();
    fs::write(r.join("keep/f"), "second").unwrap();
    assert_eq!(
        fs::read_to_string(r.join(".statelite/persistent/keep/f")).unwrap(),
        "second"
    );
    umount_all(r);
    // the next boot: the persistent copy is kept, not refilled from the image
    assert_eq!(fs::read_to_string(r.join("keep/f")).unwrap(), "first");
    let said = apply(&l, &entry("persistent", "keep/")).unwrap();
    assert!(said.contains("kept"), "{said}");
    assert_eq!(fs::read_to_string(r.join("keep/f")).unwrap(), "second");

    apply(&l, &entry("ro", "opt/site/")).unwrap();
    assert_eq!(
        fs::read_to_string(r.join("opt/site/motd")).unwrap(),
        "from the tree"
    );
    let e = fs::write(r.join("opt/site/motd"), "no").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");

    apply(&l, &entry("link,ro", "etc/linked")).unwrap();
    assert_eq!(
        fs::read_link(r.join(".statelite/tmpfs/etc/linked")).unwrap(),
        Path::new("/.statelite/mnt/0/etc/linked")
    );

    assert!(apply(&l, &entry("ro", "etc/absent"))
        .unwrap_err()
        .to_string()
        .contains("no litetree"));

    l.local = true;
    fs::create_dir_all(r.join(".statelite/localdisk")).unwrap();
    fs::create_dir_all(r.join("scratch")).unwrap();
    fs::write(r.join("scratch/a"), "image").unwrap();
    let said = apply(&l, &entry("localdisk", "scratch/")).unwrap();
    assert!(said.contains("local disk (first boot"), "{said}");
    fs::write(r.join("scratch/a"), "local").unwrap();
    assert_eq!(
        fs::read_to_string(r.join(".statelite/localdisk/scratch/a")).unwrap(),
        "local"
    );
    l.local = false;
    fs::write(r.join("etc/ram-only"), "image").unwrap();
    let said = apply(&l, &entry("localdisk", "etc/ram-only")).unwrap();
    assert!(
        said.contains("no file system labelled xcat-local"),
        "{said}"
    );

    l.persistent = false;
    let said = apply(&l, &entry("persistent", "etc/plain")).unwrap();
    assert!(said.contains("no persistent mount"), "{said}");
    umount_all(&l.root);
}
