#!/bin/bash
# Test-bed nodes: a Debian root filesystem on its own disk, in its own
# network, mount, uts, ipc and pid namespaces, with sshd as PID 1.
#
#   node.sh up NAME INDEX   start node NAME as number INDEX (0..244) at
#                           10.99.0.(10+INDEX); prints its env file
#   node.sh down NAME|INDEX stop it and remove everything it used
#   node.sh cleanup         remove every bed object (nodes, namespaces, veths,
#                           the bridge, loop devices, mounts) of this or a
#                           killed earlier run; refuses while a bed is in use
#                           (a process holds $TB_STATE/bed.lock) unless --force;
#                           also the PXE bed's leftovers (pxe.sh cleanup) and
#                           the NFS servers of nfs.sh (nfs.sh cleanup)
#
# Settings (environment):
#   TB_MODE=full|btrfs|overlay  full (default): the node gets a copy of the cached
#                         ext4 image (its / really is one ext4 filesystem).
#                         btrfs: the same tree on a fresh btrfs disk.
#                         overlay: a small ext4 disk holds an overlayfs upper
#                         layer over one shared, read-only base tree (fast, light;
#                         for many-node tests)
#   TB_DISK_MB            disk size (full: default 4096, grown if larger;
#                         overlay: default 64)
#   TB_KEYS=DIR           the bed's client key pair (created if missing) and
#                         its known_hosts covering every node of the bed
#   TB_EDGECASES=1        add the edge-case tree (edgecases.sh) under
#                         /srv/edgecases (full mode only); TB_EDGE_BIG=1 adds
#                         the >4 GiB sparse file
#
# The caller must make sure no other live node uses INDEX (the Rust fixture
# holds $TB_STATE/index-INDEX.lock). `up` first removes whatever a killed
# run left for that INDEX. Every node gets a fresh host key; the client key
# and a known_hosts line for the node's address are what ssh needs.
#
# Stopping: SIGKILL to the `unshare` process (TB_PID); it kills the node's
# PID 1 and with it the whole pid namespace; the node's mounts (and so its
# loop device) live only in its mount namespace and go away with it.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/common.sh"

usage() { tb_die "usage: node.sh up NAME INDEX | down NAME|INDEX | cleanup [--force]"; }

netns_of() { echo "xtbns$1"; }
hostveth_of() { echo "xtbh$1"; }
nodeveth_of() { echo "xtbn$1"; }
dir_of() { echo "$TB_STATE/node-$1"; }
disk_of() { echo "$TB_DISKS/node-$1.img"; }
addr_of() { echo "10.99.0.$((10 + $1))"; }

