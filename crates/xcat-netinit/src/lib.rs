//! `xcat-netinit`: what the stateless initrd's `/init` cannot do in shell.
//!
//! Four commands (the initrd's contract, `docs/ARCHITECTURE.md`):
//!
//! * `xcat-netinit nic` prints the boot interface: the one whose MAC is the
//!   command line's `BOOTIF=` (`01-aa-bb-cc-dd-ee-ff` or `aa:bb:cc:dd:ee:ff`), else
//!   the one `netdev=` names, else the first non-loopback interface with carrier
//!   (waiting up to 30 s) ([`nic`]).
//! * `xcat-netinit boot NEWROOT` fetches `imgurl=` and its record `<imgurl>.info`
//!   ([`record`]), checks the node's RAM, then either streams the archive into a
//!   tmpfs at NEWROOT (cpio newc or pax tar, gzip/xz/zstd or plain) or, for
//!   squashfs, stores it under `/run/xcat-netinit`, loop-mounts it read-only and
//!   puts an overlay with a tmpfs upper at NEWROOT ([`boot`]). Exit codes: 0
//!   ready; 10 image refused (checksum, size, corrupt or hostile archive); 11 not
//!   enough RAM (also: the tree does not fit the root tmpfs); 12 bad kernel
//!   command line; anything else (1): retry. Every failure is one line on
//!   stderr, `xcat-netinit: <what>: <why>; <what to do>`.
//! * `xcat-netinit nfsroot NEWROOT` mounts a statelite node's read-only NFS
//!   root (`root=nfs:`) with the rootfs additions overlaid ([`nfsroot`]; NFS
//!   by the kernel's client, [`nfs`]).
//! * `xcat-netinit statelite NEWROOT` lays a statelite node's paths over the
//!   new root: `/.statelite` in RAM, `STATEMNT=`'s persistent directory of
//!   the node, the litetree directories, every litefile entry ([`statelite`];
//!   the entries asked of xcatd as xCAT's rc.statelite asks, [`xcatreq`]).
//!
//! How the stream flows ([`pipeline`]): one thread fetches ([`fetch`]: HTTP/1.1
//! over a plain `TcpStream`, [`http`]; retries forever with back-off on refused,
//! reset, cut connections, 5xx and 404, resuming with `Range` and `If-Range`, so
//! the decompressor never sees a cut) and checks size and SHA-256 as the bytes
//! pass ([`verify`]); one thread decompresses; the calling thread unpacks
//! ([`unpack`]). Buffers of 1 MiB go round between them and are reused. A
//! checksum mismatch found at the end unmounts NEWROOT: nothing of it is booted.
//!
//! Unpacking never leaves NEWROOT: names with `..` or a leading `/` are
//! refused, and every parent directory is opened with `openat2(RESOLVE_BENEATH
//! | RESOLVE_NO_SYMLINKS)` from NEWROOT's descriptor (`xcat-beneath`), so a
//! symlink the archive created is never followed. Runs of zero 4 KiB blocks in
//! file data become holes, so the tmpfs holds no zero pages.
//!
//! Environment (tests): `XCAT_NETINIT_CMDLINE`, `XCAT_NETINIT_SYSFS` and
//! `XCAT_NETINIT_MEMINFO` name files read instead of `/proc/cmdline`,
//! `/sys/class/net` and `/proc/meminfo`; `XCAT_NETINIT_RUNDIR` replaces
//! `/run/xcat-netinit` (the squashfs file and its mount points).
//!
//! # The static binary
//!
//! The initrd has no C library of its own, so the binary is linked statically
//! against glibc. `scripts/build-netinit` runs
//!
//! ```text
//! RUSTFLAGS='-C target-feature=+crt-static -C strip=symbols' \
//!     cargo build --release -p xcat-netinit --target x86_64-unknown-linux-gnu
//! ```
//!
//! (`--target` keeps build scripts and proc-macros dynamic), checks with `file`
//! and `ldd` that the result is static and prints its path,
//! `$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/xcat-netinit`. The binary
//! resolves no host names (no `getaddrinfo`, whose static form needs the NSS
//! libraries at run time): `imgurl=` must name an address, as nodeset writes it.

pub mod boot;
pub mod cmdline;
pub mod copy;
pub mod decompress;
pub mod error;
pub mod fetch;
pub mod http;
pub mod localdisk;
mod loopdev;
pub mod meminfo;
pub mod mount;
pub mod nfs;
pub mod nfsroot;
pub mod nic;
pub mod pipeline;
pub mod progress;
pub mod record;
pub mod retry;
pub mod signed;
pub mod statelite;
#[allow(unsafe_code)]
mod sys;
pub mod unpack;
pub mod verify;
pub mod xcatreq;

pub use error::{Exit, Failure};

/// The size of the buffers that carry the stream between the threads, and of
/// the unpacker's data buffer.
pub const CHUNK: usize = 1 << 20;
