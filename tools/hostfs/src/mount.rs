//! Mappings of host directories into the guest (`--mount HOST:GUEST`).

use std::ffi::CString;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hermit_interface::errno::Errno;

use crate::sys;

/// Why a mount cannot be made. Each message is one line for the user.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MountError {
    /// The text is not `HOST:GUEST`.
    #[error("'{0}' is not HOST:GUEST")]
    Syntax(String),
    /// The host side is empty.
    #[error("'{0}': the host directory is empty")]
    EmptyHost(String),
    /// The guest side is not an absolute path.
    #[error("guest path '{0}' is not absolute")]
    GuestNotAbsolute(String),
    /// The guest side is `/`, which the guest's own file system owns.
    #[error("guest path '/' cannot be a mount point")]
    GuestRoot,
    /// The guest side has empty, `.` or `..` components, a trailing `/`
    /// or a NUL byte.
    #[error("guest path '{0}' is not normalised (no '//', '.', '..', trailing '/' or NUL)")]
    GuestNotNormal(String),
    /// The host directory cannot be opened.
    #[error("cannot open host directory {}: {reason}", host.display())]
    HostOpen {
        /// The host path.
        host: PathBuf,
        /// The host's reason (e.g. "No such file or directory").
        reason: String,
    },
    /// The host kernel cannot confine path lookups.
    #[error("the host kernel has no openat2 (Linux 5.6 or later is needed to confine mounts)")]
    NoOpenat2,
    /// Two mounts have the same guest path.
    #[error("guest path '{0}' is mapped twice")]
    Duplicate(String),
}

/// A host directory mapped at a guest path. Holds the directory open
/// (`O_PATH | O_DIRECTORY`) from [`Mount::parse`] on, so renaming or
/// replacing the host path later does not change what the guest sees; every
/// guest path is resolved beneath this descriptor.
///
/// Clones share the descriptor; two mounts are equal when their host and
/// guest paths are.
#[derive(Clone)]
pub struct Mount {
    host: PathBuf,
    guest: String,
    dir: Arc<OwnedFd>,
}

impl Mount {
    /// Parses `HOST:GUEST` (the text of `--mount`): `HOST` is split off at
    /// the last `:`, so it may contain colons and `GUEST` may not. See
    /// [`Mount::new`] for the checks.
    pub fn parse(spec: &str) -> Result<Self, MountError> {
        let Some((host, guest)) = spec.rsplit_once(':') else {
            return Err(MountError::Syntax(spec.to_owned()));
        };
        if host.is_empty() {
            return Err(MountError::EmptyHost(spec.to_owned()));
        }
        Self::new(Path::new(host), guest)
    }

    /// Maps host directory `host` (which must exist) at `guest`, an
    /// absolute, normalised guest path other than `/`.
    pub fn new(host: &Path, guest: &str) -> Result<Self, MountError> {
        check_guest(guest)?;
        let host_open = |reason: String| MountError::HostOpen {
            host: host.to_owned(),
            reason,
        };
        let c_host = CString::new(host.as_os_str().as_bytes())
            .map_err(|_| host_open("the path contains a NUL byte".into()))?;
        // SAFETY: `c_host` is NUL-terminated; open returns a new descriptor
        // or -1. O_PATH opens nothing for I/O, so this has no side effects
        // on the host file.
        let fd = unsafe {
            libc::open(
                c_host.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            let reason = match e.raw_os_error() {
                Some(libc::ENOTDIR) => "not a directory".to_owned(),
                Some(libc::ENOENT) => "no such directory".to_owned(),
                _ => e.to_string(),
            };
            return Err(host_open(reason));
        }
        // SAFETY: `open` succeeded, so `fd` is a fresh descriptor we own.
        let dir = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        match sys::openat2_works(dir.as_fd()) {
            Ok(()) => {}
            Err(Errno::ENOSYS) => return Err(MountError::NoOpenat2),
            Err(e) => return Err(host_open(format!("openat2 failed: {e}"))),
        }
        Ok(Self {
            host: host.to_owned(),
            guest: guest.to_owned(),
            dir: Arc::new(dir),
        })
    }

    /// The host directory as given.
    pub fn host(&self) -> &Path {
        &self.host
    }

    /// The guest path it appears at.
    pub fn guest(&self) -> &str {
        &self.guest
    }

    /// The open host directory.
    pub(crate) fn dir(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }
}

impl PartialEq for Mount {
    fn eq(&self, other: &Self) -> bool {
        self.host == other.host && self.guest == other.guest
    }
}

impl Eq for Mount {}

impl fmt::Debug for Mount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mount({}:{})", self.host.display(), self.guest)
    }
}

fn check_guest(guest: &str) -> Result<(), MountError> {
    let Some(rest) = guest.strip_prefix('/') else {
        return Err(MountError::GuestNotAbsolute(guest.to_owned()));
    };
    if rest.is_empty() {
        return Err(MountError::GuestRoot);
    }
    if guest.contains('\0')
        || rest
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(MountError::GuestNotNormal(guest.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::TempDir;

    #[test]
    fn specs_are_checked() {
        let tmp = TempDir::new();
        let host = tmp.path().to_str().unwrap();
        let m = Mount::parse(&format!("{host}:/data")).unwrap();
        assert_eq!((m.host(), m.guest()), (tmp.path(), "/data"));
        assert_eq!(m, m.clone());
        let m = Mount::parse(&format!("{host}:/a/b/c")).unwrap();
        assert_eq!(m.guest(), "/a/b/c");

        // A host path with a colon.
        let colon = tmp.path().join("x:y");
        std::fs::create_dir(&colon).unwrap();
        let m = Mount::parse(&format!("{}:/c", colon.display())).unwrap();
        assert_eq!(m.host(), colon);

        let err = |spec: String| Mount::parse(&spec).unwrap_err();
        assert_eq!(err("nocolon".into()), MountError::Syntax("nocolon".into()));
        assert!(matches!(err(":/x".into()), MountError::EmptyHost(_)));
        assert_eq!(err(format!("{host}:/")), MountError::GuestRoot);
        assert_eq!(
            err(format!("{host}:data")),
            MountError::GuestNotAbsolute("data".into())
        );
        assert!(matches!(
            err(format!("{host}:")),
            MountError::GuestNotAbsolute(_)
        ));
        for bad in [
            "/a/", "/a//b", "/a/./b", "/a/..", "/..", "/.", "//a", "/a\0b",
        ] {
            assert_eq!(
                err(format!("{host}:{bad}")),
                MountError::GuestNotNormal(bad.into()),
                "{bad:?}"
            );
        }
        let missing = err(format!("{host}/missing:/m"));
        assert!(
            missing.to_string().contains("no such directory"),
            "{missing}"
        );
        std::fs::write(tmp.path().join("file"), b"").unwrap();
        let file = err(format!("{host}/file:/m"));
        assert!(file.to_string().contains("not a directory"), "{file}");
        for e in [missing, file, err("x".into())] {
            assert!(!e.to_string().contains('\n'));
        }
    }
}
