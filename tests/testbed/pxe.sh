#!/bin/bash
# The PXE test bed: a bridge with the boot server's address and diskless
# qemu guests (TCG, no KVM) on tap devices in it, booting from the network.
#
#   pxe.sh up                 create the bridge xpxebr0 with 10.99.60.1/24
#   pxe.sh guest N MAC FIRMWARE LOG
#                             run guest N (0..9) on tap xpxetapN with MAC, its
#                             serial console written to LOG; runs in the
#                             foreground until qemu exits or is killed, and
#                             removes its tap (and its OVMF copy) on every path.
#                             FIRMWARE: bios (SeaBIOS + iPXE's pxe-virtio ROM:
#                             an iPXE client), uefi (OVMF + iPXE's efi-virtio
#                             ROM, which boots as an iPXE client itself), or
#                             uefi-pxe (OVMF without an option ROM: its own
#                             PXE client, which loads xcat/xnba.efi by TFTP);
#                             PXE_GUEST_MEM (MiB, default 512) and
#                             PXE_GUEST_CPUS (default 1) size it;
#                             PXE_GUEST_DISK names a raw disk image it
#                             gets as a virtio disk
#   pxe.sh down               stop every guest of the bed, remove the taps and
#                             the bridge
#   pxe.sh cleanup            the same, for what a killed run left behind
#                             (node.sh cleanup calls it too)
#
# Everything the bed creates is named xpxe* (links) or lives under
# $PXE_STATE (pid files, OVMF copies), so a cleanup finds it.
set -euo pipefail

PXE_BRIDGE=xpxebr0
PXE_ADDR=10.99.60.1
PXE_PREFIX=24
PXE_STATE=${PXE_STATE:-/run/xcatd-pxebed}
PXE_BIOS_ROM=/usr/lib/ipxe/qemu/pxe-virtio.rom
PXE_EFI_ROM=/usr/lib/ipxe/qemu/efi-virtio.rom
PXE_OVMF=/usr/share/ovmf/OVMF.fd

die() {
    echo "pxe bed: $*" >&2
    exit 1
}

require() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (bridge and tap devices)"
    local t
    for t in ip qemu-system-x86_64 flock; do
        command -v "$t" >/dev/null 2>&1 || die "missing $t; install: apt-get install -y qemu-system-x86 ipxe-qemu ovmf iproute2"
    done
    for t in "$PXE_BIOS_ROM" "$PXE_EFI_ROM" "$PXE_OVMF"; do
        [ -r "$t" ] || die "missing $t; install: apt-get install -y ipxe-qemu ovmf"
    done
}

cmd_up() {
    mkdir -p "$PXE_STATE"
    (
        flock 7
        if ! ip link show "$PXE_BRIDGE" >/dev/null 2>&1; then
            ip link add "$PXE_BRIDGE" type bridge
            # No STP and no forwarding delay: a guest's first DHCP packet
            # must not be dropped while the port is "learning".
            ip link set "$PXE_BRIDGE" type bridge stp_state 0 forward_delay 0
            ip addr add "$PXE_ADDR/$PXE_PREFIX" dev "$PXE_BRIDGE"
        fi
        ip link set "$PXE_BRIDGE" up
    ) 7>"$PXE_STATE/net.lock"
}

# Kill the qemu recorded in a pid file if it is still that process.
kill_pidfile() {
    local f=$1 pid
    [ -f "$f" ] || return 0
    pid=$(cat "$f" 2>/dev/null || true)
    # The arguments in /proc/PID/cmdline are separated by NUL bytes.
    if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "-name xpxe"; then
        kill -KILL "$pid" 2>/dev/null || true
        local i
        for i in $(seq 1 100); do
            # Gone, or a zombie its parent has yet to reap.
            grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null && break
            [ -d "/proc/$pid" ] || break
            sleep 0.05
        done
    fi
    rm -f "$f"
}

