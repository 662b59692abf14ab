//! Signed image records: what an image directory held when this server
//! published it, signed with the server's image-signing key (ed25519).
//!
//! `<imagedir>/image-record.txt` names every file it vouches for (the
//! manifest of the tree, the packed archives, the kernel and initrds) with
//! its size and SHA-256, and ends with the signature of everything above
//! it; one file, replaced by rename, so a record and its signature never
//! disagree. The tree itself is vouched for through the manifest: each of
//! its regular files has its content hash there.
//!
//! ```text
//! #xcat-image-record v1
//! key ed25519 <public key, hex>
//! file capimage-manifest.tsv <size> <sha256 hex>
//! file rootimg.cpio.zst <size> <sha256 hex>
//! signature ed25519 <signature of the lines above, hex>
//! ```
//! The key line says who signed; [`ImageRecord::read_verified`] checks the
//! signature against the key the caller trusts (the server's own), never
//! against the key the record names. The text itself (format, parsing,
//! signature check) is the `xcat-record` crate's, shared with the initrd.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use sha2::{Digest, Sha256};

pub use xcat_record::{fingerprint, RECORD};
use xcat_record::{plain_name, RecordError};

const PEM_LABEL: &str = "PRIVATE KEY";

#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{0}: not an ed25519 private key (PKCS#8 PEM)")]
    BadKey(PathBuf),
    #[error("cannot make an ed25519 key: the system's random source failed")]
    Random,
    #[error("{path}: line {line}: {what}")]
    Malformed {
        path: PathBuf,
        line: usize,
        what: String,
    },
    #[error("{0}: the signature does not verify with this server's image-signing key")]
    BadSignature(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SignatureError + '_ {
    move |source| SignatureError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The server's image-signing key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// Make a new key at `path` (mode 0600); an existing file is left alone
    /// and `false` returned.
    pub fn create(path: &Path) -> Result<bool, SignatureError> {
        if path.exists() {
            return Ok(false);
        }
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| SignatureError::Random)?;
        let pem = pem_encode(pkcs8.as_ref());
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io_err(path))?;
        f.write_all(pem.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io_err(path))?;
        Ok(true)
    }

    pub fn load(path: &Path) -> Result<SigningKey, SignatureError> {
        let text = fs::read_to_string(path).map_err(io_err(path))?;
        let der = pem_decode(&text).ok_or_else(|| SignatureError::BadKey(path.into()))?;
        let pair =
            Ed25519KeyPair::from_pkcs8(&der).map_err(|_| SignatureError::BadKey(path.into()))?;
        Ok(SigningKey { pair })
    }

    pub fn public_key(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    /// `SHA256:<hex>` of the public key (what reports and descriptions show).
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.public_key())
    }

    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.pair.sign(msg).as_ref().to_vec()
    }
}

fn pem_encode(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {PEM_LABEL}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str(&format!("-----END {PEM_LABEL}-----\n"));
    s
}

fn pem_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let begin = format!("-----BEGIN {PEM_LABEL}-----");
    let end = format!("-----END {PEM_LABEL}-----");
    let body = text.split_once(&begin)?.1.split_once(&end)?.0;
    let b64: String = body.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// A file's size and SHA-256, read in one pass.
pub fn digest_file(path: &Path) -> io::Result<(u64, [u8; 32])> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok((size, h.finalize().into()));
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
}

/// What one file differs in from its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileProblem {
    Missing(String),
    Size {
        name: String,
        recorded: u64,
        now: u64,
    },
    Content(String),
}

impl FileProblem {
    /// The file it is about.
    pub fn name(&self) -> &str {
        match self {
            FileProblem::Missing(n) | FileProblem::Content(n) => n,
            FileProblem::Size { name, .. } => name,
        }
    }
}

impl std::fmt::Display for FileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileProblem::Missing(n) => write!(f, "{n}: recorded, not there"),
            FileProblem::Size {
                name,
                recorded,
                now,
            } => {
                write!(f, "{name}: size {now}, recorded {recorded}")
            }
            FileProblem::Content(n) => write!(f, "{n}: content differs from the record (sha256)"),
        }
    }
}

