//! A small initrd that shows how far a network boot got, for the boot tests
//! until the stateless initrd of our own exists: busybox and the virtio
//! network modules of the Debian kernel. Its `/init` prints the kernel
//! command line, brings up the NIC by DHCP, downloads `imgurl=` and prints
//! the download's SHA-256, each between markers the test reads on the
//! serial console, then powers the guest off.

use std::path::Path;

use xcatd_tests::netboot::sh;

/// The modules, in load order, that give the Debian kernel a virtio NIC.
const VIRTIO_NET: &[&str] = &[
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_pci_legacy_dev.ko",
    "drivers/virtio/virtio_pci_modern_dev.ko",
    "drivers/virtio/virtio_pci.ko",
    "net/core/failover.ko",
    "drivers/net/net_failover.ko",
    "drivers/net/virtio_net.ko",
];

/// Printed first by `/init`, with the command line after it.
pub const CMDLINE_MARK: &str = "XCATD-PROBE cmdline:";
/// Printed with the SHA-256 of the downloaded image after it.
pub const IMAGE_MARK: &str = "XCATD-PROBE image sha256:";
/// Printed when the download failed.
pub const FAILED_MARK: &str = "XCATD-PROBE image download failed";

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules.order); do insmod /modules/$m; done
echo "XCATD-PROBE cmdline: $(cat /proc/cmdline)"
url=$(tr ' ' '\n' < /proc/cmdline | sed -n 's/^imgurl=//p')
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -n -q -t 20 -s /udhcpc.sh
if wget -q -O /image "$url"; then
  echo "XCATD-PROBE image sha256: $(sha256sum /image | cut -d' ' -f1)"
else
  echo "XCATD-PROBE image download failed"
fi
poweroff -f
"#;

const UDHCPC: &str = r#"#!/bin/busybox sh
[ "$1" = bound ] || exit 0
ip addr add "$ip/${mask:-24}" dev "$interface"
"#;

/// Writes the probe as a gzip-compressed newc cpio to `out`, with the
/// modules of the kernel tree `kernel_tree` (a Debian kernel package's
/// contents) of version `kver`.
pub fn build(kernel_tree: &Path, kver: &str, out: &Path) {
    let work = tempfile::tempdir().expect("tempdir");
    let root = work.path();
    for d in ["bin", "proc", "sys", "dev", "modules"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static");
    let modules = kernel_tree.join("lib/modules").join(kver).join("kernel");
    let mut order = String::new();
    for m in VIRTIO_NET {
        let name = Path::new(m).file_name().expect("name");
        std::fs::copy(modules.join(m), root.join("modules").join(name)).expect("module");
        order.push_str(&format!("{}\n", name.to_string_lossy()));
    }
    std::fs::write(root.join("modules.order"), order).expect("modules.order");
    for (name, text) in [("init", INIT), ("udhcpc.sh", UDHCPC)] {
        std::fs::write(root.join(name), text).expect("script");
    }
    sh(&format!(
        "cd '{r}' && chmod 0755 init udhcpc.sh bin/busybox \
         && find . -mindepth 1 | cpio -o -H newc --quiet | gzip -1 > '{o}'",
        r = root.display(),
        o = out.display()
    ));
}