cmd_guest() {
    local n=$1 mac=$2 firmware=$3 log=$4
    [[ "$n" =~ ^[0-9]$ ]] || die "guest number must be 0..9, got $n"
    [[ "$mac" =~ ^([0-9a-f]{2}:){5}[0-9a-f]{2}$ ]] || die "bad MAC $mac (lower-case hex)"
    ip link show "$PXE_BRIDGE" >/dev/null 2>&1 || die "no bridge: run pxe.sh up first"
    local tap=xpxetap$n pidfile=$PXE_STATE/guest-$n.pid ovmf=$PXE_STATE/ovmf-$n.fd
    kill_pidfile "$pidfile"
    ip link del "$tap" 2>/dev/null || true
    trap 'kill_pidfile "$pidfile"; ip link del "$tap" 2>/dev/null || true; rm -f "$ovmf"' EXIT
    trap 'exit 1' INT TERM HUP
    ip tuntap add dev "$tap" mode tap
    ip link set "$tap" master "$PXE_BRIDGE" up
    # disable-legacy=on: the virtio NIC is the modern device (1af4:1041),
    # the one Debian's pxe-virtio and efi-virtio ROMs are built for; as the
    # default transitional device SeaBIOS never runs the ROM.
    # PXE_GUEST_MEM: the guest's RAM in MiB (512 unless the caller says).
    local args=(-name "xpxe$n" -machine accel=tcg -m "${PXE_GUEST_MEM:-512}" -smp "${PXE_GUEST_CPUS:-1}" -nographic -no-reboot
        -serial "file:$log" -monitor none -display none
        -netdev "tap,id=net0,ifname=$tap,script=no,downscript=no")
    case "$firmware" in
        bios) args+=(-device "virtio-net-pci,netdev=net0,mac=$mac,romfile=$PXE_BIOS_ROM,bootindex=1,disable-legacy=on") ;;
        uefi | uefi-pxe)
            # OVMF.fd is one image of code and variables; qemu wants it
            # writable, so each guest gets its own copy.
            cp "$PXE_OVMF" "$ovmf"
            local rom=$PXE_EFI_ROM
            [ "$firmware" = uefi ] || rom=
            args+=(-drive "if=pflash,format=raw,file=$ovmf"
                -device "virtio-net-pci,netdev=net0,mac=$mac,romfile=$rom,bootindex=1,disable-legacy=on") ;;
        *) die "firmware must be bios, uefi or uefi-pxe, got $firmware" ;;
    esac
    # PXE_GUEST_DISK: a disk image file the guest gets as a virtio disk
    # (statelite's localdisk); it still boots from the network.
    [ -z "${PXE_GUEST_DISK:-}" ] ||
        args+=(-drive "if=virtio,format=raw,file=$PXE_GUEST_DISK")
    args+=(-boot n -pidfile "$pidfile")
    qemu-system-x86_64 "${args[@]}" </dev/null >>"$log.qemu" 2>&1 &
    wait $! || true
}

cmd_down() {
    local f l
    for f in "$PXE_STATE"/guest-*.pid; do
        [ -e "$f" ] && kill_pidfile "$f"
    done
    for l in $(ip -o link show 2>/dev/null | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | grep -E '^xpxe' || true); do
        ip link del "$l" 2>/dev/null || true
    done
    rm -rf "$PXE_STATE"
}

[ $# -ge 1 ] || die "usage: pxe.sh up | guest N MAC bios|uefi|uefi-pxe LOG | down | cleanup"
case "$1" in
    up) [ $# -eq 1 ] || die "usage: pxe.sh up"; require; cmd_up ;;
    guest) [ $# -eq 5 ] || die "usage: pxe.sh guest N MAC bios|uefi|uefi-pxe LOG"; require; cmd_guest "$2" "$3" "$4" "$5" ;;
    down | cleanup) [ "$(id -u)" -eq 0 ] || die "must run as root"; cmd_down ;;
    *) die "unknown command $1" ;;
esac