/// The files an image directory's record vouches for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageRecord {
    /// File name (in the image directory) -> size and SHA-256.
    pub files: BTreeMap<String, (u64, [u8; 32])>,
}

impl ImageRecord {
    /// Record `name` (a file of `dir`) as it is now.
    pub fn add(&mut self, dir: &Path, name: &str) -> Result<(), SignatureError> {
        let path = dir.join(name);
        let d = digest_file(&path).map_err(io_err(&path))?;
        self.files.insert(name.to_string(), d);
        Ok(())
    }

    /// Write the record into `dir`, signed with `key`, by rename.
    pub fn write_signed(&self, dir: &Path, key: &SigningKey) -> Result<(), SignatureError> {
        if let Some(bad) = self.files.keys().find(|n| !plain_name(n)) {
            return Err(SignatureError::Malformed {
                path: dir.join(RECORD),
                line: 0,
                what: format!("{bad:?} is not a plain file name"),
            });
        }
        let body = xcat_record::body(&self.files, &key.public_key());
        let text = xcat_record::signed_text(&body, &key.sign(body.as_bytes()));
        let path = dir.join(RECORD);
        crate::util::write_synced(&path, |w| w.write_all(text.as_bytes())).map_err(io_err(&path))
    }

    /// Read `dir`'s record and check its signature against `trusted` (the
    /// server's public key). `Ok(None)`: the directory has no record.
    pub fn read_verified(
        dir: &Path,
        trusted: &[u8],
    ) -> Result<Option<ImageRecord>, SignatureError> {
        let path = dir.join(RECORD);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        match xcat_record::verify(&text, trusted) {
            Ok(files) => Ok(Some(ImageRecord { files })),
            Err(RecordError::NoSignature) => Err(SignatureError::Malformed {
                line: text.lines().count(),
                what: "no signature line at the end".into(),
                path,
            }),
            Err(RecordError::Malformed { line, what }) => {
                Err(SignatureError::Malformed { path, line, what })
            }
            Err(RecordError::BadSignature(_) | RecordError::OtherKey { .. }) => {
                Err(SignatureError::BadSignature(path))
            }
        }
    }

    /// Every recorded file of `dir` that is missing or differs.
    pub fn check_files(&self, dir: &Path) -> Vec<FileProblem> {
        let mut out = Vec::new();
        for (name, (size, sha)) in &self.files {
            match digest_file(&dir.join(name)) {
                Err(_) => out.push(FileProblem::Missing(name.clone())),
                Ok((s, _)) if s != *size => out.push(FileProblem::Size {
                    name: name.clone(),
                    recorded: *size,
                    now: s,
                }),
                Ok((_, h)) if h != *sha => out.push(FileProblem::Content(name.clone())),
                Ok(_) => {}
            }
        }
        out
    }
}

/// The key at `path`, or None when there is none (images go unsigned).
pub fn key_if_present(path: &Path) -> Result<Option<SigningKey>, SignatureError> {
    if !path.exists() {
        return Ok(None);
    }
    SigningKey::load(path).map(Some)
}

/// What a signing step changes in a record.
#[derive(Debug, Default)]
pub struct RecordUpdate<'a> {
    /// Start a new record (a new capture: every earlier packed file is
    /// stale) rather than amend the existing one.
    pub fresh: bool,
    /// Files of the directory to digest as they are now.
    pub add: &'a [&'a str],
    /// Files whose size and SHA-256 the caller computed as it wrote them
    /// (packimage's archive): not read again.
    pub digested: &'a [(&'a str, u64, [u8; 32])],
    /// Files that were removed on purpose (stale archives).
    pub forget: &'a [String],
}