# Start time of a pid (field 22 of /proc/PID/stat), to never kill a reused pid.
starttime() {
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    s=${s##*) }
    # Fields after "comm) ": state is field 3 ($1), starttime field 22 ($20).
    # shellcheck disable=SC2086
    set -- $s
    # A zombie is dead for our purposes (its parent may never reap it).
    [ "$1" != Z ] || return 1
    echo "${20}"
}

kill_recorded() {
    local pid=$1 start=$2 i
    [ -n "$pid" ] || return 0
    if [ "$(starttime "$pid" || true)" = "$start" ]; then
        kill -KILL "$pid" 2>/dev/null || true
        for i in $(seq 1 100); do
            [ "$(starttime "$pid" || true)" = "$start" ] || return 0
            sleep 0.05
        done
        tb_die "process $pid does not die"
    fi
}

remove_known_hosts_line() {
    local file=$1 addr=$2
    [ -f "$file" ] || return 0
    (
        flock 7
        grep -v -F "$addr " "$file" > "$file.tmp.$$" || true
        mv "$file.tmp.$$" "$file"
    ) 7>"$file.lock"
}

# Tear down index INDEX: whatever state it is in (live, half up, stale).
teardown_index() {
    local idx=$1 dir disk ns
    dir=$(dir_of "$idx"); disk=$(disk_of "$idx"); ns=$(netns_of "$idx")
    if [ -f "$dir/env" ]; then
        local TB_PID="" TB_PID_START="" TB_KEYS_DIR="" TB_ADDR=""
        # shellcheck disable=SC1091
        . "$dir/env"
        kill_recorded "$TB_PID" "$TB_PID_START"
        [ -n "$TB_KEYS_DIR" ] && remove_known_hosts_line "$TB_KEYS_DIR/known_hosts" "$TB_ADDR"
    fi
    # An init started but not yet recorded (up killed midway).
    local p
    for p in $(pgrep -f -- "$dir/init.sh" || true); do
        kill -KILL "$p" 2>/dev/null || true
    done
    if ip netns list 2>/dev/null | grep -qw "$ns"; then
        ip netns del "$ns" 2>/dev/null || true
    fi
    ip link del "$(hostveth_of "$idx")" 2>/dev/null || true
    # Host-side mounts (edge-case population) and loop devices on the disk.
    local m
    for m in $(awk -v d="$dir" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
    if [ -e "$disk" ]; then
        for m in $(losetup -n -O NAME -j "$disk" 2>/dev/null || true); do
            losetup -d "$m" 2>/dev/null || true
        done
    fi
    rm -f "$disk"
    rm -rf "$dir"
}

ensure_bridge() {
    mkdir -p "$TB_STATE"
    (
        flock 7
        if ! ip link show "$TB_BRIDGE" >/dev/null 2>&1; then
            ip link add "$TB_BRIDGE" type bridge
            ip addr add "$TB_BRIDGE_ADDR/$TB_PREFIX" dev "$TB_BRIDGE"
        fi
        ip link set "$TB_BRIDGE" up
    ) 7>"$TB_STATE/net.lock"
}

write_init() {
    # Runs inside the new namespaces (the network one entered by nsenter).
    cat > "$1" <<'INIT'
#!/bin/sh
# Node init: mount the node's disk and kernel filesystems, switch root, exec sshd.
set -eu
dir=$1 name=$2 mode=$3 disk=$4 base=$5
r=$dir/root
mount --make-rprivate /
mkdir -p "$r"
if [ "$mode" = overlay ]; then
    mkdir -p "$dir/disk"
    mount -o loop "$disk" "$dir/disk"
    mkdir -p "$dir/disk/upper" "$dir/disk/work"
    mount -t overlay overlay -o "lowerdir=$base,upperdir=$dir/disk/upper,workdir=$dir/disk/work" "$r"
else
    mount -o loop "$disk" "$r"
fi
hostname "$name"
echo "$name" > "$r/etc/hostname"
mount -t proc proc "$r/proc"
mount -t sysfs sysfs "$r/sys"
mount -t tmpfs -o mode=755,size=16m devtmp "$r/dev"
for d in "null c 1 3" "zero c 1 5" "full c 1 7" "random c 1 8" "urandom c 1 9" "tty c 5 0"; do
    set -- $d
    mknod -m 666 "$r/dev/$1" "$2" "$3" "$4"
done
mkdir -p "$r/dev/pts" "$r/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$r/dev/pts"
ln -s pts/ptmx "$r/dev/ptmx"
ln -s /proc/self/fd "$r/dev/fd"
ln -s /proc/self/fd/0 "$r/dev/stdin"
ln -s /proc/self/fd/1 "$r/dev/stdout"
ln -s /proc/self/fd/2 "$r/dev/stderr"
mount -t tmpfs -o mode=755,size=64m run "$r/run"
mkdir -p "$r/run/sshd"
chmod 755 "$r/run/sshd"
# A second filesystem that one-filesystem captures must skip.
mkdir -p "$r/mnt/otherfs"
mount -t tmpfs -o size=1m otherfs "$r/mnt/otherfs"
echo "this file lives on another filesystem" > "$r/mnt/otherfs/MARKER-otherfs"
# Keys-only sshd, our host key, the bed's client key.
install -m 600 "$dir/ssh_host_ed25519_key" "$r/etc/ssh/xtb_host_ed25519_key"
install -m 644 "$dir/ssh_host_ed25519_key.pub" "$r/etc/ssh/xtb_host_ed25519_key.pub"
mkdir -p "$r/root/.ssh"
chmod 700 "$r/root/.ssh"
install -m 600 "$dir/authorized_keys" "$r/root/.ssh/authorized_keys"
cat > "$r/etc/ssh/xtb_sshd_config" <<CONF
Port 22
ListenAddress 0.0.0.0
HostKey /etc/ssh/xtb_host_ed25519_key
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PidFile none
MaxStartups 200:30:400
MaxSessions 64
Subsystem sftp /usr/lib/openssh/sftp-server
CONF
cd "$r"
mkdir -p .xtb-oldroot
pivot_root . .xtb-oldroot
cd /
umount -l /.xtb-oldroot
rmdir /.xtb-oldroot
exec /usr/sbin/sshd -D -e -f /etc/ssh/xtb_sshd_config
INIT
}

cmd_up() {
    local name=$1 idx=$2
    [[ "$idx" =~ ^[0-9]+$ ]] && [ "$idx" -le 244 ] || tb_die "INDEX must be 0..244, got $idx"
    [[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$ ]] || tb_die "bad node name: $name"
    tb_require ip unshare nsenter setsid mount losetup mkfs.ext4 ssh-keygen flock pgrep truncate
    local mode=${TB_MODE:-full}
    local keys=${TB_KEYS:-$TB_STATE/keys}
    local dir disk ns hv nv addr size base=""
    dir=$(dir_of "$idx"); disk=$(disk_of "$idx"); ns=$(netns_of "$idx")
    hv=$(hostveth_of "$idx"); nv=$(nodeveth_of "$idx"); addr=$(addr_of "$idx")

    teardown_index "$idx"
    mkdir -p "$dir" "$TB_DISKS" "$keys"
    echo "$name" > "$dir/name"

    # Disk.
    case "$mode" in
        full)
            local template
            template=$("$here/rootfs.sh" ext4)
            size=${TB_DISK_MB:-4096}
            cp --sparse=always "$template" "$disk"
            if [ "$((size * 1024 * 1024))" -gt "$(stat -c %s "$disk")" ]; then
                truncate -s "${size}M" "$disk"
                e2fsck -fy "$disk" >/dev/null 2>&1 || true
                resize2fs "$disk" >/dev/null 2>&1
            fi
            if [ "${TB_EDGECASES:-0}" = 1 ]; then
                mkdir -p "$dir/populate"
                mount -o loop "$disk" "$dir/populate"
                "$here/edgecases.sh" "$dir/populate" || { umount "$dir/populate"; exit 1; }
                umount "$dir/populate"
                rmdir "$dir/populate"
            fi
            ;;
        btrfs)
            # The same tree on a fresh btrfs (its top-level subvolume is /).
            local tarball
            tarball=$("$here/rootfs.sh" tar)
            size=${TB_DISK_MB:-4096}
            truncate -s "${size}M" "$disk"
            mkfs.btrfs -q -f "$disk" >/dev/null
            mkdir -p "$dir/populate"
            mount -o loop "$disk" "$dir/populate"
            tar -C "$dir/populate" -xpf "$tarball" --xattrs --xattrs-include='*' --acls --numeric-owner \
                || { umount "$dir/populate"; exit 1; }
            umount "$dir/populate"
            rmdir "$dir/populate"
            ;;
        overlay)
            [ "${TB_EDGECASES:-0}" = 1 ] && tb_die "TB_EDGECASES needs TB_MODE=full"
            base=$("$here/rootfs.sh" base)
            size=${TB_DISK_MB:-64}
            truncate -s "${size}M" "$disk"
            mkfs.ext4 -q -F -E nodiscard "$disk"
            ;;
        *) tb_die "TB_MODE must be full, btrfs or overlay" ;;
    esac

    # Keys: the bed's client key (shared by its nodes), a host key per node.
    (
        flock 7
        [ -s "$keys/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C "xcatd-testbed-client" -f "$keys/id_ed25519"
    ) 7>"$keys/.lock"
    cp "$keys/id_ed25519.pub" "$dir/authorized_keys"
    ssh-keygen -q -t ed25519 -N '' -C "$name" -f "$dir/ssh_host_ed25519_key"
    local hostline
    hostline="$addr $(cut -d' ' -f1,2 "$dir/ssh_host_ed25519_key.pub")"
    echo "$hostline" > "$dir/known_hosts"
    remove_known_hosts_line "$keys/known_hosts" "$addr"
    (
        flock 7
        echo "$hostline" >> "$keys/known_hosts"
    ) 7>"$keys/known_hosts.lock"

    # Network.
    ensure_bridge
    ip netns add "$ns"
    ip link add "$hv" type veth peer name "$nv"
    ip link set "$nv" netns "$ns"
    ip link set "$hv" master "$TB_BRIDGE" up
    ip -n "$ns" link set lo up
    ip -n "$ns" link set "$nv" name eth0
    ip -n "$ns" addr add "$addr/$TB_PREFIX" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default via "$TB_BRIDGE_ADDR"

    # Namespaces + init. setsid: the node must not die with our session;
    # no inherited descriptors beyond the standard three (lock files!).
    write_init "$dir/init.sh"
    setsid nsenter --net="/run/netns/$ns" \
        unshare --mount --uts --ipc --pid --fork --kill-child --propagation private \
        /bin/sh "$dir/init.sh" "$dir" "$name" "$mode" "$disk" "$base" \
        </dev/null >"$dir/log" 2>&1 7>&- 8>&- 9>&- &
    local upid=$! ustart init="" i
    ustart=$(starttime "$upid") || tb_die "node $name died at once: $(cat "$dir/log")"
    # nsenter execs unshare in place; its child is the node's PID 1.
    for i in $(seq 1 200); do
        init=$(cat "/proc/$upid/task/$upid/children" 2>/dev/null | awk '{print $1}')
        if [ -n "$init" ] && [ "$(readlink "/proc/$upid/exe" 2>/dev/null)" != "$(readlink -f "$(command -v nsenter)")" ]; then
            break
        fi
        init=""
        kill -0 "$upid" 2>/dev/null || break
        sleep 0.02
    done
    [ -n "$init" ] || tb_die "node $name did not start: $(cat "$dir/log")"

    cat > "$dir/env" <<ENV
TB_NAME=$name
TB_INDEX=$idx
TB_ADDR=$addr
TB_IDENTITY=$keys/id_ed25519
TB_KNOWN_HOSTS=$dir/known_hosts
TB_BED_KNOWN_HOSTS=$keys/known_hosts
TB_KEYS_DIR=$keys
TB_PID=$upid
TB_PID_START=$ustart
TB_INIT_PID=$init
TB_NETNS=$ns
TB_DIR=$dir
TB_DISK=$disk
TB_MODE=$mode
ENV

    # Wait for sshd's banner.
    for i in $(seq 1 250); do
        if timeout 1 bash -c "exec 3<>/dev/tcp/$addr/22 && head -c 4 <&3" 2>/dev/null | grep -q SSH-; then
            cat "$dir/env"
            return 0
        fi
        kill -0 "$upid" 2>/dev/null || break
        sleep 0.02
    done
    tb_die "sshd on node $name ($addr) did not answer: $(cat "$dir/log")"
}

