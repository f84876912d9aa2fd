//! The drop directory, held open while one envelope is written into it.
//!
//! Whoever imports from the directory may create and delete files in it, so
//! nothing in it is trusted: the directory is opened once per attempt without
//! following a symlink (`O_DIRECTORY | O_NOFOLLOW`), and every step after that is
//! relative to that open directory (`fstatat`, `openat`, `renameat`, `unlinkat`)
//! and follows no symlink either. A temporary file is always a new file
//! (`O_CREAT | O_EXCL | O_NOFOLLOW`), so a name planted in advance — a symlink, a
//! hard link, a file — is never opened, truncated or written through; a rename
//! and an unlink act on the directory entry, never on what a symlink points to.
//! Symlinks in the path *above* the drop directory belong to the operator (only
//! the operator can change them) and are followed as configured.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// What a name in the directory is, looked at without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file (not a symlink to one).
    File,
    /// A symlink, a directory, a FIFO, a socket or a device.
    Other,
}

/// One entry as `lstat` sees it.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub kind: Kind,
    pub modified: SystemTime,
}

/// An open drop directory.
#[derive(Debug)]
pub struct DropDir {
    fd: OwnedFd,
}

/// Whether an error from [`DropDir::open`] means the directory is a symlink.
pub fn is_symlink_error(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP)
}

fn c_name(name: &str) -> io::Result<CString> {
    // Names are built by the adapter (ids from a safe character set); a `/` would
    // leave the directory, so refuse it here too.
    if name.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a name in the drop directory has no '/'",
        ));
    }
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

impl DropDir {
    /// Opens `path`, which must be a directory and not a symlink (`ELOOP`, see
    /// [`is_symlink_error`]).
    pub fn open(path: &Path) -> io::Result<DropDir> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in the path"))?;
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: `c` is a valid NUL-terminated string; the returned descriptor is
        // owned by nobody else.
        let fd = check(unsafe { libc::open(c.as_ptr(), flags) }).map_err(|e| {
            // Linux answers ENOTDIR for a symlink opened with O_DIRECTORY |
            // O_NOFOLLOW, other systems ELOOP: report both as ELOOP.
            let symlink = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
            if symlink {
                io::Error::from_raw_os_error(libc::ELOOP)
            } else {
                e
            }
        })?;
        // SAFETY: `fd` was just opened and is ours alone.
        Ok(DropDir {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// What `name` is, without following it; `None` if there is no such entry.
    pub fn entry(&self, name: &str) -> io::Result<Option<Entry>> {
        let c = c_name(name)?;
        // SAFETY: all-zero is a valid `stat`, filled in by the call below.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid directory descriptor, NUL-terminated name, `st` writable.
        let rc = unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if let Err(e) = check(rc) {
            return match e.raw_os_error() {
                Some(libc::ENOENT) => Ok(None),
                _ => Err(e),
            };
        }
        let kind = if st.st_mode & libc::S_IFMT == libc::S_IFREG {
            Kind::File
        } else {
            Kind::Other
        };
        #[allow(clippy::unnecessary_cast)] // `time_t` is not `i64` everywhere
        let secs = st.st_mtime as i64;
        let modified = if secs >= 0 {
            SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64)
        } else {
            SystemTime::UNIX_EPOCH
        };
        Ok(Some(Entry { kind, modified }))
    }

    /// Creates `name` as a new, empty file for writing; fails with
    /// `AlreadyExists` if any entry of that name exists (a symlink included).
    pub fn create_new(&self, name: &str) -> io::Result<File> {
        let c = c_name(name)?;
        let flags =
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // The mode std uses for new files; the umask applies.
        let mode: libc::c_uint = 0o666;
        // SAFETY: valid directory descriptor and NUL-terminated name.
        let fd = check(unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags, mode) })?;
        // SAFETY: `fd` was just opened and is ours alone.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Renames `from` to `to` within the directory; an existing `to` that is not
    /// a directory is replaced (the entry, not what it may point to).
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (from, to) = (c_name(from)?, c_name(to)?);
        let fd = self.fd.as_raw_fd();
        // SAFETY: valid directory descriptor and NUL-terminated names.
        check(unsafe { libc::renameat(fd, from.as_ptr(), fd, to.as_ptr()) }).map(drop)
    }

    /// Removes the entry `name` (never a directory, never what it points to).
    pub fn remove(&self, name: &str) -> io::Result<()> {
        let c = c_name(name)?;
        // SAFETY: valid directory descriptor and NUL-terminated name.
        check(unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) }).map(drop)
    }

    /// Makes the directory's entries (a rename, an unlink) durable.
    pub fn sync(&self) -> io::Result<()> {
        // SAFETY: valid descriptor.
        check(unsafe { libc::fsync(self.fd.as_raw_fd()) }).map(drop)
    }
}