/// Sign `dir`'s record after `update`. An amended record is amended only
/// after its signature verifies, so a tampered record is never signed again.
pub fn update_record(
    dir: &Path,
    key: &SigningKey,
    update: RecordUpdate<'_>,
) -> Result<(), SignatureError> {
    let mut rec = if update.fresh {
        ImageRecord::default()
    } else {
        ImageRecord::read_verified(dir, &key.public_key())?.unwrap_or_default()
    };
    for n in update.forget {
        rec.files.remove(n);
    }
    for n in update.add {
        rec.add(dir, n)?;
    }
    for (n, size, sha) in update.digested {
        rec.files.insert(n.to_string(), (*size, *sha));
    }
    rec.write_signed(dir, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn key(dir: &Path) -> SigningKey {
        let p = dir.join("image-signing.key");
        assert!(SigningKey::create(&p).unwrap());
        assert!(!SigningKey::create(&p).unwrap(), "an existing key is kept");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        SigningKey::load(&p).unwrap()
    }

    #[test]
    fn a_signed_record_verifies_and_finds_changed_files() {
        let t = tempfile::tempdir().unwrap();
        let k = key(t.path());
        fs::write(t.path().join("a.tsv"), b"manifest").unwrap();
        fs::write(t.path().join("rootimg.cpio.zst"), vec![7u8; 5000]).unwrap();
        let mut rec = ImageRecord::default();
        rec.add(t.path(), "a.tsv").unwrap();
        rec.add(t.path(), "rootimg.cpio.zst").unwrap();
        rec.write_signed(t.path(), &k).unwrap();
        let back = ImageRecord::read_verified(t.path(), &k.public_key())
            .unwrap()
            .unwrap();
        assert_eq!(back, rec);
        assert!(back.check_files(t.path()).is_empty());

        let mut packed = fs::read(t.path().join("rootimg.cpio.zst")).unwrap();
        packed[1234] ^= 1;
        fs::write(t.path().join("rootimg.cpio.zst"), packed).unwrap();
        fs::remove_file(t.path().join("a.tsv")).unwrap();
        assert_eq!(
            back.check_files(t.path()),
            vec![
                FileProblem::Missing("a.tsv".into()),
                FileProblem::Content("rootimg.cpio.zst".into())
            ]
        );
    }

    #[test]
    fn a_tampered_record_or_another_key_fails() {
        let t = tempfile::tempdir().unwrap();
        let k = key(t.path());
        fs::write(t.path().join("f"), b"x").unwrap();
        let mut rec = ImageRecord::default();
        rec.add(t.path(), "f").unwrap();
        rec.write_signed(t.path(), &k).unwrap();
        let path = t.path().join(RECORD);
        let good = fs::read_to_string(&path).unwrap();

        let other = tempfile::tempdir().unwrap();
        let k2 = key(other.path());
        assert!(matches!(
            ImageRecord::read_verified(t.path(), &k2.public_key()),
            Err(SignatureError::BadSignature(_))
        ));
        // a size changed by one digit
        fs::write(&path, good.replace("file f 1 ", "file f 2 ")).unwrap();
        assert!(matches!(
            ImageRecord::read_verified(t.path(), &k.public_key()),
            Err(SignatureError::BadSignature(_))
        ));
        // signature line removed
        let unsigned: String = good.lines().take(3).map(|l| format!("{l}\n")).collect();
        fs::write(&path, unsigned).unwrap();
        assert!(matches!(
            ImageRecord::read_verified(t.path(), &k.public_key()),
            Err(SignatureError::Malformed { .. })
        ));
        fs::remove_file(&path).unwrap();
        assert!(ImageRecord::read_verified(t.path(), &k.public_key())
            .unwrap()
            .is_none());
    }

    #[test]
    fn names_with_slashes_or_spaces_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let k = key(t.path());
        let mut rec = ImageRecord::default();
        rec.files.insert("../x".into(), (0, [0; 32]));
        assert!(rec.write_signed(t.path(), &k).is_err());
        assert!(!t.path().join(RECORD).exists());
    }
}
