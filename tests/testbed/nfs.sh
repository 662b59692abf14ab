#!/bin/bash
# A private NFSv4 server for the test bed (nfs-ganesha, FSAL VFS): statelite
# guests mount its exports with the kernel's own NFS client.
#
#   nfs.sh start DIR ADDR PORT EXPORT...
#                       run ganesha.nfsd in the background, listening on
#                       ADDR:PORT only (TCP, NFSv4.0/4.1/4.2, no grace
#                       period); everything it writes lives in DIR: its
#                       config (xnfs-ganesha.conf), ganesha.log, ganesha.pid,
#                       the NFSv4 recovery directory. Returns once the server
#                       accepts TCP connections and says it is initialized
#                       (30 s at most, else the log's tail goes to stderr and
#                       it fails); prints nothing on stdout. A server already
#                       running from DIR is stopped first.
#                       EXPORT is PATH:PSEUDO:ro|rw: the directory PATH, seen
#                       by clients at PSEUDO (absolute, unique), read-only or
#                       read-write, root not squashed, AUTH_SYS; Export_Id 1,
#                       2, ... in the order given. A guest mounts it with
#                       mount(2) type nfs4, source ADDR:PSEUDO and data
#                       "vers=4.1,addr=ADDR,port=PORT" (vers 4.0 and 4.2
#                       work too; the kernel finds clientaddr= itself)
#   nfs.sh stop DIR     stop the server started from DIR (if its pid file
#                       still names a ganesha.nfsd of DIR) and wait for it
#   nfs.sh cleanup      stop every server this script started, for what a
#                       killed run left behind (node.sh cleanup calls it too)
#
# Settings (environment): NFS_LEASE, the NFSv4 lease in seconds (default 15).
set -euo pipefail

NFS_CONF_NAME=xnfs-ganesha.conf
GANESHA=/usr/bin/ganesha.nfsd

die() {
    echo "nfs server: $*" >&2
    exit 1
}

require() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (ganesha.nfsd serves files of any owner)"
    if [ ! -x "$GANESHA" ] || [ ! -e /usr/lib/x86_64-linux-gnu/ganesha/libfsalvfs.so ]; then
        die "missing ganesha.nfsd or its VFS FSAL; install: apt-get install -y nfs-ganesha nfs-ganesha-vfs (scripts/setup-machine)"
    fi
}

# True if PID is a ganesha.nfsd running this script's config CONF (any
# config of this script if CONF is empty). /proc/PID/cmdline is NUL-separated.
is_ours() {
    local cmd
    cmd=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
    if [ -n "${2:-}" ]; then
        [[ "$cmd" == "$GANESHA "*" -f $2 "* ]]
    else
        [[ "$cmd" == "$GANESHA "*" -f /"*"/$NFS_CONF_NAME "* ]]
    fi
}

# SIGTERM (ganesha shuts down cleanly and unregisters), SIGKILL after 10 s.
kill_wait() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 1 200); do
        [ -d "/proc/$pid" ] || return 0
        # A zombie its parent has yet to reap is gone as far as we care.
        grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null && return 0
        [ "$i" -ne 100 ] || kill -KILL "$pid" 2>/dev/null || true
        sleep 0.1
    done
    die "ganesha.nfsd $pid does not go away"
}

