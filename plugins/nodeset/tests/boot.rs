//! nodeset in-process against real tables (SQLite, and PostgreSQL in its
//! tier) and a temporary TFTP root: the files it writes, byte for byte in
//! xCAT's layout, its table effects, the states, partial failure, the
//! choice of the packed file and the rename property.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime};

use common::{names, read, record, records, Cluster, IMG};

const STATE: &str = "netboot rocky9.4-x86_64-compute";

fn xnba_bios(node: &str, packed: &str, extra: &str) -> String {
    format!(
        "#!gpxe\n#{STATE}\n\
         imgfetch -n kernel http://${{next-server}}/tftpboot/xcat/osimage/{IMG}/kernel\n\
         imgload kernel\n\
         imgargs kernel imgurl=http://${{next-server}}:80//install/netboot/rocky9.4/x86_64/compute/{packed} \
         XCAT=${{next-server}}:3001 NODE={node} FC=0 XCATHTTPPORT=80  selinux=0  BOOTIF=01-${{netX/mac:hexhyp}}{extra}\n\
         imgfetch -n initrd http://${{next-server}}/tftpboot/xcat/osimage/{IMG}/initrd-stateless.gz\n\
         imgexec kernel\n"
    )
}

async fn xnba_files_and_tables(c: Cluster) {
    c.node("cn1", "xnba", Some("10.99.0.11"), Some("AA:BB:CC:DD:EE:11"))
        .await;
    let o = c.nodeset(&["cn1"], &[&format!("osimage={IMG}")]).await;
    o.ok();
    assert_eq!(record(&o, "cn1").data, [STATE]);
    assert!(
        o.lines()
            .iter()
            .any(|l| l == &format!("{IMG}: nodes boot rootimg.cpio.gz")),
        "{:?}",
        o.lines()
    );
    assert_eq!(
        read(&c.xnba("cn1")),
        xnba_bios("cn1", "rootimg.cpio.gz", "")
    );
    assert_eq!(
        read(&c.xnba("cn1.uefi")),
        xnba_bios("cn1", "rootimg.cpio.gz", " initrd=initrd")
    );
    // Kernel and initrd copied beside the other images' copies.
    let copy = c.tftp().join("xcat/osimage").join(IMG);
    assert_eq!(names(&copy), ["initrd-stateless.gz", "kernel"]);
    assert_eq!(fs::read(copy.join("kernel")).unwrap(), common::efi_kernel());
    // Only the final names: no temporary file is left behind.
    assert_eq!(
        names(&c.tftp().join("xcat/xnba/nodes")),
        ["cn1", "cn1.uefi"]
    );
    for (col, want) in [
        ("provmethod", IMG),
        ("os", "rocky9.4"),
        ("arch", "x86_64"),
        ("profile", "compute"),
    ] {
        assert_eq!(
            c.attr("nodetype", "cn1", col).await.as_deref(),
            Some(want),
            "nodetype.{col}"
        );
    }
    assert_eq!(
        c.attr("chain", "cn1", "currstate").await.as_deref(),
        Some(STATE)
    );
    let s = c.nodeset(&["cn1"], &["stat"]).await;
    assert_eq!(s.ok().lines(), [format!("cn1: {STATE}")]);
}

