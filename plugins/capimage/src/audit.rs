//! What went into the image, for whoever boots or audits it: the secrets
//! left in the tree (`--scrub` removes them) and its packages and kernels.
//!
//! It runs on the staging tree after sysclean, so node identity (host
//! keys, machine ids, shell histories sysclean removes) is already gone,
//! and reads only the files the manifest lists ([`xcat_image::secrets`]).

use std::path::Path;

use xcat_image::beneath::Root;
use xcat_image::packages::{self, PackageReport};
use xcat_image::secrets::{self, SecretKind, SecretReport};
use xcat_image::sysclean::SyscleanAction;
use xcat_image::ManifestStore;
use xcat_jobkit::blocking;
use xcat_plugin::Responder;

use crate::error::CaptureError;
use crate::job::Job;

/// How many findings are printed (all are in the report).
const PRINTED: usize = 10;

/// The audit's results.
#[derive(Debug, Default)]
pub struct Audit {
    pub secrets: SecretReport,
    pub packages: PackageReport,
    /// What `--scrub` did (sysclean's action form; empty without it).
    pub scrubbed: Vec<SyscleanAction>,
}

/// Scan the staging tree; with `scrub`, remove what was found and record
/// the change in `manifest`. The scan runs on a blocking thread, with the
/// manifest lent to it.
pub async fn run(
    (staging, job): (&Path, &Job),
    scrub: bool,
    manifest: &mut ManifestStore,
) -> Result<Audit, CaptureError> {
    let placeholder =
        ManifestStore::new().map_err(CaptureError::io("open a manifest for", staging))?;
    let store = std::mem::replace(manifest, placeholder);
    let root = staging.to_path_buf();
    let hold = job.hold.clone();
    let (store, done) = blocking(move || {
        let _hold = hold;
        let done = scan(&root, scrub, &store);
        (store, done)
    })
    .await?;
    *manifest = store;
    let audit = done.map_err(CaptureError::io("audit", staging))?;
    crate::signing::refresh_manifest(manifest, staging, &audit.scrubbed).map_err(
        CaptureError::io("record --scrub's changes in the manifest of", staging),
    )?;
    Ok(audit)
}

fn scan(root: &Path, scrub: bool, store: &ManifestStore) -> std::io::Result<Audit> {
    let tree = Root::open(root)?;
    let secrets = secrets::scan(&tree, store)?;
    let scrubbed = if scrub {
        secrets::scrub(&tree, &secrets)?
    } else {
        Vec::new()
    };
    Ok(Audit {
        secrets,
        packages: packages::list(&tree),
        scrubbed,
    })
}

/// The audit's lines: a summary of the secrets and of the packages; the
/// first findings as warnings, or what `--scrub` did.
pub async fn announce(node: &str, a: &Audit, out: &Responder) -> Result<(), CaptureError> {
    let s = &a.secrets;
    if s.count == 0 {
        out.info(format!(
            "capimage: no secrets found in the image of {node} ({} files read)",
            s.scanned_files
        ))
        .await?;
    } else if a.scrubbed.is_empty() {
        out.warning(format!(
            "capimage: {} secrets left in the image of {node} ({}); remove them, or capture again with --scrub",
            s.count,
            kinds(s)
        ))
        .await?;
        for f in s.findings.iter().take(PRINTED) {
            out.warning(format!("{node}: {}: {}", f.path, f.advice))
                .await?;
        }
    } else {
        for a in &a.scrubbed {
            out.info(format!(
                "capimage: scrub {} {} {}",
                a.action, a.path, a.detail
            ))
            .await?;
        }
    }
    out.info(packages_line(&a.packages)).await?;
    Ok(())
}

/// `private key: 3, munge key: 1`: the kinds found, most first.
fn kinds(s: &SecretReport) -> String {
    let mut counts: Vec<(SecretKind, usize)> = Vec::new();
    for f in &s.findings {
        match counts.iter_mut().find(|(k, _)| *k == f.kind) {
            Some((_, n)) => *n += 1,
            None => counts.push((f.kind, 1)),
        }
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    counts
        .iter()
        .map(|(k, n)| format!("{}: {n}", kind_name(*k)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn kind_name(k: SecretKind) -> &'static str {
    match k {
        SecretKind::PrivateKey => "private key",
        SecretKind::KerberosKeytab => "Kerberos keytab",
        SecretKind::MungeKey => "munge key",
        SecretKind::CloudCredentials => "cloud credential file",
        SecretKind::Netrc => ".netrc",
        SecretKind::ShellHistoryToken => "token in a shell history",
        SecretKind::PasswordHash => "unlocked password",
    }
}

fn packages_line(p: &PackageReport) -> String {
    let kernels = if p.kernels.is_empty() {
        "no kernel modules".to_string()
    } else {
        format!("modules for kernel {}", p.kernels.join(", "))
    };
    match p.manager.as_str() {
        "none" => format!("capimage: no package database in the image; {kernels}"),
        m if p.packages.is_empty() => format!(
            "capimage: {m} database in the image ({}); {kernels}",
            p.note.as_deref().unwrap_or("not listed")
        ),
        m => format!(
            "capimage: the image holds {} {m} packages (listed in the report); {kernels}",
            p.count
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xcat_image::secrets::Finding;

    #[test]
    fn kinds_are_counted_most_first() {
        let f = |kind| Finding {
            path: "/x".into(),
            kind,
            advice: String::new(),
        };
        let s = SecretReport {
            findings: vec![
                f(SecretKind::MungeKey),
                f(SecretKind::PrivateKey),
                f(SecretKind::PrivateKey),
            ],
            count: 3,
            ..Default::default()
        };
        assert_eq!(kinds(&s), "private key: 2, munge key: 1");
    }
}
