//! A read-only loop device over a file, for the squashfs image.
//!
//! `LOOP_CTL_GET_FREE` names a free device, `LOOP_CONFIGURE` binds the file
//! to it with `LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR` in one step (kernels
//! before 5.8: `LOOP_SET_FD` then `LOOP_SET_STATUS64`). With autoclear the
//! device lets go of the file by itself once the last user (the mount) is
//! gone, so nothing has to detach it. Another process taking the same free
//! device meanwhile makes the binding fail with `EBUSY`: then the next free
//! one is tried.

use crate::sys::{self, loop_info64};
use linux_raw_sys::loop_device::{loop_config, LO_FLAGS_AUTOCLEAR, LO_FLAGS_READ_ONLY};
use rustix::fs::{Mode, OFlags};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A bound loop device; dropping it closes this process's descriptor (the
/// device stays bound while mounted).
#[derive(Debug)]
pub struct LoopDevice {
    path: PathBuf,
    _fd: OwnedFd,
}

impl LoopDevice {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Binds `file` read-only to a free loop device under `dev` (`/dev`).
pub fn attach_read_only(file: &Path, dev: &Path) -> io::Result<LoopDevice> {
    let control = rustix::fs::open(
        dev.join("loop-control"),
        OFlags::RDWR | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let backing = rustix::fs::open(file, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    let info = info(file);
    for _ in 0..16 {
        let n = sys::loop_get_free(control.as_fd())?;
        let path = dev.join(format!("loop{n}"));
        let fd = open_device(&path)?;
        match bind(&fd, &backing, &info) {
            Ok(()) => return Ok(LoopDevice { path, _fd: fd }),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(
        "every free loop device was taken by another process first",
    ))
}

/// The device node appears in devtmpfs as the device is added: wait a little.
fn open_device(path: &Path) -> io::Result<OwnedFd> {
    let mut tries = 0;
    loop {
        match rustix::fs::open(path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()) {
            Err(rustix::io::Errno::NOENT) if tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return Ok(r?),
        }
    }
}

fn info(file: &Path) -> loop_info64 {
    let mut name = [0u8; 64];
    let bytes = file.as_os_str().as_encoded_bytes();
    let n = bytes.len().min(63);
    name[..n].copy_from_slice(&bytes[..n]);
    loop_info64 {
        lo_device: 0,
        lo_inode: 0,
        lo_rdevice: 0,
        lo_offset: 0,
        lo_sizelimit: 0,
        lo_number: 0,
        lo_encrypt_type: 0,
        lo_encrypt_key_size: 0,
        lo_flags: LO_FLAGS_READ_ONLY as u32 | LO_FLAGS_AUTOCLEAR as u32,
        lo_file_name: name,
        lo_crypt_name: [0; 64],
        lo_encrypt_key: [0; 32],
        lo_init: [0; 2],
    }
}

fn bind(dev: &OwnedFd, backing: &OwnedFd, info: &loop_info64) -> io::Result<()> {
    let config = loop_config {
        fd: std::os::fd::AsRawFd::as_raw_fd(backing) as u32,
        block_size: 0,
        info: *info,
        __reserved: [0; 8],
    };
    match sys::loop_configure(dev.as_fd(), &config) {
        // kernels before 5.8 do not know LOOP_CONFIGURE
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOTTY)) => {
            sys::loop_set_fd(dev.as_fd(), backing.as_fd())?;
            sys::loop_set_status64(dev.as_fd(), info).inspect_err(|_| {
                let _ = sys::loop_clr_fd(dev.as_fd());
            })
        }
        r => r,
    }
}