async fn kcmdline_options(c: Cluster) {
    c.node("cn1", "xnba", Some("10.99.0.11"), Some("aa:bb:cc:dd:ee:11"))
        .await;
    c.db()
        .upsert(
            "noderes",
            &[("node", "cn1")],
            &[("xcatmaster", "10.99.0.1"), ("installnic", "eth0")],
        )
        .await
        .unwrap();
    c.db()
        .upsert(
            "nodehm",
            &[("node", "cn1")],
            &[
                ("serialport", "0"),
                ("serialspeed", "115200"),
                ("serialflow", "hard"),
            ],
        )
        .await
        .unwrap();
    c.db()
        .upsert(
            "bootparams",
            &[("node", "compute")],
            &[("addkcmdline", "quiet R::persist")],
        )
        .await
        .unwrap();
    c.db()
        .upsert(
            "linuximage",
            &[("imagename", IMG)],
            &[("addkcmdline", "rootlimit=4G")],
        )
        .await
        .unwrap();
    c.site("httpport", "8080").await;
    c.site("xcatiport", "3003").await;
    let o = c.nodeset(&["cn1"], &[&format!("osimage={IMG}")]).await;
    o.ok();
    let script = read(&c.xnba("cn1"));
    let args = script.lines().find(|l| l.starts_with("imgargs")).unwrap();
    assert_eq!(
        args,
        "imgargs kernel imgurl=http://10.99.0.1:8080//install/netboot/rocky9.4/x86_64/compute/rootimg.cpio.gz \
         XCAT=10.99.0.1:3001 NODE=cn1 FC=0 XCATHTTPPORT=8080 XCATIPORT=3003 netdev=eth0  console=tty0 console=ttyS0,115200n8r \
         selinux=0  quiet rootlimit=4G  BOOTIF=01-${netX/mac:hexhyp}"
    );
    assert!(script.contains("imgfetch -n kernel http://${next-server}:8080/tftpboot/xcat/osimage/"));
}

async fn grub2_files(c: Cluster) {
    c.node("g1", "grub2", Some("10.99.0.12"), Some("aa:bb:cc:dd:ee:12"))
        .await;
    c.db()
        .upsert("noderes", &[("node", "g1")], &[("xcatmaster", "10.99.0.1")])
        .await
        .unwrap();
    let o = c.nodeset(&["g1"], &[&format!("osimage={IMG}")]).await;
    // No grub2 binary is installed: the node fails, its configuration is written.
    assert!(
        o.err()
            .starts_with("Failed to generate grub2 configurations for 1 of 1 node(s) on mn1"),
        "{}",
        o.err()
    );
    let e = &record(&o, "g1").errors[0];
    assert!(e.contains("grub2.x86_64\" does not exist"), "{e}");
    let want = format!(
        "#{STATE}\nset timeout=5\nset default=\"xCAT OS Deployment\"\nmenuentry \"xCAT OS Deployment\" {{\n    \
         insmod http\n    insmod tftp\n    set root=tftp,10.99.0.1\n    echo Loading Install kernel ...\n    \
         linuxefi /xcat/osimage/{IMG}/kernel imgurl=http://10.99.0.1:80//install/netboot/rocky9.4/x86_64/compute/rootimg.cpio.gz \
         XCAT=10.99.0.1:3001 NODE=g1 FC=0 XCATHTTPPORT=80  selinux=0  BOOTIF=$net_default_mac\n    \
         echo Loading initial ramdisk ...\n    initrdefi /xcat/osimage/{IMG}/initrd-stateless.gz\n}}"
    );
    assert_eq!(read(&c.grub2("g1")), want);
    let ino = |n: &str| fs::metadata(c.grub2(n)).unwrap().ino();
    assert_eq!(
        ino("grub.cfg-01-aa-bb-cc-dd-ee-12"),
        ino("g1"),
        "MAC name is a hard link"
    );
    assert_eq!(
        ino("grub.cfg-0A63000C"),
        ino("g1"),
        "HEXIP name is a hard link"
    );
    assert!(fs::symlink_metadata(c.grub2("grub2-g1")).is_err());
    // With the binary in place the node is done and points at it.
    fs::write(c.grub2("grub2.x86_64"), b"efi").unwrap();
    c.nodeset(&["g1"], &[&format!("osimage={IMG}")]).await.ok();
    assert_eq!(
        fs::read_link(c.grub2("grub2-g1")).unwrap().to_str(),
        Some("grub2.x86_64")
    );
    // boot: the file says so, the binary link goes (the firmware moves on).
    c.nodeset(&["g1"], &["boot"]).await.ok();
    assert_eq!(
        read(&c.grub2("grub.cfg-0A63000C")),
        "#boot\nset timeout=5\n"
    );
    assert!(fs::symlink_metadata(c.grub2("grub2-g1")).is_err());
    assert_eq!(
        c.nodeset(&["g1"], &["stat"]).await.ok().lines(),
        ["g1: boot"]
    );
    c.nodeset(&["g1"], &["offline"]).await.ok();
    assert_eq!(names(&c.tftp().join("boot/grub2")), ["grub2.x86_64"]);
}