cmd_stop() {
    local dir=$1 pid
    pid=$(cat "$dir/ganesha.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && is_ours "$pid" "$dir/$NFS_CONF_NAME"; then
        kill_wait "$pid"
    fi
    rm -f "$dir/ganesha.pid"
}

cmd_cleanup() {
    local pid
    for pid in $(pgrep -f -- "^$GANESHA .*/$NFS_CONF_NAME( |\$)" || true); do
        is_ours "$pid" && kill_wait "$pid"
    done
    return 0
}

# One EXPORT block from PATH:PSEUDO:ro|rw (PATH itself may hold a colon).
export_block() {
    local id=$1 spec=$2 path pseudo mode access
    mode=${spec##*:}
    spec=${spec%:*}
    pseudo=${spec##*:}
    path=${spec%:*}
    case "$mode" in ro) access=RO ;; rw) access=RW ;; *) die "EXPORT $2: mode must be ro or rw" ;; esac
    [ "$path" != "$spec" ] || die "EXPORT $2: want PATH:PSEUDO:ro|rw"
    [ -d "$path" ] || die "EXPORT $2: $path is not a directory"
    path=$(realpath "$path")
    [[ "$pseudo" == /* ]] || die "EXPORT $2: PSEUDO must be absolute"
    [[ "$path$pseudo" != *[\"$'\n']* ]] || die "EXPORT $2: no quotes or newlines, please"
    # Protocols and Transports repeat the core limits: an export without
    # them would also offer NFSv3/UDP (the core section refuses them anyway).
    cat <<EOF
EXPORT {
    Export_Id = $id;
    Path = "$path";
    Pseudo = "$pseudo";
    Access_Type = $access;
    Squash = No_Root_Squash;
    SecType = sys;
    Protocols = 4;
    Transports = TCP;
    # Revalidate attributes on every access: the tests change exported
    # files behind the server's back, and a cached (60 s) view would lie.
    Attr_Expiration_Time = 0;
    FSAL { Name = VFS; }
}
EOF
}

cmd_start() {
    local dir=$1 addr=$2 port=$3 i pid
    shift 3
    if ! [[ "$port" =~ ^[0-9]{1,5}$ ]] || ((10#$port < 1 || 10#$port > 65535)); then
        die "PORT must be 1..65535, got $port"
    fi
    [[ "$addr" =~ ^[0-9]+(\.[0-9]+){3}$ ]] || die "ADDR must be an IPv4 address, got $addr"
    [[ "${NFS_LEASE:-15}" =~ ^[0-9]+$ ]] || die "NFS_LEASE must be a number of seconds"
    mkdir -p "$dir/recovery" "$dir/krb5"
    dir=$(realpath "$dir")
    [[ "$dir" != *[\"$'\n ']* ]] || die "DIR must not hold quotes, newlines or blanks"
    local conf=$dir/$NFS_CONF_NAME log=$dir/ganesha.log spec
    {
        cat <<EOF
# Written by nfs.sh start: an NFSv4-only test server on $addr:$port.
NFS_CORE_PARAM {
    Bind_addr = $addr;
    NFS_Port = $port;
    # NFSv4 only: no MOUNT, NLM (locking is part of v4), RQUOTA, nor UDP.
    # Ganesha 4.3 still tries to register NFS with a portmapper on
    # localhost; without one it logs "Cannot register" (MAJ) and goes on.
    Protocols = 4;
    Enable_NLM = false;
    Enable_RQUOTA = false;
    Enable_UDP = false;
    # One server, not a cluster node (whose records carry a node id).
    Clustered = false;
}
NFSv4 {
    # The tests mount right after start: no 90 s grace period, and a
    # lease short enough that a killed guest's state soon expires, long
    # enough that a guest under emulation renews it in time.
    Graceless = true;
    Lease_Lifetime = ${NFS_LEASE:-15};
    RecoveryBackend = fs;
    RecoveryRoot = "$dir/recovery";
    # Owners go over the wire as numbers: no idmapd, no domain to agree on.
    Only_Numeric_Owners = true;
}
NFS_KRB5 {
    Active_krb5 = false;
    # The default, /var/run/ganesha, is created even without Kerberos.
    CCacheDir = "$dir/krb5";
}
EOF
        i=0
        for spec in "$@"; do
            i=$((i + 1))
            export_block "$i" "$spec"
        done
    } >"$conf.new"
    # Only with a valid config written: stop the server of an earlier start.
    cmd_stop "$dir"
    mv "$conf.new" "$conf"
    : >"$log"
    # Ganesha is built with D-Bus and has no switch to turn it off: point
    # libdbus at a socket that is not there, so it fails alike everywhere
    # (harmless "dbus_bus_get failed" CRIT lines) and never claims a name
    # on a host's system bus. BLKID_FILE: libblkid's cache (the VFS FSAL
    # asks for file system UUIDs), else /run/blkid/blkid.tab. Left outside
    # DIR: a lock test file in /tmp (fixed path, removed at once) and
    # portmapper registration attempts on localhost (refused without one).
    DBUS_SYSTEM_BUS_ADDRESS=unix:path=$dir/no-dbus BLKID_FILE=$dir/blkid.tab \
        "$GANESHA" -F -f "$conf" -L "$log" -p "$dir/ganesha.pid" -N NIV_EVENT \
        </dev/null >>"$dir/ganesha.out" 2>&1 &
    pid=$!
    for i in $(seq 1 300); do
        [ -d "/proc/$pid" ] || { tail -n 30 "$log" "$dir/ganesha.out" >&2; die "ganesha.nfsd exited at start"; }
        if grep -q 'NFS SERVER INITIALIZED' "$log" &&
            timeout 1 bash -c "exec 3<>/dev/tcp/$addr/$port" 2>/dev/null; then
            # Ganesha drops an export it cannot set up (a duplicate Pseudo,
            # a file system without file handles, such as overlayfs) and
            # serves the rest.
            local bad=':(CONFIG|EXPORT|FSAL) :(CRIT|MAJ|FATAL) :'
            grep -Eq "$bad" "$log" || return 0
            grep -E "$bad" "$log" >&2
            kill_wait "$pid"
            die "ganesha.nfsd rejected part of $conf"
        fi
        sleep 0.1
    done
    tail -n 30 "$log" >&2
    kill_wait "$pid"
    die "ganesha.nfsd does not accept connections on $addr:$port after 30 s"
}

[ $# -ge 1 ] || die "usage: nfs.sh start DIR ADDR PORT EXPORT... | stop DIR | cleanup"
case "$1" in
    start) [ $# -ge 5 ] || die "usage: nfs.sh start DIR ADDR PORT PATH:PSEUDO:ro|rw..."; require; cmd_start "${@:2}" ;;
    stop | cleanup) [ "$(id -u)" -eq 0 ] || die "must run as root" ;;&
    stop) [ $# -eq 2 ] || die "usage: nfs.sh stop DIR"; [ ! -d "$2" ] || cmd_stop "$(realpath "$2")" ;;
    cleanup) [ $# -eq 1 ] || die "usage: nfs.sh cleanup"; cmd_cleanup ;;
    *) die "unknown command $1" ;;
esac
