//! Secrets left in a captured image: a scan that reports them and a scrub that
//! removes them.
//!
//! The tree was written by the node we captured, which we do not trust. The scan
//! takes its candidates from the image's [`ManifestStore`] (it does not walk the
//! tree again) and opens each one through [`Root::open_regular`]: no symlink is
//! followed anywhere on the path, nothing outside the tree is reached, and only
//! regular files are opened (a FIFO or a device node at a secret's name is never
//! opened). A symlink named like a secret (`/root/.netrc -> /etc/passwd`) is not a
//! regular file and gives no finding: what it points to is either outside the
//! image or scanned under its own name. Every read is bounded, and the report
//! keeps at most [`MAX_FINDINGS`] findings (its `count` counts them all), so
//! memory does not grow with the image.
//!
//! What is found, and how ("a home" is `/root` or a directory `/home/<name>`):
//!
//! * `private-key`: a regular file of at most 64 KiB anywhere holding a PEM
//!   private key header, `-----BEGIN <label>PRIVATE KEY-----` (RSA, EC, DSA,
//!   ENCRYPTED, PKCS#8 and OpenSSH keys). Larger files are not read; the ones in
//!   a home's `.ssh` or named `*.key` / `*.pem` are counted as `skipped_large`.
//!   SSH host keys under `/etc/ssh` are the node's identity and sysclean has
//!   removed them before the scan runs.
//! * `kerberos-keytab`: a file named `*.keytab` (or `/etc/krb5.keytab`) whose
//!   first two bytes are the keytab magic `05 02`.
//! * `munge-key`: a non-empty `/etc/munge/munge.key`.
//! * `cloud-credentials`: in a home, a non-empty `.aws/credentials`,
//!   `.config/gcloud/credentials.db`,
//!   `.config/gcloud/application_default_credentials.json`, any file under
//!   `.config/gcloud/legacy_credentials/`, `.azure/accessTokens.json` or
//!   `.azure/msal_token_cache.json`; `.aws/config` holding
//!   `aws_secret_access_key`; `.docker/config.json` holding `"auth"`;
//!   `.kube/config` holding `token:` or `client-key-data:`.
//! * `netrc`: a non-empty `.netrc` in a home.
//! * `shell-history-token`: a shell or client history in a home
//!   ([`HISTORIES`]) with a line that looks like it holds a password or token
//!   (its first MiB is read). The report gives the line number, never the line.
//! * `password-hash`: a user of `/etc/shadow` with an unlocked hash (`$...` or a
//!   13-character DES hash). The report names the user, never the hash.
//!
//! [`scrub`] removes the files found (re-checking that each is still a regular
//! file) and locks the hashes of `/etc/shadow` by prefixing `!`.

use crate::beneath::Root;
use crate::manifest::{EntryType, ManifestEntry};
use crate::manifest_store::ManifestStore;
use crate::sysclean::{act, SyscleanAction};
use crate::util::{display_path, escape_bytes, unescape_bytes};
use rustix::fs::OFlags;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::{self, Read};

/// Findings kept in a report; `count` goes on counting beyond it.
pub const MAX_FINDINGS: usize = 200;
/// Largest file searched for a private key.
pub const KEY_MAX: u64 = 64 * 1024;
/// How much of a history (or a cloud client's config) is read.
pub const TEXT_MAX: u64 = 1024 * 1024;
/// Largest `/etc/shadow` read.
pub const SHADOW_MAX: u64 = 16 * 1024 * 1024;
/// Homes under `/home` looked at (plus `/root`).
pub const MAX_HOMES: usize = 10_000;

/// History files of shells and interactive clients, by name in a home.
pub const HISTORIES: &[&str] = &[
    ".bash_history",
    ".zsh_history",
    ".history",
    ".sh_history",
    ".python_history",
    ".mysql_history",
    ".psql_history",
];

/// What kind of secret a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecretKind {
    #[default]
    PrivateKey,
    KerberosKeytab,
    MungeKey,
    CloudCredentials,
    Netrc,
    ShellHistoryToken,
    PasswordHash,
}

/// One secret found in the image. Nothing secret is in it: paths, user names,
/// line numbers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Finding {
    /// Image path (`/root/.netrc`).
    pub path: String,
    pub kind: SecretKind,
    /// What it is and what to do about it.
    pub advice: String,
}