async fn boot_offline_stat(c: Cluster) {
    c.node("cn1", "xnba", Some("10.99.0.11"), Some("aa:bb:cc:dd:ee:11"))
        .await;
    c.nodeset(&["cn1"], &[&format!("osimage={IMG}")]).await.ok();
    let o = c.nodeset(&["cn1"], &["boot"]).await;
    assert_eq!(o.ok().lines(), ["cn1: boot"]);
    assert_eq!(read(&c.xnba("cn1")), "#!gpxe\n#boot\nexit\n");
    assert_eq!(read(&c.xnba("cn1.uefi")), "#!gpxe\n#boot\nexit\n");
    assert_eq!(
        c.attr("chain", "cn1", "currstate").await.as_deref(),
        Some("boot")
    );
    // xCAT blanked provmethod here (its bug #1938); the image is kept.
    assert_eq!(
        c.attr("nodetype", "cn1", "provmethod").await.as_deref(),
        Some(IMG)
    );
    // So bare `osimage` boots it again.
    assert_eq!(
        c.nodeset(&["cn1"], &["osimage"])
            .await
            .ok()
            .lines()
            .last()
            .unwrap(),
        &format!("cn1: {STATE}")
    );
    let o = c.nodeset(&["cn1"], &["offline"]).await;
    assert_eq!(o.ok().lines(), ["cn1: offline"]);
    assert!(names(&c.tftp().join("xcat/xnba/nodes")).is_empty());
    assert_eq!(
        c.attr("chain", "cn1", "currstate").await.as_deref(),
        Some("offline")
    );
    assert_eq!(
        c.nodeset(&["cn1"], &["stat"]).await.ok().lines(),
        ["cn1: offline"]
    );
}

async fn partial_failure(c: Cluster) {
    c.node(
        "tz001",
        "xnba",
        Some("10.99.0.21"),
        Some("aa:bb:cc:dd:ee:21"),
    )
    .await;
    c.node("tz002", "xnba", Some("10.99.0.22"), None).await;
    c.node(
        "tz003",
        "xnba",
        Some("10.99.0.23"),
        Some("aa:bb:cc:dd:ee:23"),
    )
    .await;
    c.node(
        "tz004",
        "xnba",
        Some("10.99.0.24"),
        Some("aa:bb:cc:dd:ee:24"),
    )
    .await;
    c.db()
        .upsert("nodehm", &[("node", "tz004")], &[("serialport", "0")])
        .await
        .unwrap();
    c.node("tz005", "", Some("10.99.0.25"), Some("aa:bb:cc:dd:ee:25"))
        .await;
    let nodes = ["tz001", "tz002", "tz003", "tz004", "tz005"];
    let o = c.nodeset(&nodes, &[&format!("osimage={IMG}")]).await;
    assert_eq!(o.err(), "Failed to generate boot configurations for 3 of 5 node(s) on mn1: see the node errors above");
    assert_eq!(
        record(&o, "tz002").errors,
        ["No MAC address available for this node"]
    );
    assert_eq!(
        record(&o, "tz004").errors,
        ["serialport defined, but no serialspeed for tz004 in nodehm table"]
    );
    assert_eq!(
        record(&o, "tz005").errors,
        ["Unable to identify plugin for this command, check relevant tables: noderes.netboot"]
    );
    for bad in ["tz002", "tz004", "tz005"] {
        assert_eq!(record(&o, bad).errorcode, Some(1));
        assert!(!c.xnba(bad).exists());
        assert_eq!(c.attr("chain", bad, "currstate").await, None);
    }
    for good in ["tz001", "tz003"] {
        assert_eq!(record(&o, good).data, [STATE]);
        assert_eq!(read(&c.xnba(good)), xnba_bios(good, "rootimg.cpio.gz", ""));
        assert_eq!(
            c.attr("chain", good, "currstate").await.as_deref(),
            Some(STATE)
        );
    }
    assert_eq!(records(&o).len(), 5);
}

