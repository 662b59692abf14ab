//! A consistent capture: what the node's tree looked like at one moment.
//!
//! * **Snapshots.** Every captured btrfs filesystem is read from a read-only
//!   snapshot taken when the capture starts (`<mount>/.xcatd-snapshot-<id>`,
//!   and one for each nested subvolume that is not a mount point of its own:
//!   a snapshot shows those as empty directories). In a private mount
//!   namespace on the node the snapshots, and the live filesystems that are
//!   not snapshotted, are bind-mounted into one view of the tree, which
//!   `find | tar` read as they read `/`. The namespace dies with the script;
//!   the snapshots are deleted when it exits, also when it fails or is cut
//!   off (the exit trap); one it could not delete is named in a warning.
//!   After a failed or cancelled capture the daemon also deletes what is
//!   left of them ([`remove_left`]): the trap cannot run when the script is
//!   SIGKILLed (sshd killed, the node's OOM killer).
//! * **The package manager's lock** (dpkg's `lock-frontend` and `lock`,
//!   rpm's `.rpm.lock`) is taken before the read, so no package is
//!   half-installed in the image: with snapshots only until they are taken,
//!   without for the whole read. Both are POSIX record locks (`fcntl`),
//!   which `flock(1)` does not take: the node's perl (Debian's perl-base)
//!   or python3 (on rpm systems) holds them.
//!
//! Without snapshots the read stays live and [`crate::settle`] re-reads
//! what changed while it was read.

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::{info, warn};
use xcat_image::report::ConsistencyReport;
use xcat_plugin::{Context, Responder};
use xcat_remote::{shell_join, shell_quote, Remote};

use crate::churn::PreludeNote as Said;
use crate::error::CaptureError;
use crate::preflight::{Mount, Preflight};

/// The start of every snapshot's name (also excluded from every capture).
pub const SNAPSHOT_PREFIX: &str = ".xcatd-snapshot-";

/// How long the node may wait for the package manager's lock.
pub const LOCK_WAIT_SECS: u64 = 120;

/// How long the backstop may take (it retries a busy snapshot for 10 s).
const BACKSTOP_TIMEOUT: Duration = Duration::from_secs(60);

/// After a failed or cancelled capture: delete the snapshots it left on
/// the node, saying so. Runs without the capture's cancellation (it runs
/// because of it) and never fails: the client may be gone, the node too.
pub async fn remove_left(
    c: &Consistency,
    ctx: &Context,
    (node, addr): (&str, &str),
    out: &Responder,
) {
    let Some(script) = c.backstop_script() else {
        return;
    };
    let remote = Remote::new(ctx.settings.ssh.clone());
    let cmd = crate::pipeline::command(&script);
    let ran = remote.run(node, addr, &cmd, Some(BACKSTOP_TIMEOUT)).await;
    let o = match ran {
        Ok(o) => o,
        Err(e) => {
            warn!(%node, error = %e, "could not check for snapshots left by the failed capture");
            return;
        }
    };
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        if let Some(said) = line.strip_prefix("@@snapshot-deleted ") {
            let (d, _) = snapshot_and_removal(said);
            info!(%node, snapshot = %d, "deleted a snapshot the failed capture left");
            let _ = out
                .info(format!(
                    "capimage: deleted the snapshot {d} the capture left on {node}"
                ))
                .await;
        } else if let Some(said) = line.strip_prefix("@@snapshot-left ") {
            let (d, removal) = snapshot_and_removal(said);
            warn!(%node, snapshot = %d, "could not delete a snapshot the failed capture left");
            let _ = out
                .warning(format!(
                    "capimage: {node}: the snapshot {d} is left; delete it with `{removal}`"
                ))
                .await;
        }
    }
}

/// `--snapshot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotMode {
    /// Snapshot what can be; read the rest live.
    Auto,
    /// Snapshot every captured filesystem, or fail before reading.
    Require,
    /// Read everything live.
    Off,
}

