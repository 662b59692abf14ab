//! The size and SHA-256 of the packed file, checked as its bytes pass, against
//! what the record says.

use crate::record::Record;
use sha2::{Digest, Sha256};

/// Where the bytes and the record disagree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("more than the {expected} bytes the record gives arrived")]
    TooLong { expected: u64 },
    #[error("{got} bytes arrived, the record says {expected}")]
    Size { got: u64, expected: u64 },
    #[error("its SHA-256 is {got}, the record says {expected}")]
    Checksum { got: String, expected: String },
}

/// Hashes and counts; see the module documentation.
pub struct Verifier {
    hasher: Sha256,
    bytes: u64,
    size: Option<u64>,
    sha256: Option<[u8; 32]>,
}

impl Verifier {
    /// Checks against the record's `size` and `sha256` (each only if given).
    pub fn new(record: &Record) -> Verifier {
        Verifier {
            hasher: Sha256::new(),
            bytes: 0,
            size: record.size,
            sha256: record.sha256,
        }
    }

    /// Whether there is anything to check.
    pub fn checks(&self) -> bool {
        self.size.is_some() || self.sha256.is_some()
    }

    /// Takes the next bytes; more bytes than the record's size is an error at once.
    pub fn update(&mut self, bytes: &[u8]) -> Result<(), VerifyError> {
        self.bytes += bytes.len() as u64;
        if let Some(expected) = self.size.filter(|&s| self.bytes > s) {
            return Err(VerifyError::TooLong { expected });
        }
        if self.sha256.is_some() {
            self.hasher.update(bytes);
        }
        Ok(())
    }

    /// At the end of the file: the size, then the checksum.
    pub fn finish(self) -> Result<u64, VerifyError> {
        if let Some(expected) = self.size.filter(|&s| s != self.bytes) {
            return Err(VerifyError::Size {
                got: self.bytes,
                expected,
            });
        }
        if let Some(want) = self.sha256 {
            let got: [u8; 32] = self.hasher.finalize().into();
            if got != want {
                return Err(VerifyError::Checksum {
                    got: hex::encode(got),
                    expected: hex::encode(want),
                });
            }
        }
        Ok(self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(data: &[u8]) -> Record {
        Record {
            size: Some(data.len() as u64),
            sha256: Some(Sha256::digest(data).into()),
            ..Record::default()
        }
    }

    #[test]
    fn the_right_bytes_pass_in_any_pieces() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let mut v = Verifier::new(&record(&data));
        for piece in data.chunks(999) {
            v.update(piece).unwrap();
        }
        assert_eq!(v.finish().unwrap(), 100_000);
    }

    #[test]
    fn one_changed_byte_fails() {
        let data = vec![7u8; 5000];
        let mut bad = data.clone();
        bad[4321] ^= 1;
        let mut v = Verifier::new(&record(&data));
        v.update(&bad).unwrap();
        assert!(matches!(v.finish(), Err(VerifyError::Checksum { .. })));
    }

    #[test]
    fn sizes() {
        let data = vec![1u8; 10];
        let mut short = Verifier::new(&record(&data));
        short.update(&data[..9]).unwrap();
        assert_eq!(
            short.finish(),
            Err(VerifyError::Size {
                got: 9,
                expected: 10
            })
        );
        let mut long = Verifier::new(&record(&data));
        long.update(&data).unwrap();
        assert!(long.update(b"x").is_err());
        let mut none = Verifier::new(&Record::default());
        assert!(!none.checks());
        none.update(b"anything").unwrap();
        assert_eq!(none.finish().unwrap(), 8);
    }
}