async fn stale_packed_format_not_chosen(c: Cluster) {
    c.node("cn1", "xnba", Some("10.99.0.11"), Some("aa:bb:cc:dd:ee:11"))
        .await;
    let old = SystemTime::now() - Duration::from_secs(3600);
    let f = fs::File::options()
        .write(true)
        .open(c.image_dir().join("rootimg.cpio.gz"))
        .unwrap();
    f.set_modified(old).unwrap();
    fs::write(c.image_dir().join("rootimg.tar.zst"), b"newer").unwrap();
    let o = c.nodeset(&["cn1"], &[&format!("osimage={IMG}")]).await;
    o.ok();
    assert!(read(&c.xnba("cn1")).contains("/compute/rootimg.tar.zst XCAT="));
    let note = format!(
        "{IMG}: nodes boot rootimg.tar.zst, the newest of rootimg.tar.zst, rootimg.cpio.gz"
    );
    assert!(
        o.lines().iter().any(|l| l.starts_with(&note)),
        "{:?}",
        o.lines()
    );
}

async fn image_errors(c: Cluster) {
    c.node("cn1", "xnba", Some("10.99.0.11"), Some("aa:bb:cc:dd:ee:11"))
        .await;
    let o = c.nodeset(&["cn1"], &["osimage=nosuch"]).await;
    assert_eq!(
        o.err(),
        "Cannot find the OS image nosuch in the osimage table."
    );
    fs::remove_file(c.image_dir().join("initrd-stateless.gz")).unwrap();
    let o = c.nodeset(&["cn1"], &[&format!("osimage={IMG}")]).await;
    let e = &record(&o, "cn1").errors[0];
    assert!(
        e.starts_with("No initrd at ") && e.contains("build the image's stateless initrd"),
        "{e}"
    );
    // The older name still works, copied under the new one.
    fs::write(c.image_dir().join("initrd.gz"), b"old initrd").unwrap();
    c.nodeset(&["cn1"], &[&format!("osimage={IMG}")]).await.ok();
    let copy = c
        .tftp()
        .join("xcat/osimage")
        .join(IMG)
        .join("initrd-stateless.gz");
    assert_eq!(fs::read(&copy).unwrap(), b"old initrd");
    // --noupdateinitrd keeps the copy there.
    fs::write(c.image_dir().join("initrd.gz"), b"newer initrd").unwrap();
    c.nodeset(&["cn1"], &[&format!("osimage={IMG}"), "--noupdateinitrd"])
        .await
        .ok();
    assert_eq!(fs::read(&copy).unwrap(), b"old initrd");
    for f in ["rootimg.cpio.gz", "kernel"] {
        fs::remove_file(c.image_dir().join(f)).unwrap();
        let o = c.nodeset(&["cn1"], &[&format!("osimage={IMG}")]).await;
        assert!(o.err().starts_with("Failed to generate"));
        let e = &record(&o, "cn1").errors[0];
        let want = if f == "kernel" {
            "The kernel cannot be found at"
        } else {
            "No packed image for platform rocky9.4"
        };
        assert!(e.contains(want), "{e}");
    }
    let o = c.nodeset(&["cn1"], &["shell"]).await;
    assert!(
        record(&o, "cn1").errors[0].contains("genesis"),
        "{:?}",
        record(&o, "cn1")
    );
}

/// The record packimage writes beside a packed file.
fn put_record(c: &Cluster, packed: &str, format: xcat_image::pack::Format, ram_mib: u64) {
    let rec = xcat_image::pack::record::PackRecord {
        format,
        compression: xcat_image::pack::compress::Compression::Gzip,
        size: 7,
        sha256: "0".repeat(64),
        tree_bytes: 1 << 30,
        ram_mib,
    };
    fs::write(c.image_dir().join(format!("{packed}.info")), rec.render()).unwrap();
}

