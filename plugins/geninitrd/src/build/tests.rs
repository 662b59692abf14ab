//! The initrd of a small image made here: hand-written modules (ELF files with a
//! `.modinfo`, one xz-compressed), a hand-written `modules.dep`, firmware behind a
//! link and compressed; stand-in binaries (static ELF headers, never run).

use std::os::unix::fs::symlink;
use std::process::Command;

use super::*;
use crate::elf::tests::{executable, module_with};

const KVER: &str = "6.1.0-t";

struct Image {
    _t: tempfile::TempDir,
    dir: PathBuf,
    rootimg: PathBuf,
    moddir: PathBuf,
    bin: PathBuf,
}

fn write(path: &Path, data: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

fn write_xz(path: &Path, data: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut e = compress::encoder(Compression::Xz, None, 1, File::create(path).unwrap()).unwrap();
    io::Write::write_all(&mut e, data).unwrap();
    e.finish().unwrap();
}

const DEP: &str = "\
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko.xz: kernel/drivers/ptp/ptp.ko
kernel/drivers/ptp/ptp.ko:
kernel/drivers/misc/mynic.ko:
kernel/sound/snd.ko:
";

/// The e1000e module as the image has it, before compression.
fn e1000e() -> Vec<u8> {
    module_with(&[
        "firmware=e1000e/fw.bin",
        "firmware=./e1000e//fw.bin",
        "firmware=../outside.bin",
        "firmware=absent.bin",
        "depends=ptp",
        "name=e1000e",
    ])
}

fn image() -> Image {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("img");
    let rootimg = dir.join("rootimg");
    write(&rootimg.join(format!("boot/vmlinuz-{KVER}")), b"a kernel");
    let moddir = rootimg.join("lib/modules").join(KVER);
    for (rel, strings) in [
        (
            "kernel/drivers/net/virtio_net.ko",
            &["depends=net_failover", "name=virtio_net"][..],
        ),
        ("kernel/drivers/net/net_failover.ko", &["depends=failover"]),
        ("kernel/net/core/failover.ko", &["depends="]),
        ("kernel/drivers/ptp/ptp.ko", &["depends="]),
        ("kernel/drivers/misc/mynic.ko", &["firmware=mynic/link.bin"]),
        ("kernel/sound/snd.ko", &["depends="]),
    ] {
        write(&moddir.join(rel), &module_with(strings));
    }
    write_xz(
        &moddir.join("kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko.xz"),
        &e1000e(),
    );
    write(&moddir.join("modules.dep"), DEP.as_bytes());
    write(
        &moddir.join("modules.builtin"),
        b"kernel/drivers/virtio/virtio_pci.ko\n",
    );
    write_xz(
        &rootimg.join("lib/firmware/e1000e/fw.bin.xz"),
        b"e1000e firmware",
    );
    write(
        &rootimg.join("lib/firmware/mynic/link-1.2.bin"),
        b"mynic firmware",
    );
    symlink("link-1.2.bin", rootimg.join("lib/firmware/mynic/link.bin")).unwrap();
    write(
        &rootimg.join("usr/lib/systemd/system/systemd-networkd.service"),
        b"[Unit]\n",
    );
    // Stand-ins for the server's busybox and xcat-netinit: static x86-64 headers.
    let bin = t.path().join("bin");
    write(&bin.join("busybox"), &executable(62, 1));
    write(&bin.join("xcat-netinit"), &executable(62, 1));
    Image {
        dir,
        rootimg,
        moddir,
        bin,
        _t: t,
    }
}

impl Image {
    fn spec(&self, netdrivers: &[&str]) -> InitrdSpec {
        let netdrivers: Vec<String> = netdrivers.iter().map(|s| s.to_string()).collect();
        let settings = InitrdSettings {
            busybox: self.bin.join("busybox"),
            netinit: self.bin.join("xcat-netinit"),
        };
        InitrdSpec::new(&self.dir, &self.rootimg, KVER, &netdrivers, &settings)
    }

    fn build(&self, netdrivers: &[&str]) -> Result<InitrdOutcome, GenInitrdError> {
        build(&self.spec(netdrivers), &AtomicBool::new(false))
    }

    fn initrd(&self) -> PathBuf {
        self.dir.join(INITRD_FILE)
    }

    /// `cpio -t` of the initrd, in archive order.
    fn listing(&self) -> Vec<String> {
        let out = shell(&format!(
            "gzip -dc '{}' | cpio -t --quiet",
            self.initrd().display()
        ));
        out.lines().map(str::to_string).collect()
    }

    /// The initrd unpacked by cpio (its device nodes left out: not root here).
    fn unpacked(&self) -> PathBuf {
        let to = self.dir.join("unpacked");
        fs::create_dir_all(&to).unwrap();
        shell(&format!(
            "cd '{}' && gzip -dc '{}' | cpio -idm --quiet -f 'dev/*'",
            to.display(),
            self.initrd().display()
        ));
        to
    }

    fn load_order(&self) -> Vec<String> {
        let u = self.unpacked();
        let text = fs::read_to_string(u.join(format!("lib/modules/{KVER}/load.order"))).unwrap();
        let _ = fs::remove_dir_all(&u);
        text.lines().map(str::to_string).collect()
    }
}

fn shell(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const ORDER: &[&str] = &[
    "kernel/net/core/failover.ko",
    "kernel/drivers/net/net_failover.ko",
    "kernel/drivers/net/virtio_net.ko",
    "kernel/drivers/ptp/ptp.ko",
    "kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko",
    "kernel/drivers/misc/mynic.ko",
];

#[test]
fn the_initrd_holds_init_binaries_modules_in_load_order_and_their_firmware() {
    let img = image();
    let o = img.build(&["mynic.ko"]).unwrap();
    assert_eq!((o.modules, o.firmware), (6, 2), "{o:?}");
    assert!(o.warnings.is_empty(), "{:?}", o.warnings);
    assert!(
        o.notes
            .iter()
            .any(|n| n.starts_with("2 firmware file(s) the modules name are not in")),
        "{:?}",
        o.notes
    );
    assert_eq!(o.bytes, fs::metadata(img.initrd()).unwrap().len());
    let list = img.listing();
    assert_eq!(&list[..2], [RECORD, "init"], "the record first");
    let m = |rel: &str| format!("lib/modules/{KVER}/{rel}");
    for want in [
        "bin/busybox".to_string(),
        "bin/sh".into(),
        "bin/xcat-netinit".into(),
        "usr/share/udhcpc/default.script".into(),
        "dev/console".into(),
        "newroot".into(),
        m("load.order"),
        m("kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko"),
        "lib/firmware/e1000e/fw.bin".into(),
        "lib/firmware/mynic/link.bin".into(),
        "rootfs-additions/etc/systemd/network/90-xcat-netboot.network".into(),
        "rootfs-additions/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
            .into(),
    ] {
        assert!(list.contains(&want), "{want} missing from {list:#?}");
    }
    for absent in [
        m("kernel/sound/snd.ko"),
        m("kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko.xz"),
    ] {
        assert!(!list.contains(&absent), "{absent} should not be there");
    }
    // Every directory comes before what it holds.
    for (i, e) in list.iter().enumerate() {
        if let Some((parent, _)) = e.rsplit_once('/') {
            let at = list.iter().position(|x| x == parent);
            assert!(at.is_some_and(|p| p < i), "{parent} not before {e}");
        }
    }
    let u = img.unpacked();
    assert_eq!(
        fs::read_to_string(u.join(format!("lib/modules/{KVER}/load.order"))).unwrap(),
        ORDER.join("\n") + "\n"
    );
    // The initrd's own table: its modules, in load order, by their names in it.
    assert_eq!(
        fs::read_to_string(u.join(m("modules.dep"))).unwrap(),
        "kernel/net/core/failover.ko:\n\
         kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n\
         kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko\n\
         kernel/drivers/ptp/ptp.ko:\n\
         kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko: kernel/drivers/ptp/ptp.ko\n\
         kernel/drivers/misc/mynic.ko:\n"
    );
    assert_eq!(
        fs::read(u.join(m("kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko"))).unwrap(),
        e1000e(),
        "decompressed"
    );
    assert_eq!(
        fs::read(u.join("lib/firmware/e1000e/fw.bin")).unwrap(),
        b"e1000e firmware"
    );
    assert_eq!(
        fs::read(u.join("lib/firmware/mynic/link.bin")).unwrap(),
        b"mynic firmware",
        "the link's file"
    );
    assert_eq!(fs::read_to_string(u.join("init")).unwrap(), INIT_SCRIPT);
    assert_eq!(
        fs::read_link(u.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    let verbose = shell(&format!(
        "gzip -dc '{}' | cpio -tv --quiet dev/console init",
        img.initrd().display()
    ));
    assert!(
        verbose
            .lines()
            .any(|l| l.starts_with("crw-------") && l.ends_with("dev/console")),
        "{verbose}"
    );
    assert!(
        verbose
            .lines()
            .any(|l| l.starts_with("-rwxr-xr-x") && l.ends_with(" init")),
        "{verbose}"
    );
    let rec = read_record(&img.initrd()).unwrap();
    assert!(
        rec.contains(&format!("\nkver={KVER}\n")) && rec.contains("\nnetdrivers=mynic.ko\n"),
        "{rec}"
    );
}

#[test]
fn the_same_image_gives_the_same_bytes() {
    let img = image();
    img.build(&[]).unwrap();
    let first = fs::read(img.initrd()).unwrap();
    img.build(&[]).unwrap();
    assert!(fs::read(img.initrd()).unwrap() == first);
    let left: Vec<_> = fs::read_dir(&img.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "no temporary file left: {left:?}");
}

#[test]
fn a_netdriver_the_kernel_lacks_is_warned_about_a_builtin_one_is_not() {
    let img = image();
    let o = img.build(&["virtio-pci", "nosuchnic.ko", "mynic"]).unwrap();
    assert_eq!(o.warnings.len(), 1, "{:?}", o.warnings);
    assert!(
        o.warnings[0].starts_with(&format!(
            "netdriver nosuchnic.ko (linuximage.netdrivers) is neither a module of kernel {KVER}"
        )),
        "{}",
        o.warnings[0]
    );
    assert!(img
        .load_order()
        .contains(&"kernel/drivers/misc/mynic.ko".to_string()));
    // Not named, not a default: not carried.
    img.build(&[]).unwrap();
    assert!(!img
        .load_order()
        .contains(&"kernel/drivers/misc/mynic.ko".to_string()));
}

#[test]
fn without_modules_dep_the_modules_own_depends_give_the_same_order() {
    let img = image();
    fs::remove_file(img.moddir.join("modules.dep")).unwrap();
    let o = img.build(&["mynic"]).unwrap();
    assert!(
        o.notes
            .iter()
            .any(|n| n.contains("has no lib/modules/6.1.0-t/modules.dep")),
        "{:?}",
        o.notes
    );
    assert_eq!(img.load_order(), ORDER);
}

#[test]
fn staleness_follows_the_kernel_and_its_module_table() {
    let img = image();
    let root = Root::open(&img.rootimg).unwrap();
    assert_eq!(needs_rebuild(&img.dir, &root, KVER), Some(Stale::Missing));
    img.build(&[]).unwrap();
    assert_eq!(needs_rebuild(&img.dir, &root, KVER), None);
    assert_eq!(
        needs_rebuild(&img.dir, &root, "6.2.0"),
        Some(Stale::OtherKernel { built: KVER.into() })
    );
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    let touch = |p: &Path| {
        File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(later)
            .unwrap()
    };
    touch(&img.moddir.join("modules.dep"));
    let dep = format!("/lib/modules/{KVER}/modules.dep");
    assert_eq!(
        needs_rebuild(&img.dir, &root, KVER),
        Some(Stale::Older(dep))
    );
    img.build(&[]).unwrap();
    touch(&img.initrd());
    assert_eq!(needs_rebuild(&img.dir, &root, KVER), None);
    touch(&img.rootimg.join(format!("boot/vmlinuz-{KVER}")));
    // Same second and nanosecond as the initrd: not older. One more second: older.
    let kernel = img.rootimg.join(format!("boot/vmlinuz-{KVER}"));
    File::options()
        .write(true)
        .open(&kernel)
        .unwrap()
        .set_modified(later + std::time::Duration::from_secs(1))
        .unwrap();
    assert_eq!(
        needs_rebuild(&img.dir, &root, KVER),
        Some(Stale::Older(format!("/boot/vmlinuz-{KVER}")))
    );
    // Something else under the name: no record.
    let mut e = compress::encoder(
        Compression::Gzip,
        None,
        1,
        File::create(img.initrd()).unwrap(),
    )
    .unwrap();
    io::Write::write_all(&mut e, b"070701 a dracut initrd").unwrap();
    e.finish().unwrap();
    assert_eq!(needs_rebuild(&img.dir, &root, KVER), Some(Stale::NoRecord));
}

#[test]
fn the_binaries_must_be_there_static_and_for_the_kernels_machine() {
    let img = image();
    let mut spec = img.spec(&[]);
    spec.busybox = img.bin.join("nothere");
    let e = build(&spec, &AtomicBool::new(false))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("([initrd] busybox) does not exist; install Debian's busybox-static"),
        "{e}"
    );
    spec.busybox = PathBuf::from("/bin/ls");
    let e = build(&spec, &AtomicBool::new(false))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/bin/ls ([initrd] busybox) is dynamically linked"),
        "{e}"
    );
    spec = img.spec(&[]);
    write(&spec.netinit, &executable(183, 1));
    let e = build(&spec, &AtomicBool::new(false))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("([initrd] netinit) is built for aarch64, but the image's kernel is x86-64"),
        "{e}"
    );
    assert!(
        e.ends_with(
            "build it with scripts/build-netinit, or set [initrd] netinit in xcatd.toml to it"
        ),
        "{e}"
    );
    write(&spec.netinit, b"#!/bin/sh\n");
    let e = build(&spec, &AtomicBool::new(false))
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not an ELF executable"), "{e}");
    assert!(!img.initrd().exists());
}

#[test]
fn an_image_link_never_leads_to_a_server_file() {
    let img = image();
    let secret = img.dir.parent().unwrap().join("secret");
    fs::write(&secret, b"server secret").unwrap();
    // The firmware a module names, linked out of the image: looked up inside it.
    fs::remove_file(img.rootimg.join("lib/firmware/mynic/link.bin")).unwrap();
    symlink(
        "../../../../../secret",
        img.rootimg.join("lib/firmware/mynic/link.bin"),
    )
    .unwrap();
    let o = img.build(&["mynic"]).unwrap();
    assert_eq!(o.firmware, 1, "only e1000e's");
    // A module that is a link out of the image: refused, nothing written.
    fs::remove_file(img.initrd()).unwrap();
    let virtio = img.moddir.join("kernel/drivers/net/virtio_net.ko");
    fs::remove_file(&virtio).unwrap();
    symlink(&secret, &virtio).unwrap();
    let e = img.build(&[]).unwrap_err();
    assert!(matches!(e, GenInitrdError::Module { .. }), "{e:?}");
    assert!(e.to_string().starts_with(&format!("cannot read the module lib/modules/{KVER}/kernel/drivers/net/virtio_net.ko of the image: ")), "{e}");
    assert!(!img.initrd().exists());
}

#[test]
fn an_image_without_the_kernel_or_its_modules_is_refused() {
    let img = image();
    fs::remove_dir_all(img.rootimg.join("lib/modules")).unwrap();
    let e = img.build(&[]).unwrap_err().to_string();
    assert!(e.starts_with(&format!("the image has no modules for kernel {KVER} (lib/modules/{KVER} or usr/lib/modules/{KVER} in")), "{e}");
    fs::remove_file(img.rootimg.join(format!("boot/vmlinuz-{KVER}"))).unwrap();
    let e = img.build(&[]).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "the image has no kernel {KVER} (boot/vmlinuz-{KVER} in"
        )),
        "{e}"
    );
}

