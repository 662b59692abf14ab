//! The only module with `unsafe`: the loop device's ioctls, which neither std
//! nor rustix wrap. Each function issues one request with the one argument
//! type the kernel defines for it (`linux/loop.h`, through linux-raw-sys's
//! generated structures), so no caller can pair a request with a wrong type.

use linux_raw_sys::loop_device::{
    loop_config, LOOP_CLR_FD, LOOP_CONFIGURE, LOOP_CTL_GET_FREE, LOOP_SET_FD, LOOP_SET_STATUS64,
};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

pub use linux_raw_sys::loop_device::loop_info64;

fn check(r: libc::c_int) -> io::Result<u32> {
    u32::try_from(r).map_err(|_| io::Error::last_os_error())
}

/// `LOOP_CTL_GET_FREE` on `/dev/loop-control`: the number of a free loop device.
pub fn loop_get_free(control: BorrowedFd<'_>) -> io::Result<u32> {
    // SAFETY: LOOP_CTL_GET_FREE takes no argument; the descriptor is open
    // (borrowed for the call). The kernel reads and writes no user memory.
    check(unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE as libc::Ioctl) })
}

/// `LOOP_CONFIGURE`: binds the backing file and sets the status at once (5.8+).
pub fn loop_configure(dev: BorrowedFd<'_>, config: &loop_config) -> io::Result<()> {
    // SAFETY: LOOP_CONFIGURE reads one `struct loop_config`; `config` is a
    // valid, initialised value of exactly that layout (bindgen's), alive for
    // the call, and the kernel only copies from it.
    check(unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            LOOP_CONFIGURE as libc::Ioctl,
            config as *const loop_config,
        )
    })
    .map(drop)
}

/// `LOOP_SET_FD`: binds the backing file (older kernels, with
/// [`loop_set_status64`] after it).
pub fn loop_set_fd(dev: BorrowedFd<'_>, file: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: LOOP_SET_FD takes the backing file's descriptor by value; both
    // descriptors are open for the call. No user memory is touched.
    check(unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            LOOP_SET_FD as libc::Ioctl,
            file.as_raw_fd() as libc::c_ulong,
        )
    })
    .map(drop)
}

/// `LOOP_SET_STATUS64`: flags (read-only, autoclear) and the file name shown.
pub fn loop_set_status64(dev: BorrowedFd<'_>, info: &loop_info64) -> io::Result<()> {
    // SAFETY: LOOP_SET_STATUS64 reads one `struct loop_info64`; `info` is a
    // valid, initialised value of that layout, alive for the call.
    check(unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            LOOP_SET_STATUS64 as libc::Ioctl,
            info as *const loop_info64,
        )
    })
    .map(drop)
}

/// `LOOP_CLR_FD`: unbinds the backing file (after a failed set-up).
pub fn loop_clr_fd(dev: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: LOOP_CLR_FD takes no argument; the descriptor is open.
    check(unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CLR_FD as libc::Ioctl) }).map(drop)
}
