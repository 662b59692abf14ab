//! The little of ELF the initrd needs: whether a binary is static (no program
//! interpreter: the initrd has no dynamic loader or libc), which machine it is for,
//! and a kernel module's `.modinfo` strings (its firmware and dependencies).
//!
//! Every offset comes from the file, so every read is checked against its length:
//! a module is image content and may be anything.

/// ELF `e_machine` of the architectures nodes run.
const MACHINES: &[(u16, &str)] = &[
    (3, "i386"),
    (20, "ppc"),
    (21, "ppc64"),
    (22, "s390x"),
    (40, "arm"),
    (62, "x86-64"),
    (183, "aarch64"),
    (243, "riscv"),
];

/// A readable name of an `e_machine` value.
pub fn machine_name(m: u16) -> String {
    MACHINES
        .iter()
        .find(|(n, _)| *n == m)
        .map_or_else(|| format!("ELF machine {m}"), |(_, s)| s.to_string())
}

const PT_INTERP: u32 = 3;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;

/// A parsed ELF header over the whole file's bytes.
#[derive(Debug, Clone, Copy)]
pub struct Elf<'a> {
    data: &'a [u8],
    wide: bool,
    little: bool,
}

impl<'a> Elf<'a> {
    /// None when `data` is not an ELF file of a known class and byte order.
    pub fn parse(data: &'a [u8]) -> Option<Elf<'a>> {
        if data.len() < 52 || &data[..4] != b"\x7fELF" {
            return None;
        }
        let wide = match data[4] {
            1 => false,
            2 => true,
            _ => return None,
        };
        let little = match data[5] {
            1 => true,
            2 => false,
            _ => return None,
        };
        let elf = Elf { data, wide, little };
        (!wide || data.len() >= 64).then_some(elf)
    }

    fn uint(&self, at: usize, len: usize) -> Option<u64> {
        let b = self.data.get(at..at.checked_add(len)?)?;
        let mut v = 0u64;
        for i in 0..len {
            let byte = if self.little { b[len - 1 - i] } else { b[i] };
            v = v << 8 | byte as u64;
        }
        Some(v)
    }

    fn u16(&self, at: usize) -> Option<u16> {
        self.uint(at, 2).map(|v| v as u16)
    }

    fn u32(&self, at: usize) -> Option<u32> {
        self.uint(at, 4).map(|v| v as u32)
    }

    /// An address-sized field (`Elf64_Off` or `Elf32_Off`).
    fn word(&self, at32: usize, at64: usize) -> Option<usize> {
        let v = if self.wide {
            self.uint(at64, 8)?
        } else {
            self.uint(at32, 4)?
        };
        usize::try_from(v).ok()
    }

    pub fn machine(&self) -> u16 {
        self.u16(18).unwrap_or(0)
    }

    /// An executable (fixed or position-independent), not an object file.
    pub fn is_executable(&self) -> bool {
        matches!(self.u16(16), Some(ET_EXEC | ET_DYN))
    }

    /// Whether a program header asks for an interpreter (a dynamic loader).
    /// An unreadable table counts as asking: nothing unreadable is called static.
    pub fn has_interp(&self) -> bool {
        let read = || -> Option<bool> {
            let off = self.word(28, 32)?;
            let (size, count) = if self.wide {
                (self.u16(54)?, self.u16(56)?)
            } else {
                (self.u16(42)?, self.u16(44)?)
            };
            for i in 0..count as usize {
                let at = off.checked_add(i.checked_mul(size as usize)?)?;
                if self.u32(at)? == PT_INTERP {
                    return Some(true);
                }
            }
            Some(false)
        };
        read().unwrap_or(true)
    }

    /// The bytes of the section called `name`, if there is one.
    pub fn section(&self, name: &[u8]) -> Option<&'a [u8]> {
        let off = self.word(32, 40)?;
        let (size, count, names) = if self.wide {
            (self.u16(58)?, self.u16(60)?, self.u16(62)?)
        } else {
            (self.u16(46)?, self.u16(48)?, self.u16(50)?)
        };
        let header = |i: usize| off.checked_add(i.checked_mul(size as usize)?);
        let bytes = |h: usize| -> Option<&'a [u8]> {
            let (o, l) = (self.word(h + 16, h + 24)?, self.word(h + 20, h + 32)?);
            self.data.get(o..o.checked_add(l)?)
        };
        let strtab = bytes(header(names as usize)?)?;
        (0..count as usize).find_map(|i| {
            let h = header(i)?;
            let n = strtab.get(self.u32(h)? as usize..)?;
            let n = &n[..n.iter().position(|&b| b == 0)?];
            (n == name).then(|| bytes(h)).flatten()
        })
    }
}

/// What a module's `.modinfo` says about what it needs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ModInfo {
    /// `firmware=` files, relative to the firmware directory.
    pub firmware: Vec<String>,
    /// `depends=`: the modules it needs loaded first, by name.
    pub depends: Vec<String>,
    /// `softdep=pre:` modules (names or aliases): to load first when the kernel
    /// has them.
    pub pre: Vec<String>,
    /// `alias=` names other modules ask for it by (`crc32c`); device patterns
    /// (`pci:v...`) left out.
    pub aliases: Vec<String>,
}