/// What [`scan`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SecretReport {
    /// The first [`MAX_FINDINGS`] findings, in path order.
    pub findings: Vec<Finding>,
    /// All findings, kept or not.
    pub count: u64,
    /// Files opened and read.
    pub scanned_files: u64,
    /// Files where keys live that were too large to search.
    pub skipped_large: u64,
    /// Candidates that could not be opened as regular files any more (replaced
    /// since the manifest was made).
    #[serde(default)]
    pub unreadable: u64,
}

const SCRUB_ADVICE: &str =
    "remove it from the image or add it to the exclusion list; `capimage --scrub` removes it";

/// Scans the tree at `root`, whose entries `manifest` records, for secrets.
pub fn scan(root: &Root, manifest: &ManifestStore) -> io::Result<SecretReport> {
    let mut s = Scan {
        root,
        homes: homes(root)?,
        report: SecretReport::default(),
    };
    manifest.for_each(|e| {
        if e.kind == EntryType::File {
            s.entry(&e);
        }
        Ok(())
    })?;
    Ok(s.report)
}

/// The names of the directories under `/home` (at most [`MAX_HOMES`]); a
/// symlinked `/home` or entry is no home of this image.
fn homes(root: &Root) -> io::Result<HashSet<Vec<u8>>> {
    let names = match root.list_dir(b"home") {
        Ok(n) => n,
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOENT | libc::ELOOP | libc::ENOTDIR)
            ) =>
        {
            return Ok(HashSet::new())
        }
        Err(e) => return Err(e),
    };
    let mut out = HashSet::new();
    for name in names {
        if out.len() >= MAX_HOMES {
            break;
        }
        let rel = [&b"home/"[..], &name].concat();
        if let Some(st) = root.lstat(&rel)? {
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                out.insert(name);
            }
        }
    }
    Ok(out)
}

/// What a file's path says about it, before its content is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// A secret by name alone, when not empty.
    Named(SecretKind),
    /// A cloud client's config, a secret when it holds one of these.
    Holding(&'static [&'static str]),
    History,
    Keytab,
    /// Anything else: searched for a private key.
    Any,
}

/// Files in a home that are credentials whenever they are not empty.
const CLOUD_FILES: &[&str] = &[
    ".aws/credentials",
    ".config/gcloud/credentials.db",
    ".config/gcloud/application_default_credentials.json",
    ".azure/accessTokens.json",
    ".azure/msal_token_cache.json",
];

/// Config files in a home that are credentials when they hold one of the words.
const CLOUD_CONFIGS: &[(&str, &[&str])] = &[
    (".aws/config", &["aws_secret_access_key"]),
    (".docker/config.json", &["\"auth\""]),
    (".kube/config", &["token:", "client-key-data:"]),
];

/// The path of `rel` inside its home, when it is in one.
fn in_home<'a>(rel: &'a [u8], homes: &HashSet<Vec<u8>>) -> Option<&'a [u8]> {
    if let Some(rest) = rel.strip_prefix(b"root/") {
        return Some(rest);
    }
    let rest = rel.strip_prefix(b"home/")?;
    let slash = rest.iter().position(|&b| b == b'/')?;
    homes.contains(&rest[..slash]).then_some(&rest[slash + 1..])
}

fn rule(rel: &[u8], homes: &HashSet<Vec<u8>>) -> Rule {
    if rel == b"etc/munge/munge.key" {
        return Rule::Named(SecretKind::MungeKey);
    }
    if rel == b"etc/krb5.keytab" || rel.ends_with(b".keytab") {
        return Rule::Keytab;
    }
    let Some(h) = in_home(rel, homes) else {
        return Rule::Any;
    };
    if h == b".netrc" {
        return Rule::Named(SecretKind::Netrc);
    }
    if HISTORIES.iter().any(|n| h == n.as_bytes()) {
        return Rule::History;
    }
    if CLOUD_FILES.iter().any(|n| h == n.as_bytes())
        || h.starts_with(b".config/gcloud/legacy_credentials/")
    {
        return Rule::Named(SecretKind::CloudCredentials);
    }
    match CLOUD_CONFIGS.iter().find(|(n, _)| h == n.as_bytes()) {
        Some((_, words)) => Rule::Holding(words),
        None => Rule::Any,
    }
}

/// Whether a file too large to search sits where keys are kept.
fn key_place(rel: &[u8], homes: &HashSet<Vec<u8>>) -> bool {
    rel.ends_with(b".key")
        || rel.ends_with(b".pem")
        || rel.starts_with(b"etc/ssl/private/")
        || in_home(rel, homes).is_some_and(|h| h.starts_with(b".ssh/"))
}

