#!/bin/bash
# Build (once) and print the path of a cached Debian root filesystem.
#
#   rootfs.sh [tar|ext4|base]
#     tar   the mmdebstrap tarball (default)
#     ext4  a sparse ext4 image holding the tree (template copied per node)
#     base  the tree unpacked in a directory (read-only lower layer for
#           light nodes that share one base through overlayfs)
#
# The cache key is a hash of the suite, variant and package list, so changing
# the list builds a new tree and never reuses a stale one. Concurrent callers
# serialize on a lock file; artefacts appear under their final name only when
# complete (built under a temporary name, then renamed).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/common.sh"

what=${1:-tar}
case "$what" in tar|ext4|base) ;; *) tb_die "usage: rootfs.sh [tar|ext4|base]" ;; esac

tb_require mmdebstrap tar mkfs.ext4 mount umount flock sha256sum

# Template image size: large enough for the tree plus the edge-case tree
# (sparse files stay sparse); per-node images are copied sparsely.
TEMPLATE_MB=4096
key=$(printf '%s\n' "v1" "$TB_SUITE" minbase "$TB_PACKAGES" "$TEMPLATE_MB" | sha256sum | cut -c1-16)
tarball="$TB_CACHE/rootfs-$key.tar"
image="$TB_CACHE/rootfs-$key.ext4"
base="$TB_CACHE/base-$key"

# The mirror apt on this machine already uses (deb822 first, then one-line).
find_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -e "$f" ] || continue
        awk -v suite="$TB_SUITE" '
            /^[[:space:]]*$/ { if (uri != "" && ok) { print uri; exit } uri=""; ok=0; next }
            /^URIs:/ { uri=$2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) ok=1 }
            END { if (uri != "" && ok) print uri }
        ' "$f" | head -n1
    done | head -n1
}
find_mirror_list() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -e "$f" ] || continue
        awk -v suite="$TB_SUITE" '$1 == "deb" {
            for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):/ && $(i+1) == suite) { print $i; exit }
        }' "$f"
    done | head -n1
}

mkdir -p "$TB_CACHE"
exec 8>"$TB_CACHE/.lock"
flock 8

if [ ! -s "$tarball" ]; then
    mirror=$(find_mirror)
    [ -n "$mirror" ] || mirror=$(find_mirror_list)
    [ -n "$mirror" ] || tb_die "no apt source for $TB_SUITE found in /etc/apt (needed to build the node root filesystem)"
    echo "testbed: building $TB_SUITE rootfs from $mirror (once; cached in $TB_CACHE)" >&2
    work=$(mktemp -d "$TB_CACHE/build.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    # The customize hooks replace the files mmdebstrap copies from the host.
    mmdebstrap --variant=minbase --include="$TB_PACKAGES" \
        --customize-hook='echo node > "$1/etc/hostname"' \
        --customize-hook='printf "# no DNS inside the test bed\n" > "$1/etc/resolv.conf"' \
        --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
        "$TB_SUITE" "$work/rootfs.tar" "$mirror" >&2
    mv "$work/rootfs.tar" "$tarball"
    rm -rf "$work"
    trap - EXIT
fi

if [ "$what" = ext4 ] && [ ! -s "$image" ]; then
    tmp="$image.tmp.$$"
    mnt=$(mktemp -d "$TB_CACHE/mnt.XXXXXX")
    trap 'umount "$mnt" 2>/dev/null || true; rmdir "$mnt" 2>/dev/null || true; rm -f "$tmp"' EXIT
    rm -f "$tmp"
    truncate -s "${TEMPLATE_MB}M" "$tmp"
    mkfs.ext4 -q -F -L xtbroot -E lazy_itable_init=1,lazy_journal_init=1,nodiscard "$tmp"
    mount -o loop "$tmp" "$mnt"
    tar -C "$mnt" -xpf "$tarball" --xattrs --xattrs-include='*' --acls --numeric-owner
    umount "$mnt"
    rmdir "$mnt"
    mv "$tmp" "$image"
    trap - EXIT
fi

if [ "$what" = base ] && [ ! -d "$base" ]; then
    tmp="$base.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    trap 'rm -rf "$tmp"' EXIT
    tar -C "$tmp" -xpf "$tarball" --xattrs --xattrs-include='*' --acls --numeric-owner
    mv "$tmp" "$base"
    trap - EXIT
fi

case "$what" in
    tar) echo "$tarball" ;;
    ext4) echo "$image" ;;
    base) echo "$base" ;;
esac