impl ModInfo {
    /// The `.modinfo` of the module file `data` (an empty one without it).
    pub fn of(data: &[u8]) -> ModInfo {
        let Some(section) = Elf::parse(data).and_then(|e| e.section(b".modinfo")) else {
            return ModInfo::default();
        };
        let mut m = ModInfo::default();
        for s in section.split(|&b| b == 0) {
            let Some((k, v)) = std::str::from_utf8(s).ok().and_then(|s| s.split_once('=')) else {
                continue;
            };
            match k {
                "firmware" if !v.is_empty() => m.firmware.push(v.to_string()),
                "depends" => m
                    .depends
                    .extend(v.split(',').filter(|d| !d.is_empty()).map(str::to_string)),
                "softdep" => m.pre.extend(pre_softdeps(v)),
                "alias" if !v.contains([':', '*']) => m.aliases.push(v.to_string()),
                _ => {}
            }
        }
        m
    }
}

/// The `pre:` names of a `softdep=` value (`pre: crc32c post: foo`).
fn pre_softdeps(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut pre = false;
    for w in v.split_whitespace() {
        match w {
            "pre:" => pre = true,
            "post:" => pre = false,
            w if pre => out.push(w.to_string()),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal 64-bit little-endian ELF relocatable file with a `.modinfo`
    /// section holding `strings` (NUL-separated), as `modpost` leaves it.
    pub(crate) fn module_with(strings: &[&str]) -> Vec<u8> {
        let mut modinfo = Vec::new();
        for s in strings {
            modinfo.extend_from_slice(s.as_bytes());
            modinfo.push(0);
        }
        let shstrtab = b"\0.modinfo\0.shstrtab\0".to_vec();
        let mut f = vec![0u8; 64];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[6] = 1;
        f[16] = 1; // ET_REL
        f[18] = 62;
        let modinfo_off = f.len();
        f.extend_from_slice(&modinfo);
        let strtab_off = f.len();
        f.extend_from_slice(&shstrtab);
        f.resize(f.len().div_ceil(8) * 8, 0);
        let shoff = f.len();
        let mut sh = |name: u32, typ: u32, off: usize, size: usize| {
            let mut h = vec![0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[4..8].copy_from_slice(&typ.to_le_bytes());
            h[24..32].copy_from_slice(&(off as u64).to_le_bytes());
            h[32..40].copy_from_slice(&(size as u64).to_le_bytes());
            f.extend_from_slice(&h);
        };
        sh(0, 0, 0, 0);
        sh(1, 1, modinfo_off, modinfo.len());
        sh(10, 3, strtab_off, shstrtab.len());
        f[40..48].copy_from_slice(&(shoff as u64).to_le_bytes());
        f[58..60].copy_from_slice(&64u16.to_le_bytes());
        f[60..62].copy_from_slice(&3u16.to_le_bytes());
        f[62..64].copy_from_slice(&2u16.to_le_bytes());
        f
    }

    #[test]
    fn modinfo_gives_firmware_depends_and_pre_softdeps() {
        let m = ModInfo::of(&module_with(&[
            "license=GPL",
            "firmware=rtl_nic/rtl8168g-2.fw",
            "firmware=rtl_nic/rtl8125a-3.fw",
            "softdep=pre: crc32c libcrc32c post: zz",
            "depends=mii,libphy",
            "alias=pci:v000010ECd00008161sv*sd*bc*sc*i*",
            "alias=crypto-r8169",
            "name=r8169",
        ]));
        assert_eq!(m.aliases, ["crypto-r8169"]);
        assert_eq!(
            m.firmware,
            ["rtl_nic/rtl8168g-2.fw", "rtl_nic/rtl8125a-3.fw"]
        );
        assert_eq!(m.depends, ["mii", "libphy"]);
        assert_eq!(m.pre, ["crc32c", "libcrc32c"]);
        assert_eq!(ModInfo::of(&module_with(&["depends="])), ModInfo::default());
    }

    #[test]
    fn garbage_is_no_elf_and_truncation_is_no_section() {
        assert!(Elf::parse(b"#!/bin/sh\necho hi\n").is_none());
        assert_eq!(ModInfo::of(b"\x7fELF garbage"), ModInfo::default());
        let m = module_with(&["firmware=a.bin"]);
        for cut in [70, 100, m.len() - 30] {
            assert_eq!(ModInfo::of(&m[..cut]), ModInfo::default(), "cut at {cut}");
        }
        let e = Elf::parse(&m).unwrap();
        assert_eq!(machine_name(e.machine()), "x86-64");
        assert!(!e.is_executable(), "a module is an object file");
        assert!(!e.has_interp(), "no program headers");
    }

    /// A 64-bit executable with one program header of type `ptype`.
    pub(crate) fn executable(machine: u16, ptype: u32) -> Vec<u8> {
        let mut f = vec![0u8; 64 + 56];
        f[..4].copy_from_slice(b"\x7fELF");
        (f[4], f[5], f[6]) = (2, 1, 1);
        f[16] = 2; // ET_EXEC
        f[18..20].copy_from_slice(&machine.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&1u16.to_le_bytes());
        f[64..68].copy_from_slice(&ptype.to_le_bytes());
        f
    }

    #[test]
    fn an_interpreter_makes_a_binary_dynamic() {
        let stat = executable(183, 1);
        let e = Elf::parse(&stat).unwrap();
        assert!(e.is_executable() && !e.has_interp());
        assert_eq!(machine_name(e.machine()), "aarch64");
        assert!(Elf::parse(&executable(62, PT_INTERP)).unwrap().has_interp());
        // A program header table past the end is not taken for a static binary.
        assert!(Elf::parse(&stat[..66]).unwrap().has_interp());
        let ls = std::fs::read("/bin/ls").unwrap();
        assert!(Elf::parse(&ls).unwrap().has_interp(), "/bin/ls is dynamic");
    }
}