impl SnapshotMode {
    pub fn name(self) -> &'static str {
        match self {
            SnapshotMode::Auto => "auto",
            SnapshotMode::Require => "require",
            SnapshotMode::Off => "off",
        }
    }

    pub fn parse(v: &str) -> Result<SnapshotMode, String> {
        match v {
            "auto" => Ok(SnapshotMode::Auto),
            "require" => Ok(SnapshotMode::Require),
            "off" => Ok(SnapshotMode::Off),
            other => Err(format!(
                "unknown --snapshot {other:?} (auto, require or off)"
            )),
        }
    }
}

/// How this capture reads the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consistency {
    pub mode: SnapshotMode,
    /// The snapshots' name (unique to this capture).
    pub name: String,
    /// The captured filesystems read from snapshots, shallowest first.
    pub snaps: Vec<Snapshot>,
    /// Every captured mount point but `/`, shallowest first: where the view
    /// needs a bind mount.
    pub mounts: Vec<String>,
}

/// One captured filesystem read from a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub point: String,
    pub kind: SnapshotKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotKind {
    /// A read-only btrfs snapshot beside the subvolume.
    Btrfs,
    /// An LVM snapshot of `vg/lv`, mounted read-only; `cow`: the bytes a
    /// classic snapshot gets for the blocks written meanwhile (None: a thin
    /// snapshot, which takes them from its pool).
    Lvm {
        vg: String,
        lv: String,
        fstype: String,
        cow: Option<u64>,
    },
}

/// A classic LVM snapshot gets a quarter of its volume's size, at least
/// this much (never more than the volume itself, nor than the volume
/// group has free).
const LVM_COW_MIN: u64 = 512 << 20;

/// Fewer free bytes than this in the volume group: no classic snapshot.
const LVM_COW_FLOOR: u64 = 16 << 20;

/// Filesystems an LVM snapshot is mounted from (beside the live one).
const LVM_FS: &[&str] = &["ext2", "ext3", "ext4", "xfs"];

impl Consistency {
    /// Decide from the options and the node's mounts and tools; with
    /// `require`, fail now when some captured filesystem cannot be
    /// snapshotted.
    pub fn plan(mode: SnapshotMode, pf: &Preflight, node: &str) -> Result<Self, CaptureError> {
        let mut captured = pf.captured();
        captured.sort_by_key(|m| depth(&m.point));
        let mut free: BTreeMap<String, u64> = BTreeMap::new();
        let mut snaps = Vec::new();
        let mut live = Vec::new();
        for m in captured.iter().filter(|_| mode != SnapshotMode::Off) {
            match snapshot_of(m, pf, &mut free) {
                Ok(kind) => snaps.push(Snapshot {
                    point: m.point.clone(),
                    kind,
                }),
                Err(why) => live.push(format!("{} ({why})", m.point)),
            }
        }
        if mode == SnapshotMode::Require && !live.is_empty() {
            return Err(CaptureError::Snapshot {
                node: node.to_string(),
                why: format!("cannot snapshot {}", live.join(", ")),
            });
        }
        let mounts = captured
            .into_iter()
            .map(|m| m.point.clone())
            .filter(|p| p != "/")
            .collect();
        Ok(Consistency {
            mode,
            name: snapshot_name(),
            snaps,
            mounts,
        })
    }

    /// Whether any filesystem is read from a snapshot.
    pub fn snapshots(&self) -> bool {
        !self.snaps.is_empty()
    }

    /// Exclusion patterns for snapshots (this capture's or a killed one's)
    /// wherever a captured btrfs filesystem may hold them.
    pub fn excludes(pf: &Preflight) -> Vec<String> {
        pf.captured()
            .iter()
            .filter(|m| m.fstype == "btrfs")
            .map(|m| {
                let rel = m.point.trim_start_matches('/');
                let dir = if rel.is_empty() {
                    ".".to_string()
                } else {
                    format!("./{}", crate::exlist::glob_escape(rel))
                };
                format!("{dir}/{SNAPSHOT_PREFIX}*")
            })
            .collect()
    }