/// Opens the regular file `rel` and reads at most `max` bytes of it; returns
/// them with the file's size.
fn read_head(root: &Root, rel: &[u8], max: u64) -> io::Result<(Vec<u8>, u64)> {
    let f = std::fs::File::from(root.open_regular(rel, OFlags::RDONLY)?);
    let size = f.metadata()?.len();
    let mut v = Vec::new();
    f.take(max).read_to_end(&mut v)?;
    Ok((v, size))
}

struct Scan<'a> {
    root: &'a Root,
    homes: HashSet<Vec<u8>>,
    report: SecretReport,
}

impl Scan<'_> {
    fn entry(&mut self, e: &ManifestEntry) {
        if e.path == b"etc/shadow" {
            self.shadow();
            return;
        }
        let rule = rule(&e.path, &self.homes);
        let max = match rule {
            Rule::Named(_) => 0,
            Rule::Holding(_) | Rule::History => TEXT_MAX,
            Rule::Keytab | Rule::Any => KEY_MAX,
        };
        if rule == Rule::Any && e.size > KEY_MAX {
            if key_place(&e.path, &self.homes) {
                self.report.skipped_large += 1;
            }
            return;
        }
        let Ok((data, size)) = read_head(self.root, &e.path, max) else {
            self.report.unreadable += 1;
            return;
        };
        self.report.scanned_files += 1;
        if let Some((kind, advice)) = judge(rule, &data, size) {
            self.found(&e.path, kind, advice);
        }
    }

    fn found(&mut self, rel: &[u8], kind: SecretKind, advice: String) {
        self.report.count += 1;
        if self.report.findings.len() < MAX_FINDINGS {
            self.report.findings.push(Finding {
                path: display_path(rel),
                kind,
                advice,
            });
        }
    }

    fn shadow(&mut self) {
        let Ok((data, size)) = read_head(self.root, b"etc/shadow", SHADOW_MAX) else {
            self.report.unreadable += 1;
            return;
        };
        if size > SHADOW_MAX {
            self.report.skipped_large += 1;
            return;
        }
        self.report.scanned_files += 1;
        for user in unlocked_users(&data) {
            let advice = format!(
                "user {user} has a password hash that can be cracked offline by anyone who \
                 gets the image; lock it in the image (`passwd -l {user}` before capturing) \
                 or capture with `--scrub`, which locks it"
            );
            self.found(b"etc/shadow", SecretKind::PasswordHash, advice);
        }
    }
}

/// The finding for a file, from its path's rule, its first bytes and its size.
fn judge(rule: Rule, data: &[u8], size: u64) -> Option<(SecretKind, String)> {
    let key = || {
        has_private_key(data).then(|| {
            (
                SecretKind::PrivateKey,
                format!("a PEM private key; {SCRUB_ADVICE}"),
            )
        })
    };
    match rule {
        Rule::Named(kind) => (size > 0).then(|| (kind, named_advice(kind))),
        Rule::Holding(words) => {
            let lower = data.to_ascii_lowercase();
            words
                .iter()
                .any(|w| find(&lower, w.as_bytes()).is_some())
                .then(|| {
                    let advice = format!("cloud or registry credentials; {SCRUB_ADVICE}");
                    (SecretKind::CloudCredentials, advice)
                })
        }
        Rule::History => history_token(data)
            .map(|(line, n)| (SecretKind::ShellHistoryToken, history_advice(line, n))),
        Rule::Keytab if data.starts_with(&[0x05, 0x02]) => Some((
            SecretKind::KerberosKeytab,
            format!("a Kerberos keytab: the host's or a service's keys; {SCRUB_ADVICE}"),
        )),
        Rule::Keytab | Rule::Any => key(),
    }
}

fn named_advice(kind: SecretKind) -> String {
    let what = match kind {
        SecretKind::MungeKey => {
            "the cluster's munge key: whoever has it can act as any user towards munge; \
             distribute it to nodes at boot instead"
        }
        SecretKind::Netrc => "a .netrc, which holds logins and passwords for remote hosts",
        _ => "cloud or registry credentials",
    };
    format!("{what}; {SCRUB_ADVICE}")
}

