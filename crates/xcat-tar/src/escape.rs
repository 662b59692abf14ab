//! Archive bytes (a path, a value) in a form fit for one line of text.

use std::fmt::Write as _;

/// Renders bytes (a path or a value from the archive) for messages and the manifest:
/// printable ASCII except space and backslash is kept, `\` becomes `\\`, every other
/// byte becomes `\xHH`. The result never contains whitespace, so it is safe in TSV
/// and on a single log line, and [`unescape_bytes`] reverses it exactly.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            0x21..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out
}

/// Reverses [`escape_bytes`]. Returns `None` on a malformed escape.
pub fn unescape_bytes(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            match b.get(i + 1)? {
                b'\\' => {
                    out.push(b'\\');
                    i += 2;
                }
                b'x' => {
                    let hex = s.get(i + 2..i + 4)?;
                    out.push(u8::from_str_radix(hex, 16).ok()?);
                    i += 4;
                }
                _ => return None,
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_roundtrip() {
        let raw: Vec<u8> = (0u8..=255).collect();
        let e = escape_bytes(&raw);
        assert!(!e.contains(' ') && !e.contains('\t') && !e.contains('\n'));
        assert_eq!(unescape_bytes(&e).unwrap(), raw);
        assert_eq!(escape_bytes(b"a b\\c"), "a\\x20b\\\\c");
        assert!(unescape_bytes("\\q").is_none());
    }
}
