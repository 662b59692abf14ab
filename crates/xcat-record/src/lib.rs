//! The signed image record, as text: what `image-record.txt` says and
//! whether its signature holds. No I/O, so the server (xcat-image's
//! `signature`, which reads and writes records) and the stateless initrd
//! (xcat-netinit, which fetches one over HTTP) read it with the same code.
//!
//! ```text
//! #xcat-image-record v1
//! key ed25519 <public key, hex>
//! file capimage-manifest.tsv <size> <sha256 hex>
//! file rootimg.cpio.zst <size> <sha256 hex>
//! signature ed25519 <signature of the lines above, hex>
//! ```
//! The key line says who signed. [`verify`] checks the signature against
//! the key the caller trusts; [`verify_by_fingerprint`] against the key
//! the record names, once that key's fingerprint is the one the caller
//! trusts (the initrd knows only the fingerprint, from the kernel command
//! line).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use ring::signature::{UnparsedPublicKey, ED25519};
use sha2::{Digest, Sha256};

/// The record's file name in an image directory.
pub const RECORD: &str = "image-record.txt";
const HEADER: &str = "#xcat-image-record v1";
const KEY_PREFIX: &str = "key ed25519 ";
const SIGNATURE_PREFIX: &str = "signature ed25519 ";

/// File name (in the image directory) -> size and SHA-256.
pub type Files = BTreeMap<String, (u64, [u8; 32])>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("no signature line at the end")]
    NoSignature,
    #[error("the signature does not verify with {0}")]
    BadSignature(String),
    #[error("signed by {found}, not by {trusted}")]
    OtherKey { found: String, trusted: String },
    #[error("line {line}: {what}")]
    Malformed { line: usize, what: String },
}

/// `SHA256:<hex>` of a public key.
pub fn fingerprint(public_key: &[u8]) -> String {
    format!("SHA256:{}", hex::encode(Sha256::digest(public_key)))
}

