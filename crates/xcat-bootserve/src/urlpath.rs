//! From a request target to a file beneath one of the two mapped
//! directories, or a refusal. Everything here is decided on the bytes
//! alone, before any file is opened: the kernel's `openat2` confinement
//! (see `serve.rs`) is the second wall, not the only one.
//!
//! Rules, in order:
//! * the target is origin-form (`/...`); a query (`?...`) is ignored;
//! * percent-decoding happens exactly once; a `%` not followed by two hex
//!   digits is refused, and so is any decoded `/` (`%2F`), NUL, backslash
//!   or other control byte (a raw one too);
//! * empty components (`//`) are skipped, as Apache does: xCAT's nodeset
//!   writes `imgurl=http://<server>:80//install/...`, and nodes use it; a
//!   trailing `/` (a directory's form) is refused;
//! * the first component is `install` or `tftpboot`, and nothing else;
//! * below it, every component is at most 255 bytes, and none
//!   starts with `.` (so `.`, `..`, dot files and `.private/` are all
//!   refused), none is `rootimg` or starts with `rootimg.gen-` (node-supplied
//!   trees, compared without case), and there is at least one.
//!
//! `%252e` decodes to the three bytes `%2e`: a file of that literal name,
//! which is looked up like any other (decoding twice is how `..` sneaks
//! past a filter that decodes once).

/// The two URL prefixes and the directories they map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    /// `/install/` -> `site.installdir`.
    Install,
    /// `/tftpboot/` -> `site.tftpdir`.
    Tftpboot,
}

/// A target the rules accept: which directory, and the path beneath it
/// (components joined by `/`, decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    pub prefix: Prefix,
    pub rel: Vec<u8>,
}

/// Why a target is refused (for tests and debugging; the peer only ever
/// sees a bare 404).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not `/...` (absolute-form, `*`, empty).
    NotOriginForm,
    /// `%` not followed by two hex digits.
    BadEncoding,
    /// A decoded `/`, NUL, backslash or control byte.
    ForbiddenByte,
    /// Neither `/install/` nor `/tftpboot/`.
    UnknownPrefix,
    /// Nothing below the prefix, or a trailing `/`.
    Empty,
    /// A component starting with `.`: `.`, `..`, dot files, `.private`.
    Dot,
    /// `rootimg` or `rootimg.gen-N`: a tree a node sent.
    Rootimg,
    /// A component longer than a file name can be.
    TooLong,
}

/// The longest component accepted (`NAME_MAX`).
const NAME_MAX: usize = 255;

/// Apply the rules to a raw request target.
pub fn map(target: &[u8]) -> Result<Mapped, Refusal> {
    let path = match target.iter().position(|&b| b == b'?') {
        Some(q) => &target[..q],
        None => target,
    };
    let Some(path) = path.strip_prefix(b"/") else {
        return Err(Refusal::NotOriginForm);
    };
    if path.ends_with(b"/") {
        // a directory's form: never a file served
        return Err(Refusal::Empty);
    }
    // Split on the raw '/' first, then decode each component: a decoded
    // '/' is thereby never a separator (and is refused in `decode`).
    let mut comps = path.split(|&b| b == b'/').filter(|c| !c.is_empty());
    let prefix = match decode(comps.next().unwrap_or_default())?.as_slice() {
        b"install" => Prefix::Install,
        b"tftpboot" => Prefix::Tftpboot,
        _ => return Err(Refusal::UnknownPrefix),
    };
    let mut rel = Vec::with_capacity(path.len());
    for raw in comps {
        let c = decode(raw)?;
        check_component(&c)?;
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(&c);
    }
    if rel.is_empty() {
        return Err(Refusal::Empty);
    }
    Ok(Mapped { prefix, rel })
}

fn check_component(c: &[u8]) -> Result<(), Refusal> {
    if c.first() == Some(&b'.') {
        return Err(Refusal::Dot);
    }
    if c.len() > NAME_MAX {
        return Err(Refusal::TooLong);
    }
    let lower = c.to_ascii_lowercase();
    if lower == b"rootimg" || lower.starts_with(b"rootimg.gen-") {
        return Err(Refusal::Rootimg);
    }
    Ok(())
}

/// Percent-decode one component, once.
fn decode(raw: &[u8]) -> Result<Vec<u8>, Refusal> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = match raw[i] {
            b'%' => {
                let hex = raw.get(i + 1..i + 3).ok_or(Refusal::BadEncoding)?;
                i += 3;
                (hex_val(hex[0])? << 4) | hex_val(hex[1])?
            }
            b => {
                i += 1;
                b
            }
        };
        if b == b'/' || b == b'\\' || b < 0x20 || b == 0x7f {
            return Err(Refusal::ForbiddenByte);
        }
        out.push(b);
    }
    Ok(out)
}