fn history_advice(line: usize, more: usize) -> String {
    let also = match more {
        0 => String::new(),
        n => format!(" (and {n} more lines)"),
    };
    format!(
        "line {line}{also} holds what looks like a password or token: the history keeps \
         what was typed; {SCRUB_ADVICE}"
    )
}

/// Position of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut at = 0;
    while let Some(i) = hay[at..].iter().position(|&b| b == first) {
        let start = at + i;
        if hay[start + 1..].starts_with(rest) {
            return Some(start);
        }
        at = start + 1;
    }
    None
}

/// Whether `data` holds a PEM header `-----BEGIN <label>PRIVATE KEY-----`
/// (`<label>` being capitals and spaces: `RSA `, `ENCRYPTED `, `OPENSSH `, none).
pub fn has_private_key(data: &[u8]) -> bool {
    const BEGIN: &[u8] = b"-----BEGIN ";
    let mut at = 0;
    while let Some(i) = find(&data[at..], BEGIN) {
        let label_start = at + i + BEGIN.len();
        let tail = &data[label_start..data.len().min(label_start + 64)];
        if let Some(end) = find(tail, b"-----") {
            let label = &tail[..end];
            if label.ends_with(b"PRIVATE KEY")
                && label.iter().all(|b| b.is_ascii_uppercase() || *b == b' ')
            {
                return true;
            }
        }
        at = label_start;
    }
    false
}

/// The first line (1-based) of a history that looks like it holds a secret, and
/// how many more do.
fn history_token(data: &[u8]) -> Option<(usize, usize)> {
    let mut hits = data
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, l)| credential_line(l))
        .map(|(i, _)| i + 1);
    let first = hits.next()?;
    Some((first, hits.count()))
}

/// `word` followed by a value: a byte that is neither space nor a quote closing
/// an empty value.
fn with_value(line: &[u8], word: &[u8]) -> bool {
    let mut at = 0;
    while let Some(i) = find(&line[at..], word) {
        let next = at + i + word.len();
        if line
            .get(next)
            .is_some_and(|b| !b.is_ascii_whitespace() && !matches!(b, b'"' | b'\''))
        {
            return true;
        }
        at = next;
    }
    false
}

/// Whether a line of a history looks like it holds a password or token.
pub fn credential_line(line: &[u8]) -> bool {
    let lower = line.to_ascii_lowercase();
    let assigned = ["password=", "passwd=", "token=", "secret="]
        .iter()
        .any(|w| with_value(&lower, w.as_bytes()));
    let words = ["aws_secret_access_key", "authorization: bearer"]
        .iter()
        .any(|w| find(&lower, w.as_bytes()).is_some());
    let prefixes = [&b"glpat-"[..], b"xoxb-", b"xoxp-", b"sshpass -p"]
        .iter()
        .any(|w| find(line, w).is_some());
    assigned || words || prefixes || github_token(line) || password_option(line)
}

/// `ghp_` followed by at least 20 letters or digits.
fn github_token(line: &[u8]) -> bool {
    let mut at = 0;
    while let Some(i) = find(&line[at..], b"ghp_") {
        let start = at + i + 4;
        let run = line[start..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        if run >= 20 {
            return true;
        }
        at = start;
    }
    false
}

/// A password given on a command line: mysql's `-p<password>`, or
/// `--password=<value>` / `--password <value>` of any program.
fn password_option(line: &[u8]) -> bool {
    let words: Vec<&[u8]> = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .collect();
    let mysql = |w: &[u8]| {
        let name = w.rsplit(|&b| b == b'/').next().unwrap_or(w);
        name.starts_with(b"mysql")
    };
    let mut after_mysql = false;
    for (i, w) in words.iter().enumerate() {
        after_mysql |= mysql(w);
        if after_mysql && w.starts_with(b"-p") && w.len() > 2 {
            return true;
        }
        if w.strip_prefix(b"--password=")
            .is_some_and(|v| !v.is_empty())
        {
            return true;
        }
        if *w == b"--password" && words.get(i + 1).is_some_and(|v| !v.starts_with(b"-")) {
            return true;
        }
    }
    false
}

/// Whether the second field of a shadow line is a hash one could log in with.
fn unlocked_hash(hash: &[u8]) -> bool {
    match hash.first() {
        Some(b'$') => true,
        Some(_) => {
            hash.len() == 13
                && hash
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'/'))
        }
        None => false,
    }
}

