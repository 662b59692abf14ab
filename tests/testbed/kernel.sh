#!/bin/bash
# Debian's kernel for test-bed nodes that must boot for real (the nodes are
# containers running the host's kernel, so their tree has none of its own).
#
#   kernel.sh fetch         print "DIR KVER": the package behind
#                           linux-image-amd64, unpacked once into a cache
#                           directory (boot/ and lib/modules/KVER/ inside)
#   kernel.sh install ROOT  install that kernel into the tree at ROOT (a
#                           running node's /proc/PID/root): /boot and its
#                           modules, without the driver families a netbooted
#                           server never loads (graphics, sound, media,
#                           wireless, staging, bluetooth, ...), to keep images
#                           small under emulation; runs depmod as the
#                           package's postinst would; prints KVER
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/common.sh"

CACHE=/var/cache/xcatd-rs-tests

fetch() {
    local pkg kver dir work
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[^ ]*\)$/\1/p' | head -n1)
    [ -n "$pkg" ] || tb_die "no kernel package behind linux-image-amd64 (run apt-get update)"
    kver=${pkg#linux-image-}
    dir=$CACHE/$pkg
    mkdir -p "$CACHE"
    exec 7>"$CACHE/.kernel.lock"
    flock 7
    if [ ! -f "$dir/boot/vmlinuz-$kver" ]; then
        work=$(mktemp -d "$CACHE/dl.XXXXXX")
        (cd "$work" && apt-get download -q "$pkg" >/dev/null 2>&1 && dpkg-deb -x ./*.deb tree) ||
            { rm -rf "$work"; tb_die "cannot download $pkg"; }
        rm -rf "$dir"
        mv "$work/tree" "$dir"
        rm -rf "$work"
    fi
    echo "$dir $kver"
}

install_into() {
    local root=$1 dir kver
    [ -d "$root/etc" ] || tb_die "$root is not a root file system"
    read -r dir kver < <(fetch)
    cp -a "$dir/boot/." "$root/boot/"
    mkdir -p "$root/usr/lib/modules"
    cp -a "$dir/lib/modules/$kver" "$root/usr/lib/modules/"
    (cd "$root/usr/lib/modules/$kver/kernel" &&
        rm -rf drivers/gpu sound drivers/media drivers/net/wireless drivers/staging drivers/bluetooth \
            drivers/infiniband drivers/iio drivers/hid drivers/input drivers/usb net/bluetooth \
            net/mac80211 net/wireless)
    # what the package's postinst does on a real node
    depmod -b "$root" "$kver"
    echo "$kver"
}

case "${1:-}" in
    fetch) [ $# -eq 1 ] || tb_die "usage: kernel.sh fetch"; fetch ;;
    install) [ $# -eq 2 ] || tb_die "usage: kernel.sh install ROOT"; install_into "$2" ;;
    *) tb_die "usage: kernel.sh fetch | install ROOT" ;;
esac