/// A name a record may hold: one plain file of the image directory.
pub fn plain_name(n: &str) -> bool {
    !n.is_empty()
        && n != "."
        && n != ".."
        && !n.contains('/')
        && !n.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The signed text (every line but the signature's).
pub fn body(files: &Files, public_key: &[u8]) -> String {
    let mut s = format!("{HEADER}\n{KEY_PREFIX}{}\n", hex::encode(public_key));
    for (name, (size, sha)) in files {
        s.push_str(&format!("file {name} {size} {}\n", hex::encode(sha)));
    }
    s
}

/// The whole record: `body` and its signature line.
pub fn signed_text(body: &str, signature: &[u8]) -> String {
    format!("{body}{SIGNATURE_PREFIX}{}\n", hex::encode(signature))
}

/// The files of a record whose signature verifies with `trusted`.
pub fn verify(text: &str, trusted: &[u8]) -> Result<Files, RecordError> {
    let (body, sig) = split_signature(text).ok_or(RecordError::NoSignature)?;
    UnparsedPublicKey::new(&ED25519, trusted)
        .verify(body.as_bytes(), &sig)
        .map_err(|_| RecordError::BadSignature(fingerprint(trusted)))?;
    parse_body(body)
}

/// The files of a record signed by the key whose fingerprint is `trusted`
/// (`SHA256:<hex>`, hex in either case).
pub fn verify_by_fingerprint(text: &str, trusted: &str) -> Result<Files, RecordError> {
    let key = key_line(text)?;
    let found = fingerprint(&key);
    if !found.eq_ignore_ascii_case(trusted.trim()) {
        return Err(RecordError::OtherKey {
            found,
            trusted: trusted.to_string(),
        });
    }
    verify(text, &key)
}

/// The public key the record's second line names.
fn key_line(text: &str) -> Result<Vec<u8>, RecordError> {
    let line = text.lines().nth(1).unwrap_or_default();
    line.strip_prefix(KEY_PREFIX)
        .and_then(|k| hex::decode(k).ok())
        .ok_or_else(|| RecordError::Malformed {
            line: 2,
            what: "not an ed25519 key line".into(),
        })
}

/// The signed body and the signature bytes of a record's text.
fn split_signature(text: &str) -> Option<(&str, Vec<u8>)> {
    let trimmed = text.strip_suffix('\n')?;
    let at = trimmed.rfind('\n')? + 1;
    let sig = trimmed[at..].strip_prefix(SIGNATURE_PREFIX)?;
    Some((&text[..at], hex::decode(sig).ok()?))
}

fn parse_body(body: &str) -> Result<Files, RecordError> {
    let bad = |line: usize, what: &str| RecordError::Malformed {
        line,
        what: what.into(),
    };
    let mut lines = body.lines().enumerate();
    match lines.next() {
        Some((_, HEADER)) => {}
        _ => return Err(bad(1, "not an image record (first line)")),
    }
    let mut files = Files::new();
    for (i, line) in lines {
        let w: Vec<&str> = line.split(' ').collect();
        match w.as_slice() {
            ["key", "ed25519", _] => {}
            ["file", name, size, sha] if plain_name(name) => {
                let size = size.parse().map_err(|_| bad(i + 1, "bad size"))?;
                let sha: [u8; 32] = hex::decode(sha)
                    .ok()
                    .and_then(|v| v.try_into().ok())
                    .ok_or_else(|| bad(i + 1, "bad sha256"))?;
                files.insert(name.to_string(), (size, sha));
            }
            _ => return Err(bad(i + 1, "unknown line")),
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    fn pair() -> Ed25519KeyPair {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    }

    fn signed(k: &Ed25519KeyPair, files: &Files) -> String {
        let b = body(files, k.public_key().as_ref());
        signed_text(&b, k.sign(b.as_bytes()).as_ref())
    }

    fn files() -> Files {
        let mut f = Files::new();
        f.insert("rootimg.cpio.zst".into(), (5000, [7u8; 32]));
        f.insert("capimage-manifest.tsv".into(), (12, [1u8; 32]));
        f
    }

    #[test]
    fn a_record_verifies_by_key_and_by_fingerprint() {
        let k = pair();
        let text = signed(&k, &files());
        let public = k.public_key().as_ref();
        assert_eq!(verify(&text, public).unwrap(), files());
        let fp = fingerprint(public).to_uppercase();
        assert_eq!(verify_by_fingerprint(&text, &fp).unwrap(), files());
    }

    #[test]
    fn another_key_a_changed_line_or_a_cut_record_fails() {
        let (k, other) = (pair(), pair());
        let text = signed(&k, &files());
        let theirs = fingerprint(other.public_key().as_ref());
        assert!(matches!(
            verify_by_fingerprint(&text, &theirs),
            Err(RecordError::OtherKey { .. })
        ));
        assert!(matches!(
            verify(&text, other.public_key().as_ref()),
            Err(RecordError::BadSignature(_))
        ));
        let forged = text.replacen(
            "file rootimg.cpio.zst 5000",
            "file rootimg.cpio.zst 5001",
            1,
        );
        assert_ne!(forged, text);
        let mine = fingerprint(k.public_key().as_ref());
        assert!(matches!(
            verify_by_fingerprint(&forged, &mine),
            Err(RecordError::BadSignature(_))
        ));
        // the record re-signed by another key, its key line changed to match
        let resigned = signed(&other, &files());
        assert!(matches!(
            verify_by_fingerprint(&resigned, &mine),
            Err(RecordError::OtherKey { .. })
        ));
        let cut = &text[..text.rfind("signature").unwrap()];
        assert_eq!(
            verify(cut, k.public_key().as_ref()),
            Err(RecordError::NoSignature)
        );
    }

    #[test]
    fn names_that_leave_the_directory_are_not_plain() {
        for bad in ["", ".", "..", "a/b", "a b", "a\nb"] {
            assert!(!plain_name(bad), "{bad:?}");
        }
        assert!(plain_name("rootimg.cpio.zst.info"));
    }
}
