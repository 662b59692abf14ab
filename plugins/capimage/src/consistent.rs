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

use std::time::Duration;

use tracing::{info, warn};
use xcat_image::report::ConsistencyReport;
use xcat_plugin::{Context, Responder};
use xcat_remote::{shell_join, shell_quote, Remote};

use crate::churn::PreludeNote as Said;
use crate::error::CaptureError;
use crate::preflight::Preflight;

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
        if let Some(d) = line.strip_prefix("@@snapshot-deleted ") {
            info!(%node, snapshot = %d, "deleted a snapshot the failed capture left");
            let _ = out
                .info(format!(
                    "capimage: deleted the snapshot {d} the capture left on {node}"
                ))
                .await;
        } else if let Some(d) = line.strip_prefix("@@snapshot-left ") {
            warn!(%node, snapshot = %d, "could not delete a snapshot the failed capture left");
            let _ = out
                .warning(format!(
                    "capimage: {node}: the snapshot {d} is left; delete it with `btrfs subvolume delete {d}`"
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
    /// Captured btrfs mount points to snapshot, shallowest first.
    pub btrfs: Vec<String>,
    /// Every captured mount point but `/`, shallowest first: where the view
    /// needs a bind mount.
    pub mounts: Vec<String>,
}

impl Consistency {
    /// Decide from the options and the node's mounts and tools; with
    /// `require`, fail now when some captured filesystem cannot be
    /// snapshotted.
    pub fn plan(mode: SnapshotMode, pf: &Preflight, node: &str) -> Result<Self, CaptureError> {
        let mut captured: Vec<(String, String)> = pf
            .captured()
            .iter()
            .map(|m| (m.point.clone(), m.fstype.clone()))
            .collect();
        captured.sort_by_key(|(p, _)| depth(p));
        let tools = pf.has("btrfs") && pf.has("unshare");
        let btrfs: Vec<String> = match mode {
            SnapshotMode::Off => Vec::new(),
            _ if !tools => Vec::new(),
            _ => captured
                .iter()
                .filter(|(_, t)| t == "btrfs")
                .map(|(p, _)| p.clone())
                .collect(),
        };
        if mode == SnapshotMode::Require {
            let live: Vec<String> = captured
                .iter()
                .filter(|(p, _)| !btrfs.contains(p))
                .map(|(p, t)| format!("{p} ({t})"))
                .collect();
            if !live.is_empty() {
                let why = if tools || !captured.iter().any(|(_, t)| t == "btrfs") {
                    format!("only btrfs is snapshotted, and {} is not", live.join(", "))
                } else {
                    "the node lacks btrfs-progs or unshare".to_string()
                };
                return Err(CaptureError::Snapshot {
                    node: node.to_string(),
                    why,
                });
            }
        }
        let mounts = captured
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| p != "/")
            .collect();
        Ok(Consistency {
            mode,
            name: snapshot_name(),
            btrfs,
            mounts,
        })
    }

    /// Whether any filesystem is read from a snapshot.
    pub fn snapshots(&self) -> bool {
        !self.btrfs.is_empty()
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
            "{}\n{}\n{SNAPSHOT_FUNCTIONS}\npm_lock || exit 6\n\
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
        self.snapshots()
            .then(|| format!("export LC_ALL=C\n{}\n{BACKSTOP}", self.settings()))
    }

    /// The script's variables: every value shell-quoted.
    fn settings(&self) -> String {
        format!(
            "snap={}; require={}; btrfs=({}); mounts=({})",
            shell_quote(&self.name),
            u8::from(self.mode == SnapshotMode::Require),
            shell_join(&self.btrfs),
            shell_join(&self.mounts)
        )
    }
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

/// `take_all` snapshots every listed btrfs mount and its nested
/// subvolumes, opening a descriptor on each snapshot and on each live
/// mount before anything is bind-mounted (a bind over a parent hides the
/// paths beneath it); `make_view` then binds them, shallowest first, and
/// sets `$view`. `release` (the exit trap) unbinds and deletes.
const SNAPSHOT_FUNCTIONS: &str = r#"made=(); binds=(); srcs=(); dsts=(); view=/; declare -A taken=()
release() {
  local i
  cd / || true
  for ((i=${#binds[@]}-1; i>=0; i--)); do umount "${binds[i]}" 2>/dev/null || umount -l "${binds[i]}" 2>/dev/null; done
  binds=()
  for ((i=${#made[@]}-1; i>=0; i--)); do
    btrfs subvolume delete "${made[i]}" >/dev/null 2>&1 || echo "@@snapshot-left ${made[i]}" >&2
  done
  made=()
}
trap release EXIT; trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM; trap '' PIPE
is_mount() { local m; for m in "${mounts[@]}"; do [ "$m" = "$1" ] && return 0; done; return 1; }
# at DIR: where the live path DIR appears in the view
at() { if [ "$view" = / ]; then echo "$1"; else echo "${view%/}$1"; fi; }
# take SUBVOL: snapshot it, then its nested subvolumes that are not mount points
take() {
  local s="${1%/}/$snap" top child rel fd
  btrfs subvolume snapshot -r "$1" "$s" >/dev/null || return 1
  made+=("$s")
  exec {fd}<"$s" || return 1
  if [ "$1" = / ]; then view=$s; else srcs+=("/proc/self/fd/$fd"); dsts+=("$(at "$1")"); fi
  top=$(btrfs subvolume show "$1" | head -n 1) || return 1
  while IFS= read -r child; do
    if [ "$top" = / ]; then rel=$child; else rel=${child#"$top"/}; [ "$rel" != "$child" ] || continue; fi
    case "/$rel" in */"$snap"|*/.xcatd-snapshot-*) continue ;; esac
    is_mount "${1%/}/$rel" && continue
    take "${1%/}/$rel" || return 1
  done < <(btrfs subvolume list -o "$1" | sed 's/^.* path //')
}
take_all() {
  local m fd
  for m in "${btrfs[@]}"; do
    if take "$m"; then taken[$m]=1; echo "@@snapshot $m" >&2; continue; fi
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

/// The backstop (see [`Consistency::backstop_script`]): every subvolume
/// of each btrfs mount's filesystem named `$snap`, mapped to its path
/// under the mount as `take` does.
const BACKSTOP: &str = r#"gone() { local i; for i in $(seq 1 20); do [ -e "$1" ] || return 0; btrfs subvolume delete "$1" >/dev/null 2>&1 && return 0; sleep 0.5; done; [ ! -e "$1" ]; }
for m in "${btrfs[@]}"; do
  top=$(btrfs subvolume show "$m" 2>/dev/null | head -n 1) || continue
  while IFS= read -r p; do
    case "/$p" in */"$snap") ;; *) continue ;; esac
    if [ "$top" = / ]; then rel=$p; else rel=${p#"$top"/}; [ "$rel" != "$p" ] || continue; fi
    d="${m%/}/$rel"
    if gone "$d"; then echo "@@snapshot-deleted $d"; else echo "@@snapshot-left $d"; fi
  done < <(btrfs subvolume list "$m" | sed 's/^.* path //')
done"#;

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
        assert_eq!(c.btrfs, ["/", "/home"]);
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
        assert!(e.contains("/boot (ext4)"), "{e}");
        let e = Consistency::plan(SnapshotMode::Require, &pf(MIXED, &[]), "n1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("btrfs-progs"), "{e}");
        let only_btrfs = "/dev/vda2 / btrfs rw 0 0\n";
        assert!(Consistency::plan(
            SnapshotMode::Require,
            &pf(only_btrfs, &["btrfs", "unshare"]),
            "n1"
        )
        .is_ok());
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