async fn ram_warnings(c: Cluster) {
    use xcat_image::pack::Format;
    for (i, mem) in [
        ("1", Some("4096MB")),
        ("2", Some("16GB")),
        ("3", None),
        ("4", Some("1024")),
        ("5", Some("plenty")),
    ] {
        let node = format!("cn{i}");
        c.node(
            &node,
            "xnba",
            Some(&format!("10.99.0.1{i}")),
            Some(&format!("aa:bb:cc:dd:ee:1{i}")),
        )
        .await;
        if let Some(m) = mem {
            c.db()
                .upsert("hwinv", &[("node", &node)], &[("memory", m)])
                .await
                .unwrap();
        }
    }
    put_record(&c, "rootimg.cpio.gz", Format::Cpio, 5000);
    c.db()
        .upsert(
            "osimage",
            &[("imagename", IMG)],
            &[(
                "description",
                "Lab image [ram cpio=4000MiB squashfs=1200MiB]",
            )],
        )
        .await
        .unwrap();
    let nodes = ["cn1", "cn2", "cn3", "cn4", "cn5"];
    let o = c.nodeset(&nodes, &[&format!("osimage={IMG}")]).await;
    // Warnings only: every node is set up, the request succeeds.
    o.ok();
    for n in nodes {
        assert_eq!(record(&o, n).data, [STATE], "{n}");
        assert!(c.xnba(n).exists(), "{n}");
    }
    assert_eq!(
        record(&o, "cn1").warnings,
        [format!(
            "image {IMG} needs 5000 MiB of RAM to boot as cpio, the node has 4096 MiB \
             (squashfs needs 1200 MiB: packimage -m squashfs)"
        )]
    );
    assert!(record(&o, "cn2").warnings.is_empty());
    assert!(record(&o, "cn3").warnings.is_empty(), "no hwinv.memory");
    assert_eq!(
        record(&o, "cn4").warnings,
        [format!(
            "image {IMG} needs 5000 MiB of RAM to boot as cpio, the node has 1024 MiB"
        )],
        "nothing else fits"
    );
    assert!(
        record(&o, "cn5").warnings[0].starts_with("hwinv.memory \"plenty\" is not a memory size"),
        "{:?}",
        record(&o, "cn5").warnings
    );
    // The record of a newer tar, with the cpio a leftover: tar's figure counts,
    // cpio's own record comes in as the other format.
    fs::write(c.image_dir().join("rootimg.tar.gz"), b"newer").unwrap();
    let old = SystemTime::now() - Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(c.image_dir().join("rootimg.cpio.gz"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    put_record(&c, "rootimg.tar.gz", Format::Tar, 6000);
    let o = c
        .nodeset(&["cn2", "cn1"], &[&format!("osimage={IMG}")])
        .await;
    o.ok();
    assert_eq!(
        record(&o, "cn1").warnings,
        [format!(
            "image {IMG} needs 6000 MiB of RAM to boot as tar, the node has 4096 MiB \
             (squashfs needs 1200 MiB: packimage -m squashfs)"
        )]
    );
    assert!(record(&o, "cn2").warnings.is_empty(), "16 GB is enough");
}

both_backends!(
    ram_warnings,
    xnba_files_and_tables,
    kcmdline_options,
    grub2_files,
    boot_offline_stat,
    partial_failure,
    stale_packed_format_not_chosen,
    image_errors,
);

/// A node booting while nodeset rewrites its script reads a whole script:
/// a reader polling the file meanwhile never sees a partial one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_half_a_script() {
    let c = Cluster::sqlite().await;
    c.node("cn1", "xnba", Some("10.99.0.11"), Some("aa:bb:cc:dd:ee:11"))
        .await;
    c.nodeset(&["cn1"], &[&format!("osimage={IMG}")]).await.ok();
    let path = c.xnba("cn1");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (path, stop) = (path.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seen = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = fs::read_to_string(&path).expect("the script is always there");
                assert!(
                    t == "#!gpxe\n#boot\nexit\n" || t.ends_with("imgexec kernel\n"),
                    "partial: {t:?}"
                );
                seen += 1;
            }
            seen
        })
    };
    for i in 0..20 {
        let state = if i % 2 == 0 {
            "boot".to_string()
        } else {
            format!("osimage={IMG}")
        };
        c.nodeset(&["cn1"], &[&state]).await.ok();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    assert_eq!(
        names(&c.tftp().join("xcat/xnba/nodes")),
        ["cn1", "cn1.uefi"]
    );
}