#[test]
fn the_scripts_parse_in_busybox_sh() {
    for (name, text) in [("init", INIT_SCRIPT), ("udhcpc hook", UDHCPC_SCRIPT)] {
        let out = Command::new("/bin/busybox")
            .args(["sh", "-n", "-c", text])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.starts_with("#!/bin/sh\n"), "{name}");
    }
    let broken = Command::new("/bin/busybox")
        .args(["sh", "-n", "-c", "if true; then"])
        .output()
        .unwrap();
    assert!(!broken.status.success(), "sh -n finds errors");
}

#[test]
fn a_softdep_loads_every_module_of_its_alias_first_without_needing_them() {
    let img = image();
    for (rel, strings) in [
        ("kernel/lib/libcrc32c.ko", &["softdep=pre: crc32c"][..]),
        (
            "kernel/crypto/crc32c_generic.ko",
            &["alias=crc32c", "alias=crypto-crc32c"],
        ),
        (
            "kernel/arch/x86/crypto/crc32c-intel.ko",
            &["alias=crc32c", "alias=cpu:type:x86*"],
        ),
    ] {
        write(&img.moddir.join(rel), &module_with(strings));
    }
    let dep = "kernel/lib/libcrc32c.ko:\nkernel/crypto/crc32c_generic.ko:\nkernel/arch/x86/crypto/crc32c-intel.ko:\n";
    write(
        &img.moddir.join("modules.dep"),
        format!("{DEP}{dep}").as_bytes(),
    );
    let want = [
        "kernel/crypto/crc32c_generic.ko",
        "kernel/arch/x86/crypto/crc32c-intel.ko",
        "kernel/lib/libcrc32c.ko",
    ];
    // Aliases from the modules' own .modinfo (no modules.alias), then from depmod's file.
    for alias_file in [
        None,
        Some("alias crc32c crc32c_intel\nalias crc32c crc32c_generic\n"),
    ] {
        if let Some(text) = alias_file {
            write(&img.moddir.join("modules.alias"), text.as_bytes());
        }
        img.build(&["libcrc32c"]).unwrap();
        let order = img.load_order();
        let got: Vec<&str> = order
            .iter()
            .map(String::as_str)
            .filter(|p| want.contains(p))
            .collect();
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(
            got.last(),
            Some(&"kernel/lib/libcrc32c.ko"),
            "{alias_file:?}: {order:?}"
        );
        assert_eq!(sorted.len(), 3, "{alias_file:?}: {order:?}");
        let u = img.unpacked();
        let table = fs::read_to_string(u.join(format!("lib/modules/{KVER}/modules.dep"))).unwrap();
        let _ = fs::remove_dir_all(&u);
        // Ordered first, but not needed: one of the two loading is enough.
        assert!(table.contains("\nkernel/lib/libcrc32c.ko:\n"), "{table}");
    }
}
