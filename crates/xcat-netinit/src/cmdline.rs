//! The kernel command line: the words nodeset and the bootloader put there.
//!
//! Words are split as the kernel splits them: at spaces outside double quotes,
//! the quotes themselves removed (`a="x y"` is `a` = `x y`). A key given twice
//! keeps its last value, as a later word overrides an earlier one for the
//! kernel's own parameters. Keys are case-sensitive (`BOOTIF`, `XCAT`, `NODE`
//! upper case; `imgurl`, `rootlimit`, `netdev` lower case), as xCAT writes them.

use std::fmt;

/// What xcat-netinit reads from the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cmdline {
    /// `imgurl=`: the packed image (`boot` requires it).
    pub imgurl: Option<String>,
    /// `imgkey=SHA256:<hex>`: the fingerprint of the key that must have
    /// signed the image directory's record (nodeset writes it for a signed
    /// image); then the packed file must be the one the record names.
    pub imgkey: Option<String>,
    /// `rootlimit=`: the size of the root tmpfs (or of the overlay's upper).
    pub rootlimit: Option<Size>,
    /// `BOOTIF=`: the MAC of the interface the node booted from.
    pub bootif: Option<Mac>,
    /// `netdev=`: the boot interface by name (nodeset writes it when the
    /// install NIC is a name rather than a MAC).
    pub netdev: Option<String>,
    /// `XCAT=host:port`: the management node's daemon.
    pub xcat: Option<String>,
    /// `NODE=`: this node's name.
    pub node: Option<String>,
    /// `root=nfs:<server>:<dir>[:<options>]`: a read-only NFS root (statelite).
    pub nfsroot: Option<String>,
    /// `STATEMNT=`: a statelite node's persistent state (`server:/dir`, or
    /// empty: none). Present, even empty, on every statelite command line.
    pub statemnt: Option<String>,
    /// `MNTOPTS=`: the mount options of the persistent state.
    pub mntopts: Option<String>,
}

/// A malformed value of a word xcat-netinit reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmdlineError {
    #[error(
        "rootlimit={0} is not a size (bytes, a number with K, M, G or T, or a percentage of RAM)"
    )]
    Rootlimit(String),
    #[error("BOOTIF={0} is not a MAC address (01-aa-bb-cc-dd-ee-ff or aa:bb:cc:dd:ee:ff)")]
    Bootif(String),
    #[error("XCAT={0} is not host:port")]
    Xcat(String),
}

impl Cmdline {
    /// Parses the text of `/proc/cmdline`.
    pub fn parse(text: &str) -> Result<Cmdline, CmdlineError> {
        let mut c = Cmdline::default();
        for word in words(text) {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            let value = value.to_string();
            match key {
                "imgurl" => c.imgurl = Some(value),
                "imgkey" => c.imgkey = Some(value),
                "rootlimit" => {
                    c.rootlimit = Some(Size::parse(&value).ok_or(CmdlineError::Rootlimit(value))?)
                }
                "BOOTIF" => c.bootif = Some(Mac::parse(&value).ok_or(CmdlineError::Bootif(value))?),
                "netdev" => c.netdev = Some(value),
                "XCAT" => c.xcat = Some(check_host_port(value)?),
                "NODE" => c.node = Some(value),
                "root" => c.nfsroot = value.strip_prefix("nfs:").map(str::to_string),
                "STATEMNT" => c.statemnt = Some(value),
                "MNTOPTS" => c.mntopts = Some(value),
                _ => {}
            }
        }
        Ok(c)
    }
}

/// `host:port` with a numeric port (the host is whatever the bootloader put).
fn check_host_port(v: String) -> Result<String, CmdlineError> {
    match v.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => Ok(v),
        _ => Err(CmdlineError::Xcat(v)),
    }
}

/// Splits a command line into words: whitespace outside double quotes ends a
/// word, and the quote characters are dropped.
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut started = false;
    for ch in text.chars() {
        match ch {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            c if c.is_whitespace() && !quoted => {
                if started {
                    out.push(std::mem::take(&mut cur));
                }
                started = false;
            }
            c => {
                cur.push(c);
                started = true;
            }
        }
    }
    if started {
        out.push(cur);
    }
    out
}

/// A size as `rootlimit=` gives it (the form tmpfs's `size=` takes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Bytes(u64),
    /// A percentage of RAM.
    Percent(u64),
}

impl Size {
    /// `4G`, `800M`, `512k`, `1073741824`, `50%`; zero is refused (to tmpfs it
    /// would mean "no limit").
    pub fn parse(s: &str) -> Option<Size> {
        if let Some(p) = s.strip_suffix('%') {
            let p: u64 = digits(p)?;
            return (1..=100).contains(&p).then_some(Size::Percent(p));
        }
        let (num, shift) = match s.char_indices().last()? {
            (i, 'k' | 'K') => (&s[..i], 10),
            (i, 'm' | 'M') => (&s[..i], 20),
            (i, 'g' | 'G') => (&s[..i], 30),
            (i, 't' | 'T') => (&s[..i], 40),
            _ => (s, 0),
        };
        let n = digits(num)?;
        let bytes = n.checked_mul(1u64 << shift)?;
        (bytes > 0).then_some(Size::Bytes(bytes))
    }

