//! `imgkey=SHA256:<hex>`: the image must be the one this server signed.
//!
//! The `.info` record beside a packed file is not signed, so whoever can
//! change files in the image directory (or answer for the server) can
//! change it and the file together. With `imgkey=` on the command line,
//! the image directory's `image-record.txt` (signed by the server's
//! image-signing key; `packimage` adds the packed file and its `.info`) is
//! fetched too and must verify with the key of that fingerprint; the
//! packed file's size and SHA-256 are then taken from it, and the `.info`
//! must be the one it names. Anything less refuses the image.

use sha2::{Digest, Sha256};

use crate::boot::{fetch_small, refused_record, Settings};
use crate::error::{Exit, Failure};
use crate::http::Url;
use crate::record::Record;

/// Check `url`'s image against its directory's signed record, made by the
/// key `fingerprint` names; `record` (the `.info`, whose bytes are `info`)
/// then carries the signed size and SHA-256.
pub fn require(
    url: &Url,
    info: Option<&[u8]>,
    record: &mut Record,
    fingerprint: &str,
    s: &Settings,
) -> Result<(), Failure> {
    let signed_url = url.sibling(xcat_record::RECORD);
    let Some(raw) = fetch_small(&signed_url, s)? else {
        return Err(refused(
            &signed_url,
            "imgkey= is given, but the image directory has no signed record (404)".into(),
        ));
    };
    let text = String::from_utf8_lossy(&raw);
    let files = xcat_record::verify_by_fingerprint(&text, fingerprint)
        .map_err(|e| refused(&signed_url, e.to_string()))?;
    let name = url.file_name();
    let &(size, sha) = files.get(name).ok_or_else(|| {
        refused(
            &signed_url,
            format!("the signed record does not name {name}"),
        )
    })?;
    let info_name = format!("{name}.info");
    if let Some(&(isize, isha)) = files.get(&info_name) {
        let same = info.is_some_and(|b| b.len() as u64 == isize && digest(b) == isha);
        if !same {
            let why = format!("{info_name} is not the one the signed record names");
            return Err(refused_record(&url.with_suffix(".info"), why));
        }
    }
    record.size = Some(size);
    record.sha256 = Some(sha);
    (s.say)(&format!(
        "{signed_url}: signed by {fingerprint}; {name} must have {size} bytes and the recorded SHA-256"
    ));
    Ok(())
}

fn digest(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

fn refused(url: &Url, why: String) -> Failure {
    Failure::new(
        Exit::Refused,
        format!("checking {url}"),
        why,
        "run packimage for this image on the management node (with the image-signing key xcatd init makes), then nodeset again",
    )
}
