#!/bin/bash
# Add the edge-case tree used by fidelity tests under ROOT/srv/edgecases.
#
#   edgecases.sh [--big] ROOT
#
# Every kind of file object a capture must keep (or knowingly drop):
# regular, empty and 100-byte files, deep directories, relative/absolute/
# dangling symlinks, a 3-way hard link across directories, char and block
# devices, a FIFO, a unix socket, user.* and trusted.* xattrs, a file
# capability, POSIX ACLs (access and default), setuid/setgid/sticky, a 1 GiB
# sparse file with data in the middle, 255-byte, non-UTF-8, newline, leading
# dash and leading space names, ids without passwd entries, mtimes in 1999 and
# 2038, modes 000 and 0640. With --big (or TB_EDGE_BIG=1) also a sparse file
# over 4 GiB (GNU cpio silently skips those).
#
# ROOT must be on a filesystem with xattrs, ACLs and device nodes (ext4).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/common.sh"

big=${TB_EDGE_BIG:-0}
if [ "${1:-}" = --big ]; then big=1; shift; fi
[ $# -eq 1 ] || tb_die "usage: edgecases.sh [--big] ROOT"
root=$1
[ -d "$root" ] || tb_die "$root is not a directory"
tb_require setfattr setfacl setcap mknod mkfifo perl truncate touch

e="$root/srv/edgecases"
rm -rf "$e"
mkdir -p "$e"

# Plain files.
printf 'hello, node\n' > "$e/regular"
: > "$e/empty"
head -c 100 /dev/urandom > "$e/hundred-bytes"
printf 'x' > "$e/mode-000"; chmod 000 "$e/mode-000"
printf 'x' > "$e/mode-0640"; chmod 0640 "$e/mode-0640"

# Deep directories (64 levels).
d="$e/deep"
for i in $(seq 1 64); do d="$d/d$i"; done
mkdir -p "$d"
printf 'bottom\n' > "$d/leaf"

# Symlinks.
ln -s regular "$e/link-relative"
ln -s /srv/edgecases/regular "$e/link-absolute"
ln -s does-not-exist "$e/link-dangling"
ln -s ../.. "$e/link-dir-up"

# A 3-way hard link across directories.
mkdir -p "$e/hard/a" "$e/hard/b" "$e/hard/c"
printf 'linked three times\n' > "$e/hard/a/file"
ln "$e/hard/a/file" "$e/hard/b/file"
ln "$e/hard/a/file" "$e/hard/c/other-name"

# Special files.
mknod "$e/char-null" c 1 3
mknod "$e/block-loop200" b 7 200
mkfifo "$e/fifo"
perl -MIO::Socket::UNIX -e 'IO::Socket::UNIX->new(Type => SOCK_STREAM(), Local => $ARGV[0], Listen => 1) or die "socket: $!\n"' "$e/socket"
[ -S "$e/socket" ] || tb_die "could not create a unix socket"

# Extended attributes, a file capability, ACLs.
printf 'xattrs\n' > "$e/xattrs"
setfattr -n user.colour -v blue "$e/xattrs"
setfattr -n user.binary -v 0x00ff10 "$e/xattrs"
setfattr -n trusted.secret -v only-root "$e/xattrs"
cp "$root/bin/true" "$e/cap-net-raw"
setcap cap_net_raw+ep "$e/cap-net-raw"
printf 'acl\n' > "$e/acl-file"
setfacl -m u:1234:rw,g:2345:r "$e/acl-file"
mkdir -p "$e/acl-dir"
setfacl -m d:u:1234:rwx "$e/acl-dir"

# setuid, setgid, sticky.
cp "$root/bin/true" "$e/setuid"; chmod 4755 "$e/setuid"
cp "$root/bin/true" "$e/setgid"; chmod 2755 "$e/setgid"
mkdir -p "$e/sticky"; chmod 1777 "$e/sticky"
mkdir -p "$e/setgid-dir"; chmod 2775 "$e/setgid-dir"

# Sparse files: holes around a little data.
truncate -s 1G "$e/sparse-1g"
printf 'middle' | dd of="$e/sparse-1g" bs=1 seek=$((512 * 1024 * 1024)) conv=notrunc status=none
if [ "$big" = 1 ]; then
    truncate -s 5G "$e/sparse-5g"
    printf 'beyond 4 GiB' | dd of="$e/sparse-5g" bs=1 seek=$((4 * 1024 * 1024 * 1024 + 4096)) conv=notrunc status=none
fi

# Awkward names.
mkdir -p "$e/names"
long=$(printf 'n%.0s' $(seq 1 255))
printf 'long\n' > "$e/names/$long"
printf 'latin1\n' > "$e/names/$(printf 'caf\xe9')"
printf 'newline\n' > "$e/names/$(printf 'with\nnewline')"
printf 'dash\n' > "$e/names/-starts-with-dash"
printf 'space\n' > "$e/names/ starts with space"
printf 'unicode\n' > "$e/names/ünïcödé ✓"

# Owners without passwd entries.
printf 'orphan\n' > "$e/orphan-ids"
chown 54321:54322 "$e/orphan-ids"
mkdir -p "$e/orphan-dir"
chown 54321:54322 "$e/orphan-dir"

# Timestamps (set last: creating entries updates directory mtimes).
printf '1999\n' > "$e/mtime-1999"
touch -h -d '1999-12-31 23:59:59 UTC' "$e/mtime-1999"
printf '2038\n' > "$e/mtime-2038"
touch -h -d '2038-06-01 12:00:00 UTC' "$e/mtime-2038"
touch -h -d '1999-12-31 23:59:59 UTC' "$e/link-relative"
