//! Files a client names by path (`capimage -x FILE`): the daemon runs as root,
//! the requester may not be, so such a file is opened with the requester's
//! own credentials, on a thread made for it, and only as a regular file of
//! bounded size (a FIFO or `/dev/zero` must neither hang nor fill memory).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use xcat_image::sys::Credentials;

/// Who `nobody` is: the credentials of a requester without a local account.
const NOBODY: u32 = 65534;

/// The local account named `user` (from `/etc/passwd` and `/etc/group`: its
/// uid, primary group and supplementary groups), or `nobody` when the request
/// is unauthenticated or the name has no local account.
pub fn local_user(user: Option<&str>) -> Credentials {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    user.and_then(|u| credentials_of(u, &passwd, &group))
        .or_else(|| Credentials::new(NOBODY, NOBODY, Vec::new()))
        .expect("nobody's ids are not the sentinel")
}

fn credentials_of(user: &str, passwd: &str, group: &str) -> Option<Credentials> {
    let entry = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == user).then(|| (f[2].parse().ok(), f[3].parse().ok()))
    })?;
    let (uid, gid) = (entry.0?, entry.1?);
    let mut groups: Vec<u32> = vec![gid];
    for l in group.lines() {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() >= 4 && f[3].split(',').any(|m| m == user) {
            if let Ok(g) = f[2].parse() {
                groups.push(g);
            }
        }
    }
    groups.sort_unstable();
    groups.dedup();
    Credentials::new(uid, gid, groups)
}

/// Runs `f` on a new thread that has taken on `creds` (and ends with `f`).
pub fn as_user<T, F>(creds: Credentials, f: F) -> io::Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    std::thread::Builder::new()
        .name("as-requester".into())
        .spawn(move || {
            creds.assume_in_this_thread()?;
            Ok(f())
        })?
        .join()
        .map_err(|_| io::Error::other("the thread reading as the requester panicked"))?
}

/// The whole content of `path`, a regular file of at most `max` bytes; a
/// symbolic link as the last component, any other type of file, or a larger
/// file is refused without being read.
pub fn read_capped(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let mut f = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let too_big = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("larger than {max} bytes"),
        )
    };
    if meta.len() > max {
        return Err(too_big());
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    // The file may grow after fstat: read one byte past the cap to tell.
    (&mut f).take(max + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(too_big());
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn accounts_are_read_from_passwd_and_group() {
        let passwd = "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n";
        let group = "root:x:0:\nwheel:x:10:bob,alice\nusers:x:100:bob\nalice:x:1000:\n";
        let a = credentials_of("alice", passwd, group).unwrap();
        assert_eq!(a, Credentials::new(1000, 1000, vec![10, 1000]).unwrap());
        assert!(credentials_of("mallory", passwd, group).is_none());
        assert_eq!(local_user(Some("no-such-user-here")).uid(), NOBODY);
        assert_eq!(local_user(None).uid(), NOBODY);
    }

    #[test]
    fn only_a_regular_file_under_the_cap_is_read() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("list");
        std::fs::write(&f, b"./var/cache/*\n").unwrap();
        assert_eq!(read_capped(&f, 100).unwrap(), b"./var/cache/*\n");
        let e = read_capped(&f, 4).unwrap_err();
        assert_eq!(e.to_string(), "larger than 4 bytes");
        for odd in ["/dev/zero", "/dev/null"] {
            let e = read_capped(Path::new(odd), 1 << 20).unwrap_err();
            assert_eq!(e.to_string(), "not a regular file", "{odd}");
        }
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert_eq!(
            read_capped(&link, 100).unwrap_err().raw_os_error(),
            Some(libc::ELOOP)
        );
        // A FIFO nobody writes to: refused at once, never waited on.
        let fifo = t.path().join("fifo");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        assert_eq!(
            read_capped(&fifo, 100).unwrap_err().to_string(),
            "not a regular file"
        );
    }

    #[test]
    #[ignore = "needs root: ./scripts/test-all runs it"]
    fn a_file_is_read_with_the_requesters_rights_only() {
        let t = tempfile::tempdir().unwrap();
        let secret = t.path().join("secret");
        std::fs::write(&secret, b"root only\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let nobody = local_user(None);
        let s = secret.clone();
        let e = as_user(nobody.clone(), move || read_capped(&s, 100))
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let s = secret.clone();
        assert_eq!(
            as_user(nobody, move || read_capped(&s, 100))
                .unwrap()
                .unwrap(),
            b"root only\n"
        );
        // The daemon's own threads are still root.
        assert!(rustix::process::geteuid().is_root());
    }
}