    /// The script around `pipeline` (the `find | tar` part, run in the
    /// view's root): lock, snapshots and view, then the pipeline; the whole
    /// in a private mount namespace when there are snapshots.
    pub fn wrap(&self, pipeline: &str) -> String {
        if !self.snapshots() {
            return format!(
                "{}\npm_lock || exit 6\ncd / || exit 97\n{pipeline}",
                lock_functions()
            );
        }
        let inner = format!(
            "{}\n{}\n{LV_NAME}\n{SNAPSHOT_FUNCTIONS}\npm_lock || exit 6\n\
             take_all || exit 4\npm_unlock\nmake_view || exit 5\ncd \"$view\" || exit 97\n{pipeline}",
            self.settings(),
            lock_functions()
        );
        format!(
            "exec unshare --mount --propagation private bash -c {}",
            shell_quote(&inner)
        )
    }

    /// The daemon's backstop after a failed or cancelled capture: a script
    /// that deletes this capture's snapshots wherever they are left (the
    /// node's exit trap cannot run when the script is SIGKILLed). One it
    /// cannot delete is retried while it may still be in use by the dying
    /// script. Prints `@@snapshot-deleted PATH` or `@@snapshot-left PATH`.
    /// None without snapshots.
    pub fn backstop_script(&self) -> Option<String> {
        self.snapshots().then(|| {
            format!(
                "export LC_ALL=C\n{}\n{LV_NAME}\n{BACKSTOP}",
                self.settings()
            )
        })
    }

    /// The script's variables: every value shell-quoted; the snapshots as
    /// parallel arrays (`points`, `kinds`, and for LVM `vgs`, `lvs`,
    /// `fstypes`, `cows`, empty for btrfs).
    fn settings(&self) -> String {
        let mut cols: [Vec<String>; 6] = Default::default();
        for s in &self.snaps {
            let (kind, vg, lv, fs, cow) = match &s.kind {
                SnapshotKind::Btrfs => ("btrfs", "", "", "", String::new()),
                SnapshotKind::Lvm {
                    vg,
                    lv,
                    fstype,
                    cow,
                } => (
                    "lvm",
                    vg.as_str(),
                    lv.as_str(),
                    fstype.as_str(),
                    cow.map(|c| c.to_string()).unwrap_or_default(),
                ),
            };
            for (col, v) in cols.iter_mut().zip([&s.point, kind, vg, lv, fs, &cow]) {
                col.push(v.to_string());
            }
        }
        let [points, kinds, vgs, lvs, fstypes, cows] = cols.map(|c| shell_join(&c));
        format!(
            "snap={}; lvsnap={}; require={}; points=({points}); kinds=({kinds}); vgs=({vgs}); \
             lvs=({lvs}); fstypes=({fstypes}); cows=({cows}); mounts=({})",
            shell_quote(&self.name),
            shell_quote(self.name.trim_start_matches('.')),
            u8::from(self.mode == SnapshotMode::Require),
            shell_join(&self.mounts)
        )
    }
}

/// How the captured filesystem `m` can be snapshotted, or why it cannot.
/// `free`: what the planned snapshots left of each volume group.
fn snapshot_of(
    m: &Mount,
    pf: &Preflight,
    free: &mut BTreeMap<String, u64>,
) -> Result<SnapshotKind, String> {
    if !pf.has("unshare") {
        return Err("the node lacks unshare".into());
    }
    if m.fstype == "btrfs" {
        return match pf.has("btrfs") {
            true => Ok(SnapshotKind::Btrfs),
            false => Err("the node lacks btrfs-progs".into()),
        };
    }
    let Some(lv) = pf.lv_of(m) else {
        return Err(format!(
            "{} on {}: neither btrfs nor LVM",
            m.fstype, m.device
        ));
    };
    if !pf.has("lvcreate") {
        return Err("the node lacks lvcreate".into());
    }
    if !LVM_FS.contains(&m.fstype.as_str()) {
        return Err(format!(
            "{} is not mounted from an LVM snapshot here",
            m.fstype
        ));
    }
    let kind = |cow| SnapshotKind::Lvm {
        vg: lv.vg.clone(),
        lv: lv.lv.clone(),
        fstype: m.fstype.clone(),
        cow,
    };
    if lv.thin {
        return Ok(kind(None));
    }
    let left = free.entry(lv.vg.clone()).or_insert(lv.vg_free);
    let cow = (lv.size / 4).max(LVM_COW_MIN).min(lv.size).min(*left);
    if cow < LVM_COW_FLOOR {
        return Err(format!(
            "volume group {} has {} MiB free, too little for a snapshot",
            lv.vg,
            *left >> 20
        ));
    }
    *left -= cow;
    Ok(kind(Some(cow)))
}

