# Shared settings of the test bed scripts (sourced, not executed).
# Everything the bed creates carries the "xtb" prefix or lives under the
# directories below, so a cleanup can find what a killed run left behind.

# Built root filesystems (cached across runs, keyed by the package list).
TB_CACHE=${TB_CACHE:-/var/cache/xcatd-rs-testbed}
# Lock files, per-node state (env files, keys, pids). Removed by cleanup.
TB_STATE=${TB_STATE:-/run/xcatd-testbed}
# Disk images of running nodes (kept off /run, which may be a small tmpfs).
TB_DISKS=${TB_DISKS:-/var/tmp/xcatd-testbed}
TB_BRIDGE=xtbbr0
TB_BRIDGE_ADDR=10.99.0.1
TB_PREFIX=24
TB_SUITE=bookworm
# Packages on top of minbase (gzip and tar are part of minbase).
TB_PACKAGES="systemd-sysv,udev,kmod,openssh-server,iproute2,zstd,procps,btrfs-progs,lvm2,thin-provisioning-tools"

tb_die() {
    echo "testbed: $*" >&2
    exit 1
}

# Fail loudly when not root or when a tool is missing: a test bed that
# cannot be built must never turn into a skipped test.
tb_require() {
    [ "$(id -u)" -eq 0 ] || tb_die "must run as root (network namespaces, loop mounts, pivot_root)"
    local t missing=()
    for t in "$@"; do
        command -v "$t" >/dev/null 2>&1 || missing+=("$t")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        tb_die "missing tools: ${missing[*]}; install: apt-get install -y --no-install-recommends openssh-server openssh-client mmdebstrap zstd kmod libcap2-bin attr acl iproute2 util-linux e2fsprogs"
    fi
}