    /// The size in bytes on a node with `mem_total` bytes of RAM.
    pub fn bytes(self, mem_total: u64) -> u64 {
        match self {
            Size::Bytes(b) => b,
            Size::Percent(p) => (u128::from(mem_total) * u128::from(p) / 100) as u64,
        }
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Size::Bytes(b) => write!(f, "{b}"),
            Size::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// A non-empty run of ASCII digits.
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// An Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// `01-aa-bb-cc-dd-ee-ff` (PXELINUX's and iPXE's form: hardware type 1,
    /// Ethernet, then the address), `aa-bb-cc-dd-ee-ff` or `aa:bb:cc:dd:ee:ff`,
    /// any case.
    pub fn parse(s: &str) -> Option<Mac> {
        let parts: Vec<&str> = s.split([':', '-']).collect();
        let hex = match parts.len() {
            7 if parts[0] == "01" && s.contains('-') => &parts[1..],
            6 => &parts[..],
            _ => return None,
        };
        let mut mac = [0u8; 6];
        for (b, p) in mac.iter_mut().zip(hex) {
            if p.len() != 2 {
                return None;
            }
            *b = u8::from_str_radix(p, 16).ok()?;
        }
        Some(Mac(mac))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_like_the_kernel() {
        assert_eq!(
            words("  a=1 b=\"x y\"  \"c=p q\" d\n"),
            vec!["a=1", "b=x y", "c=p q", "d"]
        );
        assert_eq!(words("e=\"\" f"), vec!["e=", "f"]);
        assert!(words(" \n").is_empty());
    }

    #[test]
    fn xcat_command_line() {
        let line =
            "BOOT_IMAGE=/kernel imgurl=http://10.99.60.1:80//install/netboot/img/rootimg.tar.zst \
             XCAT=10.99.60.1:3001 NODE=cn1 FC=0 XCATHTTPPORT=80 BOOTIF=01-52-54-00-AB-cd-01 \
             console=ttyS0,115200n8 rootlimit=4G quiet";
        let c = Cmdline::parse(line).unwrap();
        assert_eq!(
            c.imgurl.as_deref(),
            Some("http://10.99.60.1:80//install/netboot/img/rootimg.tar.zst")
        );
        assert_eq!(c.xcat.as_deref(), Some("10.99.60.1:3001"));
        assert_eq!(c.node.as_deref(), Some("cn1"));
        assert_eq!(c.bootif.unwrap().to_string(), "52:54:00:ab:cd:01");
        assert_eq!(c.rootlimit, Some(Size::Bytes(4 << 30)));
        assert_eq!(c.netdev, None);
    }

    #[test]
    fn the_last_word_wins_and_quotes_are_removed() {
        let c = Cmdline::parse("imgurl=http://a/1 imgurl=\"http://b/2\" NODE=\"n 1\"").unwrap();
        assert_eq!(c.imgurl.as_deref(), Some("http://b/2"));
        assert_eq!(c.node.as_deref(), Some("n 1"));
        assert_eq!(Cmdline::parse("quiet").unwrap(), Cmdline::default());
    }

    #[test]
    fn sizes() {
        assert_eq!(Size::parse("800M"), Some(Size::Bytes(800 << 20)));
        assert_eq!(Size::parse("512k"), Some(Size::Bytes(512 << 10)));
        assert_eq!(Size::parse("2g"), Some(Size::Bytes(2 << 30)));
        assert_eq!(Size::parse("1T"), Some(Size::Bytes(1 << 40)));
        assert_eq!(Size::parse("1073741824"), Some(Size::Bytes(1 << 30)));
        assert_eq!(Size::parse("50%"), Some(Size::Percent(50)));
        assert_eq!(Size::Percent(50).bytes(8 << 30), 4 << 30);
        for bad in [
            "",
            "G",
            "0",
            "0M",
            "4GB",
            "-1",
            "1.5G",
            "101%",
            "0%",
            "x%",
            "99999999999T",
        ] {
            assert_eq!(Size::parse(bad), None, "{bad}");
        }
        assert_eq!(
            Cmdline::parse("rootlimit=4GB").unwrap_err(),
            CmdlineError::Rootlimit("4GB".into())
        );
    }

    #[test]
    fn macs_in_both_forms() {
        let want = Mac([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]);
        for s in [
            "01-aa-bb-cc-dd-ee-ff",
            "aa:bb:cc:dd:ee:ff",
            "AA-BB-CC-DD-EE-FF",
            "01-AA-bb-CC-dd-EE-ff",
        ] {
            assert_eq!(Mac::parse(s), Some(want), "{s}");
        }
        for bad in [
            "01:aa:bb:cc:dd:ee:ff",
            "02-aa-bb-cc-dd-ee-ff",
            "aa:bb:cc:dd:ee",
            "aa:bb:cc:dd:ee:fg",
            "a:bb:cc:dd:ee:fff",
        ] {
            assert_eq!(Mac::parse(bad), None, "{bad}");
        }
        assert!(matches!(
            Cmdline::parse("BOOTIF=nonsense"),
            Err(CmdlineError::Bootif(_))
        ));
    }

    #[test]
    fn statelite_words() {
        let c = Cmdline::parse(
            "root=nfs:10.99.60.1:/install/x/rootimg:ro,port=2050 STATEMNT= XCAT=10.99.60.1:3001 NODE=n1  MNTOPTS=vers=4.1",
        )
        .unwrap();
        assert_eq!(
            c.nfsroot.as_deref(),
            Some("10.99.60.1:/install/x/rootimg:ro,port=2050")
        );
        assert_eq!(c.statemnt.as_deref(), Some(""));
        assert_eq!(c.mntopts.as_deref(), Some("vers=4.1"));
        let c = Cmdline::parse("root=/dev/sda1 imgurl=http://a/b").unwrap();
        assert_eq!((c.nfsroot, c.statemnt), (None, None));
    }

    #[test]
    fn xcat_is_host_and_port() {
        assert!(Cmdline::parse("XCAT=10.0.0.1:3001").is_ok());
        assert!(Cmdline::parse("XCAT=10.0.0.1").is_err());
        assert!(Cmdline::parse("XCAT=:3001").is_err());
    }
}