/// Where the user name of a shadow line ends, when the line's hash is unlocked.
fn unlocked_line(line: &[u8]) -> Option<usize> {
    let colon = line.iter().position(|&b| b == b':')?;
    let hash = line[colon + 1..].split(|&b| b == b':').next()?;
    unlocked_hash(hash).then_some(colon)
}

/// The users of a shadow file whose hash is unlocked.
fn unlocked_users(shadow: &[u8]) -> Vec<String> {
    shadow
        .split(|&b| b == b'\n')
        .filter_map(|line| Some(escape_bytes(&line[..unlocked_line(line)?])))
        .collect()
}

/// `shadow` with `!` put before every unlocked hash, every other byte kept;
/// and the users locked.
fn lock_hashes(shadow: &[u8]) -> (Vec<u8>, Vec<String>) {
    let mut out = Vec::with_capacity(shadow.len() + 16);
    let mut locked = Vec::new();
    for (i, line) in shadow.split(|&b| b == b'\n').enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        match unlocked_line(line) {
            Some(colon) => {
                out.extend_from_slice(&line[..=colon]);
                out.push(b'!');
                out.extend_from_slice(&line[colon + 1..]);
                locked.push(escape_bytes(&line[..colon]));
            }
            None => out.extend_from_slice(line),
        }
    }
    (out, locked)
}

/// Removes what `report` found from the tree at `root`: every file found,
/// after checking it is still a regular file (a symlink put there since is left
/// alone), and the unlocked hashes of `/etc/shadow`, locked with a `!` (all of
/// them, also those of users beyond the report's kept findings). Returns what
/// it did as sysclean's actions (`removed`, `edited`, `skipped`, `warning`),
/// so the manifest is refreshed and the report lists them the same way.
pub fn scrub(root: &Root, report: &SecretReport) -> io::Result<Vec<SyscleanAction>> {
    let mut done = Vec::new();
    let mut seen = HashSet::new();
    let mut shadow = false;
    for f in &report.findings {
        if f.kind == SecretKind::PasswordHash {
            shadow = true;
            continue;
        }
        if !seen.insert(f.path.as_str()) {
            continue;
        }
        done.push(remove_found(root, &f.path)?);
    }
    if shadow {
        done.extend(lock_shadow(root)?);
    }
    let left = report.count.saturating_sub(report.findings.len() as u64);
    if left > 0 {
        done.push(act(
            "warning",
            b"",
            format!(
                "{left} findings beyond the report's first {} were not scrubbed; scan again",
                report.findings.len()
            ),
        ));
    }
    Ok(done)
}

/// Unlinks the regular file at the display path `path`.
fn remove_found(root: &Root, path: &str) -> io::Result<SyscleanAction> {
    let rel = path
        .strip_prefix('/')
        .and_then(unescape_bytes)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad path in the report"))?;
    let regular = root
        .lstat(&rel)?
        .is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG);
    if !regular {
        return Ok(act("skipped", &rel, "no longer a regular file: left alone"));
    }
    Ok(match root.unlink(&rel)? {
        true => act("removed", &rel, "a secret (--scrub)"),
        false => act("skipped", &rel, "already gone"),
    })
}