/// What the read was, from the plan and what the node's script said.
pub fn report(c: &Consistency, all_mounts: &[String], said: &[Said]) -> ConsistencyReport {
    let snapshotted: Vec<String> = said
        .iter()
        .filter_map(|s| match s {
            Said::Snapshotted(m) => Some(m.clone()),
            _ => None,
        })
        .collect();
    let live = all_mounts
        .iter()
        .filter(|m| !snapshotted.contains(m))
        .cloned()
        .collect();
    let mut held = None;
    let mut lock = "no package manager lock on the node".to_string();
    for s in said {
        if let Said::Lock(l) = s {
            if let Some(files) = l.strip_prefix("held ") {
                held = Some(files.to_string());
                lock = format!("held during the read ({files})");
            } else if l == "released" {
                let files = held.clone().unwrap_or_default();
                lock = format!("held while the snapshots were taken ({files})");
            } else if let Some(why) = l.strip_prefix("none: ") {
                lock = format!("not held: {why}");
            }
        }
    }
    ConsistencyReport {
        mode: c.mode.name().to_string(),
        snapshotted,
        live,
        package_lock: lock,
    }
}

/// The line the client sees about it.
pub fn summary_line(node: &str, r: &ConsistencyReport) -> String {
    let how = match (r.snapshotted.is_empty(), r.live.is_empty()) {
        (true, _) => format!("read {} live", r.live.join(", ")),
        (false, true) => format!("read {} from snapshots", r.snapshotted.join(", ")),
        (false, false) => format!(
            "read {} from snapshots and {} live",
            r.snapshotted.join(", "),
            r.live.join(", ")
        ),
    };
    format!(
        "capimage: {node}: {how}; package manager lock {}",
        r.package_lock
    )
}

/// `.xcatd-snapshot-<unix time>-<random>`: unique, and dated for whoever
/// finds one a killed capture left.
fn snapshot_name() -> String {
    format!(
        "{SNAPSHOT_PREFIX}{}-{}",
        xcat_jobkit::now_unix(),
        xcat_image::publish::random_suffix()
    )
}

/// The lock functions with the wait filled in.
fn lock_functions() -> String {
    LOCK_FUNCTIONS.replace("LOCKWAIT", &LOCK_WAIT_SECS.to_string())
}

fn depth(p: &str) -> usize {
    p.split('/').filter(|c| !c.is_empty()).count()
}