fn hex_val(h: u8) -> Result<u8, Refusal> {
    match h {
        b'0'..=b'9' => Ok(h - b'0'),
        b'a'..=b'f' => Ok(h - b'a' + 10),
        b'A'..=b'F' => Ok(h - b'A' + 10),
        _ => Err(Refusal::BadEncoding),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(t: &str) -> (Prefix, String) {
        let m = map(t.as_bytes()).unwrap_or_else(|e| panic!("{t}: {e:?}"));
        (m.prefix, String::from_utf8(m.rel).unwrap())
    }

    fn no(t: &str) -> Refusal {
        map(t.as_bytes()).expect_err(t)
    }

    #[test]
    fn the_two_prefixes_map_and_decode_once() {
        assert_eq!(
            ok("/install/netboot/deb12/x86_64/compute/rootimg.cpio.gz"),
            (
                Prefix::Install,
                "netboot/deb12/x86_64/compute/rootimg.cpio.gz".into()
            )
        );
        assert_eq!(
            ok("/tftpboot/xcat/xnba/nodes/n1?x=1"),
            (Prefix::Tftpboot, "xcat/xnba/nodes/n1".into())
        );
        assert_eq!(ok("/install/a%20b"), (Prefix::Install, "a b".into()));
        assert_eq!(
            ok("/install/%252e%252e"),
            (Prefix::Install, "%2e%2e".into())
        );
        assert_eq!(ok("/%69nstall/x"), (Prefix::Install, "x".into()));
        assert_eq!(ok("/install/rootimg.cpio.gz").1, "rootimg.cpio.gz");
        assert_eq!(ok("/install/my.rootimg").1, "my.rootimg");
        // xCAT's imgurl has a double slash: empty components are skipped
        assert_eq!(
            ok("//install/netboot//x/rootimg.cpio.gz"),
            (Prefix::Install, "netboot/x/rootimg.cpio.gz".into())
        );
    }

    #[test]
    fn every_refusal_rule() {
        let cases = [
            ("http://h/install/x", Refusal::NotOriginForm),
            ("*", Refusal::NotOriginForm),
            ("/install/%zz", Refusal::BadEncoding),
            ("/install/a%2", Refusal::BadEncoding),
            ("/install/a%2fb", Refusal::ForbiddenByte),
            ("/install/a%2Fb", Refusal::ForbiddenByte),
            ("/install/a%00", Refusal::ForbiddenByte),
            ("/install/a%5cb", Refusal::ForbiddenByte),
            ("/install/a\\b", Refusal::ForbiddenByte),
            ("/install/a%0a", Refusal::ForbiddenByte),
            ("/etc/passwd", Refusal::UnknownPrefix),
            ("/", Refusal::UnknownPrefix),
            ("/Install/x", Refusal::UnknownPrefix),
            ("/install", Refusal::Empty),
            ("/install/", Refusal::Empty),
            ("/install/a/", Refusal::Empty),
            ("/install/../etc/passwd", Refusal::Dot),
            ("/install/a/./b", Refusal::Dot),
            ("/install/%2e%2e/x", Refusal::Dot),
            ("/install/%2E%2e/x", Refusal::Dot),
            ("/install/.%2e/x", Refusal::Dot),
            ("/install/.private/rootimg/etc/shadow", Refusal::Dot),
            ("/install/img/.lock", Refusal::Dot),
            ("/install/img/rootimg/etc/shadow", Refusal::Rootimg),
            ("/install/img/RootImg/etc/shadow", Refusal::Rootimg),
            ("/install/img/rootimg.gen-3/etc", Refusal::Rootimg),
            ("/tftpboot/rootimg", Refusal::Rootimg),
        ];
        for (t, want) in cases {
            assert_eq!(no(t), want, "{t}");
        }
        assert_eq!(
            no(&format!("/install/{}", "a".repeat(256))),
            Refusal::TooLong
        );
    }

    proptest::proptest! {
        #[test]
        fn nothing_accepted_holds_a_dot_component_or_a_rootimg(t in "/(install|tftpboot)(/[a-zA-Z.%0-9/\\\\]{0,6}){0,6}") {
            if let Ok(m) = map(t.as_bytes()) {
                for c in m.rel.split(|&b| b == b'/') {
                    proptest::prop_assert!(!c.is_empty() && c[0] != b'.', "{t}");
                    proptest::prop_assert!(!c.eq_ignore_ascii_case(b"rootimg"), "{t}");
                    proptest::prop_assert!(!c.contains(&b'\\') && !c.contains(&0), "{t}");
                }
            }
        }
    }
}
