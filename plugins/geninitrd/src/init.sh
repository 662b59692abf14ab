#!/bin/sh
# /init of the stateless initrd, written by geninitrd; busybox sh runs it as PID 1.
#
# It loads the image kernel's drivers, brings up the boot NIC by DHCP, has
# xcat-netinit fetch, check and unpack the image into /newroot (or mount a
# statelite node's NFS root there), lays a statelite node's paths and
# /rootfs-additions over it and switches to the image's own init.
#
# PID 1 must never exit: the kernel would panic and say nothing useful. So no step
# here is fatal and there is no `set -e`: every failure prints one line on the
# console, "xcat-init: <what>: <why>; <what to do>", then waits and tries again, or
# opens a rescue shell and tries again once the shell is left.

export PATH=/sbin:/bin:/usr/sbin:/usr/bin
NEWROOT=/newroot
MODULES=/lib/modules
UDHCPC_SCRIPT=/usr/share/udhcpc/default.script

# The kernel gives init the console as stdin, stdout and stderr.
say() {
    echo "xcat-init: $*" >&2
}

rescue() {
    say "opening a rescue shell; leave it (exit) to try again"
    setsid cttyhack sh
}

# retry_after VAR WHAT WHY TODO: the failure's line, then a wait of $VAR seconds;
# each wait doubles the next, up to 60 s. The network's and the image's waits are
# counted apart, so a network that comes and goes does not reset the image's.
net_delay=5
image_delay=5
retry_after() {
    eval "wait_s=\$$1"
    say "$2: $3; $4; retrying in ${wait_s}s"
    sleep "$wait_s"
    wait_s=$((wait_s * 2))
    [ "$wait_s" -le 60 ] || wait_s=60
    eval "$1=$wait_s"
}

# mount_fs TYPE DIR [OPTIONS]: a failure leaves a line and a rescue shell.
mount_fs() {
    mkdir -p "$2"
    mount -t "$1" ${3:+-o "$3"} "$1" "$2" && return 0
    say "mounting $1 on $2: failed; the kernel lacks $1 support or the initrd is damaged (geninitrd rebuilds it)"
    rescue
}

mount_api() {
    mount_fs proc /proc
    mount_fs sysfs /sys
    # devtmpfs: the kernel keeps the device nodes of the drivers loaded below.
    mkdir -p /dev
    mount -t devtmpfs devtmpfs /dev ||
        say "mounting devtmpfs on /dev: failed; the kernel lacks CONFIG_DEVTMPFS, so no device nodes appear"
    mount_fs tmpfs /run mode=0755,nosuid,nodev
    # Every applet as a command of its own, for the rescue shell.
    busybox --install -s 2>/dev/null
}

# Loads the modules in load.order, each after what it needs (modules.dep lists
# it). A module for hardware or a hypervisor this node lacks refuses with "No
# such device": that is expected and said once, as a count. Any other failure is
# a line; what needs a module that did not load is not tried.
load_modules() {
    kver=$(uname -r)
    dir=$MODULES/$kver
    if [ ! -f "$dir/load.order" ]; then
        say "modules: this initrd has none for the running kernel $kver (it has: $(cd "$MODULES" && echo *)); boot the image's kernel with it (run geninitrd, then nodeset)"
        return
    fi
    loaded=0
    absent=0
    not_here=" "
    broken=" "
    while read -r m; do
        [ -n "$m" ] || continue
        needs=""
        line=$(grep "^$m:" "$dir/modules.dep")
        for d in ${line#*:}; do
            case "$not_here$broken" in *" $d "*) needs=$d && break ;; esac
        done
        if [ -n "$needs" ]; then
            case $not_here in
            *" $needs "*) not_here="$not_here$m " && absent=$((absent + 1)) ;;
            *) broken="$broken$m "
                say "module ${m##*/}: not loaded: it needs ${needs##*/}, which did not load; its devices stay unavailable" ;;
            esac
            continue
        fi
        if out=$(insmod "$dir/$m" 2>&1); then
            loaded=$((loaded + 1))
            continue
        fi
        case $out in
        *"File exists"*) loaded=$((loaded + 1)) ;;
        *"No such device"*) not_here="$not_here$m " && absent=$((absent + 1)) ;;
        *) broken="$broken$m "
            say "module ${m##*/}: cannot load (${out##*: }); its devices stay unavailable" ;;
        esac
    done <"$dir/load.order"
    if [ "$absent" -gt 0 ]; then
        say "loaded $loaded modules for kernel $kver ($absent for hardware or hypervisors this node lacks)"
    else
        say "loaded $loaded modules for kernel $kver"
    fi
}

# Every interface up (a link that is down reports no carrier).
links_up() {
    for d in /sys/class/net/*; do
        [ -e "$d" ] && ip link set "${d##*/}" up 2>/dev/null
    done
}

find_nic() {
    while :; do
        links_up
        iface=$(xcat-netinit nic) && [ -n "$iface" ] && return
        retry_after net_delay "boot interface" "none found (see xcat-netinit's line above)" \
            "check the node's cable and that its NIC driver is in the initrd (linuximage.netdrivers, then geninitrd)"
    done
}

# DHCP on the boot interface; udhcpc's hook sets address, routes and resolv.conf
# and leaves the address in /tmp/lease.<iface>. udhcpc quits once it has the lease:
# the image's own network service takes the interface over.
dhcp() {
    while :; do
        rm -f "/tmp/lease.$iface"
        if udhcpc -i "$iface" -s "$UDHCPC_SCRIPT" -q -n -t 5 -T 2 >/tmp/udhcpc.log 2>&1 &&
            [ -s "/tmp/lease.$iface" ]; then
            say "network up on $iface ($(cat "/tmp/lease.$iface"))"
            net_delay=5
            return
        fi
        retry_after net_delay "DHCP on $iface" "no lease ($(tail -n 1 /tmp/udhcpc.log))" \
            "check that the DHCP server answers this node's MAC (makedhcp)"
    done
}