cmd_down() {
    local key=$1 d idx=""
    if [[ "$key" =~ ^[0-9]+$ ]]; then
        idx=$key
    else
        for d in "$TB_STATE"/node-*; do
            [ -f "$d/name" ] && [ "$(cat "$d/name")" = "$key" ] && idx=${d##*/node-}
        done
        [ -n "$idx" ] || { echo "testbed: no node named $key" >&2; return 0; }
    fi
    teardown_index "$idx"
}

cmd_cleanup() {
    mkdir -p "$TB_STATE"
    exec 9>"$TB_STATE/bed.lock"
    # TB_BED_LOCK_HELD=1: the caller (the Rust fixture) holds it exclusively.
    if [ "${TB_BED_LOCK_HELD:-0}" != 1 ] && ! flock -n -x 9; then
        [ "${1:-}" = --force ] || tb_die "a test bed is in use (a process holds $TB_STATE/bed.lock); use --force to remove it anyway"
    fi
    local d idx p ns l
    for d in "$TB_STATE"/node-*; do
        [ -d "$d" ] || continue
        idx=${d##*/node-}
        teardown_index "$idx"
    done
    for p in $(pgrep -f -- "$TB_STATE/node-[0-9]+/init.sh" || true); do
        kill -KILL "$p" 2>/dev/null || true
    done
    for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^xtbns[0-9]+$/ { print $1 }'); do
        ip netns del "$ns" 2>/dev/null || true
    done
    for l in $(ip -o link show 2>/dev/null | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | grep -E '^xtb[hn][0-9]+$' || true); do
        ip link del "$l" 2>/dev/null || true
    done
    ip link del "$TB_BRIDGE" 2>/dev/null || true
    for p in $(awk -v a="$TB_STATE/" -v b="$TB_DISKS/" -v c="$TB_CACHE/mnt." \
        'index($5, a) == 1 || index($5, b) == 1 || index($5, c) == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
        umount -l "$p" 2>/dev/null || true
    done
    losetup -n -l -O NAME,BACK-FILE 2>/dev/null | while read -r l p; do
        case "$p" in "$TB_DISKS"/*|"$TB_CACHE"/*) losetup -d "$l" 2>/dev/null || true ;; esac
    done
    rm -rf "$TB_DISKS"
    rm -rf "$TB_STATE"/node-* "$TB_STATE/keys" "$TB_STATE/beds"
    # The PXE bed's guests, taps and bridge (xpxe*).
    "$here/pxe.sh" cleanup
    # The NFS servers (ganesha.nfsd) nfs.sh started.
    "$here/nfs.sh" cleanup
}

[ $# -ge 1 ] || usage
[ "$(id -u)" -eq 0 ] || tb_die "must run as root (network namespaces, loop mounts, pivot_root)"
case "$1" in
    up) [ $# -eq 3 ] || usage; cmd_up "$2" "$3" ;;
    down) [ $# -eq 2 ] || usage; cmd_down "$2" ;;
    cleanup) cmd_cleanup "${2:-}" ;;
    *) usage ;;
esac