/// `pm_lock`: take the package managers' locks in a helper process that
/// holds them until `pm_unlock` or the script's end (its stdin closes).
/// The helper says `wait` when another process holds a lock, `locked` when
/// it has them all.
const LOCK_FUNCTIONS: &str = r#"pm_lock() {
  local f files=() line
  for f in /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/rpm/.rpm.lock /usr/lib/sysimage/rpm/.rpm.lock; do
    [ -f "$f" ] && [ ! -L "$f" ] && files+=("$f")
  done
  ((${#files[@]})) || return 0
  if command -v perl >/dev/null 2>&1; then
    coproc PMLOCK { exec perl -e 'use Fcntl; $|=1; $SIG{ALRM}=sub{exit 1}; alarm(shift @ARGV); my @h;
      for my $f (@ARGV) { open(my $h, "+<", $f) or next; my $l = pack("ssx4qqlx4", F_WRLCK, 0, 0, 0, 0);
        unless (fcntl($h, F_SETLK, $l)) { print "wait\n"; fcntl($h, F_SETLKW, $l) or exit 1; } push @h, $h; }
      alarm(0); print "locked\n"; 1 while <STDIN>;' LOCKWAIT "${files[@]}"; }
  elif command -v python3 >/dev/null 2>&1; then
    coproc PMLOCK { exec python3 -c 'import fcntl, signal, sys
signal.alarm(int(sys.argv[1])); held = []
for f in sys.argv[2:]:
    try: h = open(f, "r+")
    except OSError: continue
    try: fcntl.lockf(h, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError: print("wait", flush=True); fcntl.lockf(h, fcntl.LOCK_EX)
    held.append(h)
signal.alarm(0); print("locked", flush=True); sys.stdin.read()' LOCKWAIT "${files[@]}"; }
  else
    echo "@@pm-lock none: neither perl nor python3 to hold ${files[*]}" >&2
    return 0
  fi
  while read -r line <&"${PMLOCK[0]}"; do
    case "$line" in
      wait) echo "@@pm-lock waiting for ${files[*]}" >&2 ;;
      locked) echo "@@pm-lock held ${files[*]}" >&2; return 0 ;;
    esac
  done
  echo "@@fail the package manager kept its lock (${files[*]}) for LOCKWAIT seconds; let it finish, then capture again" >&2
  return 1
}
pm_unlock() {
  [ -n "${PMLOCK_PID:-}" ] || return 0
  kill "$PMLOCK_PID" 2>/dev/null; wait "$PMLOCK_PID" 2>/dev/null
  echo "@@pm-lock released" >&2
}"#;

/// The name of the LVM snapshot of `points[I]` (`VG/LV`), for `take_lv`
/// and the backstop alike.
const LV_NAME: &str = r#"lvname() { echo "${vgs[$1]}/$lvsnap-$1"; }"#;

/// `take_all` snapshots every listed filesystem (a btrfs mount and its
/// nested subvolumes, or a logical volume, mounted read-only), opening a
/// descriptor on each snapshot and on each live mount before anything is
/// bind-mounted (a bind over a parent hides the paths beneath it);
/// `make_view` then binds them, shallowest first, and sets `$view`.
/// `release` (the exit trap) unbinds, unmounts and deletes, and fails the
/// script when a classic LVM snapshot overflowed (it was marked invalid
/// while it was read).
const SNAPSHOT_FUNCTIONS: &str = r#"made=(); lvmade=(); lvpoints=(); lvdirs=(); fds=(); binds=(); srcs=(); dsts=(); view=/; declare -A taken=()
unmount() { umount "$1" 2>/dev/null || umount -l "$1" 2>/dev/null; }
release() {
  local i f status=$?
  cd / || true
  for ((i=${#binds[@]}-1; i>=0; i--)); do unmount "${binds[i]}"; done
  binds=()
  for f in "${fds[@]}"; do exec {f}<&-; done
  fds=()
  for ((i=${#lvdirs[@]}-1; i>=0; i--)); do
    unmount "${lvdirs[i]}"
    rmdir "${lvdirs[i]}" 2>/dev/null
  done
  lvdirs=()
  for ((i=${#lvmade[@]}-1; i>=0; i--)); do
    case "$(lvs --noheadings -o lv_attr "${lvmade[i]}" 2>/dev/null | tr -d ' ')" in
      ????I*) echo "@@fail the LVM snapshot of ${lvpoints[i]} overflowed while it was read (more was written there than it could hold); capture again when the node is quieter, or give the volume group more free space" >&2; status=7 ;;
    esac
    lvremove -q -f "${lvmade[i]}" >/dev/null 2>&1 || echo "@@snapshot-left lvm ${lvmade[i]}" >&2
  done
  lvmade=()
  for ((i=${#made[@]}-1; i>=0; i--)); do
    btrfs subvolume delete "${made[i]}" >/dev/null 2>&1 || echo "@@snapshot-left ${made[i]}" >&2
  done
  made=()
  exit "$status"
}
trap release EXIT; trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM; trap '' PIPE
is_mount() { local m; for m in "${mounts[@]}"; do [ "$m" = "$1" ] && return 0; done; return 1; }
# at DIR: where the live path DIR appears in the view
at() { if [ "$view" = / ]; then echo "$1"; else echo "${view%/}$1"; fi; }
# place MOUNT DIR: read MOUNT from DIR (a snapshot) in the view
place() {
  local fd
  exec {fd}<"$2" || return 1
  fds+=("$fd")
  if [ "$1" = / ]; then view=$2; else srcs+=("/proc/self/fd/$fd"); dsts+=("$(at "$1")"); fi
}
# take SUBVOL: snapshot it, then its nested subvolumes that are not mount points
take() {
  local s="${1%/}/$snap" top child rel
  btrfs subvolume snapshot -r "$1" "$s" >/dev/null || return 1
  made+=("$s")
  place "$1" "$s" || return 1
  top=$(btrfs subvolume show "$1" | head -n 1) || return 1
  while IFS= read -r child; do
    if [ "$top" = / ]; then rel=$child; else rel=${child#"$top"/}; [ "$rel" != "$child" ] || continue; fi
    case "/$rel" in */"$snap"|*/.xcatd-snapshot-*) continue ;; esac
    is_mount "${1%/}/$rel" && continue
    take "${1%/}/$rel" || return 1
  done < <(btrfs subvolume list -o "$1" | sed 's/^.* path //')
}
# take_lv I: snapshot the logical volume of points[I] (lvcreate suspends
# it, which freezes its filesystem for that moment) and mount it read-only
take_lv() {
  local m=${points[$1]} name dir opts=ro size=(-kn)
  name=$(lvname "$1")
  [ -n "${cows[$1]}" ] && size=(-L "${cows[$1]}b")
  lvcreate -q -y -s -n "${name#*/}" "${size[@]}" "${vgs[$1]}/${lvs[$1]}" >/dev/null || return 1
  lvmade+=("$name"); lvpoints+=("$m")
  case "${fstypes[$1]}" in ext3|ext4) opts=ro,noload ;; xfs) opts=ro,norecovery,nouuid ;; esac
  dir=$(mktemp -d /run/xcatd-snapshot.XXXXXX) || return 1
  mount -t "${fstypes[$1]}" -o "$opts" "/dev/$name" "$dir" || { rmdir "$dir"; return 1; }
  lvdirs+=("$dir")
  place "$m" "$dir"
}
take_all() {
  local i m fd
  for i in "${!points[@]}"; do
    m=${points[i]}
    if [ "${kinds[i]}" = lvm ]; then take_lv "$i"; else take "$m"; fi && { taken[$m]=1; echo "@@snapshot $m" >&2; continue; }
    if [ "$require" = 1 ]; then echo "@@fail the snapshot of $m failed (--snapshot require)" >&2; return 1; fi
    echo "@@snapshot-live $m" >&2
  done
  for m in "${mounts[@]}"; do
    [ -n "${taken[$m]:-}" ] && continue
    exec {fd}<"$m" || return 1
    srcs+=("/proc/self/fd/$fd"); dsts+=("$(at "$m")")
  done
}
make_view() {
  local i d
  # shallowest first: a bind beneath another must come after it
  for i in $(for i in "${!dsts[@]}"; do d=${dsts[i]//[^\/]/}; echo "${#d} $i"; done | sort -n | cut -d' ' -f2); do
    mount --bind "${srcs[i]}" "${dsts[i]}" || { echo "@@fail could not bind ${dsts[i]} into the snapshot view" >&2; return 1; }
    binds+=("${dsts[i]}")
  done
}"#;

/// The backstop (see [`Consistency::backstop_script`]): for btrfs, every
/// subvolume of each mount's filesystem named `$snap`, mapped to its path
/// under the mount as `take` does; for LVM, the snapshot volume `take_lv`
/// names.
const BACKSTOP: &str = r#"gone() { local i; for i in $(seq 1 20); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done; return 1; }
btrfs_gone() { [ ! -e "$1" ] || btrfs subvolume delete "$1"; }
lv_gone() { ! lvs "$1" || lvremove -q -f "$1"; }
for i in "${!points[@]}"; do
  m=${points[i]}
  if [ "${kinds[i]}" = lvm ]; then
    lv=$(lvname "$i")
    lvs "$lv" >/dev/null 2>&1 || continue
    if gone lv_gone "$lv"; then echo "@@snapshot-deleted lvm $lv"; else echo "@@snapshot-left lvm $lv"; fi
    continue
  fi
  top=$(btrfs subvolume show "$m" 2>/dev/null | head -n 1) || continue
  while IFS= read -r p; do
    case "/$p" in */"$snap") ;; *) continue ;; esac
    if [ "$top" = / ]; then rel=$p; else rel=${p#"$top"/}; [ "$rel" != "$p" ] || continue; fi
    d="${m%/}/$rel"
    if gone btrfs_gone "$d"; then echo "@@snapshot-deleted $d"; else echo "@@snapshot-left $d"; fi
  done < <(btrfs subvolume list "$m" | sed 's/^.* path //')
done"#;

/// What a `@@snapshot-left` or `@@snapshot-deleted` line names (`PATH` of
/// a btrfs snapshot, `lvm VG/LV` of an LVM one), and the command that
/// deletes it.
pub fn snapshot_and_removal(said: &str) -> (String, String) {
    match said.strip_prefix("lvm ") {
        Some(lv) => (format!("{lv} (LVM)"), format!("lvremove {lv}")),
        None => (said.to_string(), format!("btrfs subvolume delete {said}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preflight;

    fn pf(mounts: &str, tools: &[&str]) -> Preflight {
        let mut text = String::from("@@kernel 6.1.0\n@@arch x86_64\n");
        for t in tools {
            text.push_str(&format!("@@tool {t}\n"));
        }
        text.push_str("@@mounts\n");
        text.push_str(mounts);
        text.push_str("@@df\n@@end\n");
        preflight::parse(&text)
    }

    const MIXED: &str = "/dev/vda2 / btrfs rw 0 0\n/dev/vda1 /boot ext4 rw 0 0\n\
                         /dev/vda2 /home btrfs rw 0 0\nproc /proc proc rw 0 0\n";

    #[test]
    fn auto_snapshots_btrfs_and_reads_the_rest_live() {
        let c =
            Consistency::plan(SnapshotMode::Auto, &pf(MIXED, &["btrfs", "unshare"]), "n1").unwrap();
        let points: Vec<&str> = c.snaps.iter().map(|s| s.point.as_str()).collect();
        assert_eq!(points, ["/", "/home"]);
        assert!(c.snaps.iter().all(|s| s.kind == SnapshotKind::Btrfs));
        assert_eq!(c.mounts, ["/boot", "/home"]);
        assert!(c.name.starts_with(SNAPSHOT_PREFIX));
        let s = c.wrap("find . | tar");
        assert!(s.starts_with("exec unshare --mount --propagation private bash -c "));
        // without the tools, or off: no snapshot, still the lock
        for (mode, tools) in [
            (SnapshotMode::Auto, &["unshare"][..]),
            (SnapshotMode::Off, &["btrfs", "unshare"][..]),
        ] {
            let c = Consistency::plan(mode, &pf(MIXED, tools), "n1").unwrap();
            assert!(!c.snapshots());
            let s = c.wrap("find . | tar");
            assert!(
                s.contains("pm_lock || exit 6\ncd / || exit 97\nfind . | tar"),
                "{s}"
            );
            assert!(!s.contains("unshare --mount"));
        }
    }

    #[test]
    fn require_names_what_cannot_be_snapshotted() {
        let e = Consistency::plan(
            SnapshotMode::Require,
            &pf(MIXED, &["btrfs", "unshare"]),
            "n1",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("cannot snapshot /boot (ext4 on /dev/vda1: neither btrfs nor LVM)"),
            "{e}"
        );
        let e = Consistency::plan(SnapshotMode::Require, &pf(MIXED, &["unshare"]), "n1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/ (the node lacks btrfs-progs)"), "{e}");
        let only_btrfs = "/dev/vda2 / btrfs rw 0 0\n";
        assert!(Consistency::plan(
            SnapshotMode::Require,
            &pf(only_btrfs, &["btrfs", "unshare"]),
            "n1"
        )
        .is_ok());
    }

    const LVM: &str = "@@mounts\n/dev/mapper/vg0-root / ext4 rw 0 0\n\
        /dev/mapper/vg0-srv /srv xfs rw 0 0\n/dev/mapper/thin-data /data ext4 rw 0 0\n\
        /dev/mapper/vg0-efi /boot/efi vfat rw 0 0\n@@lvm\n\
        /dev/mapper/vg0-root|/dev/vg0/root|vg0|root|-wi-ao----|8589934592|1342177280\n\
        /dev/mapper/vg0-srv|/dev/vg0/srv|vg0|srv|-wi-ao----|1073741824|1342177280\n\
        /dev/mapper/vg0-efi|/dev/vg0/efi|vg0|efi|-wi-ao----|104857600|1342177280\n\
        /dev/mapper/thin-data|/dev/thin/data|thin|data|Vwi-aotz--|1073741824|0\n@@df\n@@end\n";

    fn lvm_plan(text: &str, mode: SnapshotMode) -> Result<Consistency, CaptureError> {
        let mut p = preflight::parse(text);
        p.tools
            .extend(["lvcreate".to_string(), "unshare".to_string()]);
        Consistency::plan(mode, &p, "n1")
    }

    #[test]
    fn logical_volumes_get_snapshots_the_volume_group_can_hold() {
        let c = lvm_plan(LVM, SnapshotMode::Auto).unwrap();
        let got: Vec<(&str, Option<u64>)> = c
            .snaps
            .iter()
            .map(|s| match &s.kind {
                SnapshotKind::Lvm { cow, .. } => (s.point.as_str(), *cow),
                SnapshotKind::Btrfs => panic!("btrfs"),
            })
            .collect();
        // a quarter of 8 GiB is 2 GiB, more than vg0's 1.25 GiB free: all
        // of it goes to /, and /srv (wanting 512 MiB) finds none left; the
        // thin volume needs none; vfat is read live
        assert_eq!(got, [("/", Some(1280 << 20)), ("/data", None)]);
        let e = lvm_plan(LVM, SnapshotMode::Require)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/boot/efi (vfat is not mounted from an LVM snapshot here)")
                && e.contains("/srv (volume group vg0 has 0 MiB free, too little for a snapshot)"),
            "{e}"
        );
        let s = c.settings();
        assert!(
            s.contains("kinds=(lvm lvm)")
                && s.contains("vgs=(vg0 thin)")
                && s.contains("cows=(1342177280 '')"),
            "{s}"
        );
        assert!(s.contains("lvsnap=xcatd-snapshot-"), "{s}");
    }

    #[test]
    fn removal_commands_name_the_kind() {
        assert_eq!(
            snapshot_and_removal("lvm vg0/xcatd-snapshot-1-ab-0"),
            (
                "vg0/xcatd-snapshot-1-ab-0 (LVM)".to_string(),
                "lvremove vg0/xcatd-snapshot-1-ab-0".to_string()
            )
        );
        assert_eq!(
            snapshot_and_removal("/.xcatd-snapshot-1-ab").1,
            "btrfs subvolume delete /.xcatd-snapshot-1-ab"
        );
    }

    #[test]
    fn snapshot_excludes_follow_the_btrfs_mounts() {
        assert_eq!(
            Consistency::excludes(&pf(MIXED, &[])),
            ["./.xcatd-snapshot-*", "./home/.xcatd-snapshot-*"]
        );
    }

    #[test]
    fn hostile_mount_points_stay_data() {
        let m = "/dev/vda2 / btrfs rw 0 0\n/dev/vda3 /x';touch\\040PWNED;' btrfs rw 0 0\n";
        let c = Consistency::plan(SnapshotMode::Auto, &pf(m, &["btrfs", "unshare"]), "n1").unwrap();
        let s = c.settings();
        assert!(s.contains(&shell_quote("/x';touch PWNED;'")), "{s}");
    }
}