# The node's name (NODE=) as the host name and as the NFS client's unique id,
# before any NFS mount: the kernel's NFSv4 client names itself by them, and
# nodes booting under one name (the initrd's) would take each other's open
# files and locks on the server.
name_node() {
    for w in $(cat /proc/cmdline); do
        case $w in
        NODE=*)
            hostname "${w#NODE=}"
            [ -w /sys/module/nfs/parameters/nfs4_unique_id ] &&
                echo "${w#NODE=}" >/sys/module/nfs/parameters/nfs4_unique_id
            ;;
        esac
    done
}

is_mounted() {
    grep -q " $1 " /proc/mounts
}

# xCAT's install monitor: "installstatus <status>" to XCAT='s host on port
# XCATIPORT= (else 3002), unless nonodestatus. Best effort, a few seconds at most:
# a status report never holds up the boot.
report_status() {
    master= port=3002
    for w in $(cat /proc/cmdline); do
        case $w in
        XCAT=*) master=${w#XCAT=}; master=${master%%:*} ;;
        XCATIPORT=*) port=${w#XCATIPORT=} ;;
        nonodestatus) return 0 ;;
        esac
    done
    [ -n "$master" ] || return 0
    printf 'installstatus %s\n' "$1" | timeout 5 nc "$master" "$port" >/dev/null 2>&1 ||
        say "status: the install monitor $master:$port did not take \"$1\"; nodelist.status keeps its value"
}

# has_word PREFIX: a word of the kernel command line starts with PREFIX.
has_word() {
    case " $(cat /proc/cmdline) " in *" $1"*) return 0 ;; esac
    return 1
}

# One try of xcat-netinit boot (or, for a statelite NFS root, nfsroot); its own
# lines say what went wrong. Returns 0 when the image is in $NEWROOT.
fetch_image() {
    report_status netbooting
    mkdir -p "$NEWROOT"
    if has_word root=nfs:; then
        say "mounting the NFS root on $NEWROOT"
        xcat-netinit nfsroot "$NEWROOT"
    else
        say "fetching the image into $NEWROOT"
        xcat-netinit boot "$NEWROOT"
    fi
    rc=$?
    [ "$rc" = 0 ] && return 0
    # A later try starts from an empty mount point.
    is_mounted "$NEWROOT" && umount -l "$NEWROOT"
    case $rc in
    10) retry_after image_delay "image" "refused (see xcat-netinit's line above)" \
        "repack it on the server (packimage) or fix its URL (nodeset)" ;;
    11) say "image: too large for this node's RAM (see xcat-netinit's line above); give the node more RAM, pack the image smaller (packimage -m squashfs) or set rootlimit="
        rescue ;;
    12) say "kernel command line: unusable (see xcat-netinit's line above); fix imgurl= or rootlimit= (nodeset, bootparams.addkcmdline)"
        rescue ;;
    *) retry_after image_delay "image" "xcat-netinit boot failed (exit $rc)" "see its lines above" ;;
    esac
    return 1
}

# A statelite node (nodeset writes STATEMNT=, even empty): its writable and
# persistent paths over the new root. Only this step is tried again when it
# fails (an NFS server or xcatd not answering yet): the root stays.
statelite_paths() {
    has_word STATEMNT= || return 0
    state_delay=5
    while :; do
        xcat-netinit statelite "$NEWROOT"
        rc=$?
        [ "$rc" = 0 ] && return 0
        if [ "$rc" = 12 ]; then
            say "kernel command line: unusable for statelite (see xcat-netinit's line above); fix statelite.statemnt or run nodeset again"
            rescue
        else
            retry_after state_delay "statelite" "its paths are not ready (see xcat-netinit's lines above)" \
                "check the NFS server of statelite.statemnt and litetree, and that xcatd answers"
        fi
    done
}

move_api() {
    for m in proc dev sys run; do
        mkdir -p "$1/$m" 2>/dev/null
        mount --move "/$m" "$1/$m" || say "moving /$m: failed; the image's init mounts its own"
    done
}

# The rootfs additions, the API filesystems moved into the image (the image's
# init finds /dev, /proc, /sys, /run as systemd's own initrd leaves them), then
# switch_root, which frees the initrd's files. Returns only when the image has no
# init, with everything moved back.
switch_to_image() {
    # an NFS root has them already, overlaid read-only (xcat-netinit nfsroot)
    has_word root=nfs: || cp -a /rootfs-additions/. "$NEWROOT/" ||
        say "rootfs additions: copy failed; the node boots without the netboot DHCP and SSH host key units"
    move_api "$NEWROOT"
    # Looked up inside the image: its /sbin/init is usually a link (to systemd).
    if ! chroot "$NEWROOT" test -x /sbin/init; then
        for m in proc dev sys run; do
            mount --move "$NEWROOT/$m" "/$m"
        done
        say "image: it has no /sbin/init; install an init (systemd) in the image, then packimage"
        rescue
        return 1
    fi
    say "switching to the image's init"
    exec switch_root "$NEWROOT" /sbin/init
}

main() {
    mount_api
    load_modules
    while :; do
        find_nic
        dhcp
        name_node
        fetch_image && statelite_paths && switch_to_image
    done
}

main