/// Locks the unlocked hashes of `/etc/shadow` in place.
fn lock_shadow(root: &Root) -> io::Result<Vec<SyscleanAction>> {
    const SHADOW: &[u8] = b"etc/shadow";
    let (data, size) = read_head(root, SHADOW, SHADOW_MAX)?;
    if size > SHADOW_MAX {
        return Ok(vec![act("skipped", SHADOW, "too large: left alone")]);
    }
    let (locked, users) = lock_hashes(&data);
    if !users.is_empty() {
        root.rewrite_file(SHADOW, &locked)?;
    }
    Ok(users
        .iter()
        .map(|u| {
            act(
                "edited",
                SHADOW,
                format!("locked the password of {u} (--scrub)"),
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const PASSWORD: &str = "Hunter2SuperSecret";
    const TOKEN: &str = "ghp_abcdefghijklmnopqrstuvwxyz0123";
    const HASH: &str = "$6$salt$q5QmuyoIKsOI3ZhXQRIaIbUlgK0PCtWAxYcjmLOPnOeDZ5EdyGK/";
    const PEM_BODY: &str = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC";

    fn put(root: &Path, rel: &str, content: &[u8]) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    fn scan_dir(dir: &Path) -> SecretReport {
        let m = crate::scan_tree(dir).unwrap();
        let m = ManifestStore::from_manifest(&m).unwrap();
        scan(&Root::open(dir).unwrap(), &m).unwrap()
    }

    fn shadow_text() -> String {
        format!(
            "root:*:19000:0:99999:7:::\nalice:{HASH}:19000:0:99999:7:::\n\
             bob:!{HASH}:19000::::::\ndaemon:!*:19000::::::\nold:abcdefghijklm:1::::::\n\
             nologin:x:1::::::\nempty::1::::::"
        )
    }

    /// One planted sample of every kind, in a fresh tree.
    fn plant(d: &Path) {
        let key = format!(
            "-----BEGIN OPENSSH PRIVATE KEY-----\n{PEM_BODY}\n-----END OPENSSH PRIVATE KEY-----\n"
        );
        put(d, "home/alice/.ssh/id_ed25519", key.as_bytes());
        put(
            d,
            "opt/app/server.pem",
            format!("junk\n-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n").as_bytes(),
        );
        put(d, "etc/krb5.keytab", &[0x05, 0x02, 0, 0, 0, 0x40]);
        put(d, "etc/munge/munge.key", b"\x01\x02munge");
        put(
            d,
            "root/.aws/credentials",
            format!("[default]\naws_secret_access_key={PASSWORD}\n").as_bytes(),
        );
        put(
            d,
            "home/alice/.kube/config",
            format!("users:\n- user:\n    token: {PASSWORD}\n").as_bytes(),
        );
        put(
            d,
            "home/alice/.docker/config.json",
            br#"{"auths":{"r.io":{"auth":"dXNlcjpwYXNz"}}}"#,
        );
        put(
            d,
            "root/.netrc",
            format!("machine h login u password {PASSWORD}\n").as_bytes(),
        );
        let history = format!(
            "ls\ncd /tmp\ngit push https://x:{TOKEN}@github.com/a/b\nmysql -u root -p{PASSWORD}\n"
        );
        put(d, "root/.bash_history", history.as_bytes());
        put(d, "etc/shadow", shadow_text().as_bytes());
    }

    fn kinds(r: &SecretReport) -> Vec<(String, SecretKind)> {
        r.findings
            .iter()
            .map(|f| (f.path.clone(), f.kind))
            .collect()
    }

    #[test]
    fn every_kind_is_found() {
        let d = tempfile::tempdir().unwrap();
        plant(d.path());
        let r = scan_dir(d.path());
        use SecretKind::*;
        let want = [
            ("/etc/krb5.keytab", KerberosKeytab),
            ("/etc/munge/munge.key", MungeKey),
            ("/etc/shadow", PasswordHash),
            ("/etc/shadow", PasswordHash),
            ("/home/alice/.docker/config.json", CloudCredentials),
            ("/home/alice/.kube/config", CloudCredentials),
            ("/home/alice/.ssh/id_ed25519", PrivateKey),
            ("/opt/app/server.pem", PrivateKey),
            ("/root/.aws/credentials", CloudCredentials),
            ("/root/.bash_history", ShellHistoryToken),
            ("/root/.netrc", Netrc),
        ];
        let mut got = kinds(&r);
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let want: Vec<_> = want.iter().map(|(p, k)| (p.to_string(), *k)).collect();
        assert_eq!(got, want);
        assert_eq!(r.count, 11);
        let shadow: Vec<_> = r
            .findings
            .iter()
            .filter(|f| f.kind == PasswordHash)
            .collect();
        assert!(shadow[0].advice.contains("user alice") && shadow[0].advice.contains("passwd -l"));
        assert!(shadow[1].advice.contains("user old"), "{shadow:?}");
        let hist = r
            .findings
            .iter()
            .find(|f| f.kind == ShellHistoryToken)
            .unwrap();
        assert!(
            hist.advice.starts_with("line 3 (and 1 more lines)"),
            "{}",
            hist.advice
        );
    }

    #[test]
    fn the_report_holds_no_secret() {
        let d = tempfile::tempdir().unwrap();
        plant(d.path());
        let json = serde_json::to_string(&scan_dir(d.path())).unwrap();
        for secret in [
            PASSWORD,
            TOKEN,
            HASH,
            PEM_BODY,
            "dXNlcjpwYXNz",
            "abcdefghijklm",
        ] {
            assert!(!json.contains(secret), "{secret} in {json}");
        }
        assert!(json.contains("\"kind\":\"shell-history-token\""), "{json}");
        let back: SecretReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back.count, 11);
    }

    #[test]
    fn symlinks_are_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        put(outside.path(), "netrc", b"machine h login u password p\n");
        put(outside.path(), "key", b"-----BEGIN PRIVATE KEY-----\n");
        std::fs::create_dir_all(d.path().join("root")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("netrc"), d.path().join("root/.netrc"))
            .unwrap();
        std::os::unix::fs::symlink(outside.path().join("key"), d.path().join("root/id_rsa"))
            .unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("root/.bash_history")).unwrap();
        // a home that is a symlink to a directory outside, holding secrets
        std::fs::create_dir_all(d.path().join("home")).unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("home/eve")).unwrap();
        let r = scan_dir(d.path());
        assert_eq!(r.count, 0, "{r:?}");
        assert_eq!(r.scanned_files, 0);
    }

    #[test]
    fn harmless_lookalikes_give_nothing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        put(
            p,
            "root/.ssh/id_rsa.pub",
            b"ssh-rsa AAAAB3NzaC1yc2E root@node\n",
        );
        put(
            p,
            "etc/ssl/public.pem",
            b"-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n",
        );
        put(
            p,
            "etc/ssl/certs/ca.pem",
            b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        );
        put(
            p,
            "etc/shadow",
            b"root:*:1::::::\nbin:!:1::::::\nsys:!*:1::::::\nx:x:1::::::\n",
        );
        put(p, "root/.netrc", b"");
        put(
            p,
            "root/.bash_history",
            b"ls -l\nmysql -u root -p\nexport PASSWORD=\n--password\n",
        );
        put(
            p,
            "home/bob/.aws/config",
            b"[default]\nregion = eu-west-1\n",
        );
        put(p, "home/bob/.docker/config.json", br#"{"auths":{}}"#);
        put(p, "home/bob/.kube/config", b"clusters: []\n");
        put(p, "var/lib/sss/x.keytab", b"not a keytab");
        put(
            p,
            "usr/share/doc/a.txt",
            b"-----BEGIN lowercase PRIVATE KEY-----\n",
        );
        let r = scan_dir(p);
        assert_eq!(r.count, 0, "{r:?}");
        assert!(r.scanned_files >= 10);
    }

    #[test]
    fn a_clean_distribution_root_gives_nothing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        let mut shadow = String::from("root:*:19700:0:99999:7:::\n");
        for u in [
            "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "nobody",
        ] {
            shadow.push_str(&format!("{u}:*:19700:0:99999:7:::\n"));
        }
        shadow.push_str(
            "systemd-network:!*:19700::::::\nmessagebus:!:19700::::::\n_apt:!:19700::::::\n",
        );
        put(p, "etc/shadow", shadow.as_bytes());
        put(p, "etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n");
        put(
            p,
            "etc/ssl/certs/ISRG_Root_X1.pem",
            b"-----BEGIN CERTIFICATE-----\nMIIFazCCA1Og\n-----END CERTIFICATE-----\n",
        );
        put(
            p,
            "usr/share/doc/openssh-client/README",
            b"Never share your private key. A PRIVATE KEY file starts with a BEGIN line.\n",
        );
        put(
            p,
            "usr/share/doc/gnupg/FAQ",
            b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n",
        );
        put(
            p,
            "usr/share/man/man1/ssh-keygen.1",
            b".Nm ssh-keygen\nprivate key\n",
        );
        put(p, "root/.bashrc", b"# ~/.bashrc\nexport HISTSIZE=1000\n");
        put(p, "root/.profile", b"mesg n\n");
        put(p, "etc/skel/.bashrc", b"# ~/.bashrc\n");
        put(p, "usr/bin/big", &vec![b'-'; KEY_MAX as usize + 1]);
        std::fs::create_dir_all(p.join("home/user")).unwrap();
        put(
            p,
            "home/user/.bash_history",
            b"sudo apt update\nssh-keygen -t ed25519\nman passwd\n",
        );
        let r = scan_dir(p);
        assert_eq!(r.count, 0, "{r:?}");
        assert_eq!(r.skipped_large, 0);
    }

    #[test]
    fn large_files_are_not_read() {
        let d = tempfile::tempdir().unwrap();
        let mut big = b"-----BEGIN PRIVATE KEY-----\n".to_vec();
        big.resize(KEY_MAX as usize + 1, b'A');
        put(d.path(), "root/.ssh/id_rsa", &big);
        put(d.path(), "opt/blob", &big);
        let r = scan_dir(d.path());
        assert_eq!((r.count, r.skipped_large, r.scanned_files), (0, 1, 0));
    }

    #[test]
    fn findings_are_capped_and_counted() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..MAX_FINDINGS + 5 {
            put(
                d.path(),
                &format!("k/{i}.pem"),
                b"-----BEGIN EC PRIVATE KEY-----\n",
            );
        }
        let r = scan_dir(d.path());
        assert_eq!(r.findings.len(), MAX_FINDINGS);
        assert_eq!(r.count, MAX_FINDINGS as u64 + 5);
    }

    #[test]
    fn scrub_removes_and_locks() {
        let d = tempfile::tempdir().unwrap();
        plant(d.path());
        put(d.path(), "root/.ssh/id_rsa.pub", b"ssh-rsa AAAA\n");
        let root = Root::open(d.path()).unwrap();
        let report = scan_dir(d.path());
        // replaced by a symlink since the scan: left alone
        std::fs::remove_file(d.path().join("opt/app/server.pem")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", d.path().join("opt/app/server.pem")).unwrap();
        let done = scrub(&root, &report).unwrap();
        let done: Vec<String> = done
            .iter()
            .map(|a| format!("{} {} {}", a.path, a.action, a.detail))
            .collect();
        assert!(
            done.contains(&"/root/.netrc removed a secret (--scrub)".to_string()),
            "{done:?}"
        );
        assert!(done.contains(
            &"/opt/app/server.pem skipped no longer a regular file: left alone".to_string()
        ));
        assert!(
            done.contains(&"/etc/shadow edited locked the password of alice (--scrub)".to_string())
        );
        assert!(
            done.contains(&"/etc/shadow edited locked the password of old (--scrub)".to_string())
        );
        assert_eq!(done.len(), 11, "{done:?}");
        for gone in [
            "root/.netrc",
            "root/.bash_history",
            "root/.aws/credentials",
            "etc/krb5.keytab",
            "etc/munge/munge.key",
            "home/alice/.ssh/id_ed25519",
            "home/alice/.kube/config",
        ] {
            assert!(!d.path().join(gone).exists(), "{gone}");
        }
        assert!(d.path().join("root/.ssh/id_rsa.pub").exists());
        assert!(
            std::fs::symlink_metadata(d.path().join("opt/app/server.pem"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let want = shadow_text()
            .replace(&format!("alice:{HASH}"), &format!("alice:!{HASH}"))
            .replace("old:abc", "old:!abc");
        assert_eq!(
            std::fs::read_to_string(d.path().join("etc/shadow")).unwrap(),
            want
        );
        // the symlink left in place is not a finding either
        let again = scan_dir(d.path());
        assert_eq!(kinds(&again), vec![]);
    }

    #[test]
    fn history_patterns() {
        for hit in [
            "curl -H 'Authorization: Bearer abc' x",
            "export AWS_SECRET_ACCESS_KEY=abc",
            "x --password=abc",
            "x --password abc",
            "sshpass -p abc ssh h",
            "glpat-abcdef",
            "xoxb-123",
            "curl 'h?token=abc'",
            "Password=abc",
            "/usr/bin/mysqldump -uroot -pabc db",
            ": 1700000000:0;psql --password secret",
        ] {
            assert!(credential_line(hit.as_bytes()), "{hit}");
        }
        for miss in [
            "ls -p",
            "mysql -p",
            "mysql -u root -p db",
            "ghp_short",
            "passwd",
            "token= x",
            "grep -r password .",
            "x --password",
            "x --password --other",
        ] {
            assert!(!credential_line(miss.as_bytes()), "{miss}");
        }
    }

    #[test]
    fn pem_labels() {
        for hit in ["RSA ", "EC ", "DSA ", "ENCRYPTED ", "", "OPENSSH "] {
            let pem = format!("x-----BEGIN {hit}PRIVATE KEY-----\n");
            assert!(has_private_key(pem.as_bytes()), "{hit}");
        }
        for miss in [
            "-----BEGIN PUBLIC KEY-----",
            "-----BEGIN CERTIFICATE-----",
            "-----BEGIN PRIVATE KEY",
            "-----BEGIN  my PRIVATE KEY-----",
            "-----BEGIN ",
        ] {
            assert!(!has_private_key(miss.as_bytes()), "{miss}");
        }
    }
}
