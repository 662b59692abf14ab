//! The package list of an rpm-based image, read from a real rpm SQLite
//! database: packages built by `rpmbuild` and recorded by `rpm` itself into
//! a tree's database, then listed by [`packages::list`] and compared with
//! what `rpm -qa` says of the same database.

use std::path::Path;
use std::process::Command;

use xcat_image::beneath::Root;
use xcat_image::packages;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Build an empty package with `rpmbuild` in `top`; returns its file.
fn build(top: &Path, name: &str, epoch: Option<u32>, arch: &str) -> std::path::PathBuf {
    let spec = top.join(format!("{name}.spec"));
    let epoch = epoch.map(|e| format!("Epoch: {e}\n")).unwrap_or_default();
    std::fs::write(
        &spec,
        format!(
            "Name: {name}\nVersion: 1.2.3\nRelease: 4.el9\n{epoch}Summary: sample\nLicense: MIT\n\
             BuildArch: {arch}\n%description\nsample\n%files\n"
        ),
    )
    .unwrap();
    run(Command::new("rpmbuild")
        .arg("-bb")
        .arg("--quiet")
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .arg(&spec));
    top.join(format!("RPMS/{arch}/{name}-1.2.3-4.el9.{arch}.rpm"))
}

/// `rpm` on the database at `dbpath` beneath `root`.
fn rpm(root: &Path, dbpath: &str) -> Command {
    let mut c = Command::new("rpm");
    c.arg("--root").arg(root).args(["--dbpath", dbpath]);
    c
}

#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn packages_of_an_rpm_database_are_those_rpm_lists() {
    let top = tempfile::tempdir().unwrap();
    let pkgs = [
        build(top.path(), "xtb-epoch", Some(2), "x86_64"),
        build(top.path(), "xtb-plain", None, "noarch"),
    ];
    for dbpath in ["/var/lib/rpm", "/usr/lib/sysimage/rpm"] {
        let tree = tempfile::tempdir().unwrap();
        run(rpm(tree.path(), dbpath).arg("--initdb"));
        run(rpm(tree.path(), dbpath)
            .args(["-i", "--justdb", "--nodeps", "--noscripts", "--ignorearch"])
            .args(&pkgs));
        let said = run(rpm(tree.path(), dbpath).args([
            "-qa",
            "--qf",
            "%{NAME} %{EPOCH}:%{VERSION}-%{RELEASE} %{ARCH}\\n",
        ]));
        let mut want: Vec<String> = said.lines().map(|l| l.replace(" (none):", " ")).collect();
        want.sort();
        let r = packages::list(&Root::open(tree.path()).unwrap());
        let got: Vec<String> = r
            .packages
            .iter()
            .map(|p| format!("{} {} {}", p.name, p.version, p.arch))
            .collect();
        assert_eq!(r.manager, "rpm", "{dbpath}");
        assert_eq!(got, want, "{dbpath}: {r:?}");
        assert_eq!(
            got,
            [
                "xtb-epoch 2:1.2.3-4.el9 x86_64",
                "xtb-plain 1.2.3-4.el9 noarch"
            ]
        );
        assert_eq!((r.count, r.note), (2, None), "{dbpath}");
    }
}

/// A node's database with a row that is not a header and one that is an
/// oversized blob: the real packages are listed, the rest counted in a note.
#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn a_tampered_rpm_database_lists_what_is_valid() {
    let top = tempfile::tempdir().unwrap();
    let pkg = build(top.path(), "xtb-real", None, "noarch");
    let tree = tempfile::tempdir().unwrap();
    run(rpm(tree.path(), "/var/lib/rpm").arg("--initdb"));
    run(rpm(tree.path(), "/var/lib/rpm")
        .args(["-i", "--justdb", "--nodeps", "--noscripts"])
        .arg(&pkg));
    let db = tree.path().join("var/lib/rpm/rpmdb.sqlite");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "INSERT INTO Packages (blob) VALUES (x'ffffffff00000010'), (zeroblob(70000000))",
        [],
    )
    .unwrap();
    drop(conn);
    let r = packages::list(&Root::open(tree.path()).unwrap());
    let names: Vec<&str> = r.packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["xtb-real"]);
    assert!(
        r.note
            .as_deref()
            .unwrap_or_default()
            .starts_with("2 entries"),
        "{r:?}"
    );
}
