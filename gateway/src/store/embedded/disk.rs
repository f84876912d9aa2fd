//! How full the file system under a data directory is, for `/metrics` (an
//! operator's alert fires before the disk is full, not after).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use crate::store::DiskSpace;

/// The space of the file system holding `dir`, or `None` if it cannot be read.
pub fn space(dir: &Path) -> Option<DiskSpace> {
    let path = CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string that lives across the call, and
    // `stat` points to writable memory of the type statvfs(3) fills; it is read
    // (assume_init) only when the call returned 0, i.e. filled it completely.
    let filled = unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) } == 0;
    if !filled {
        return None;
    }
    // SAFETY: see above — statvfs returned 0, so every field is initialised.
    let stat = unsafe { stat.assume_init() };
    // The fields are u64 on 64-bit Linux but narrower on other targets.
    #[allow(clippy::unnecessary_cast)]
    let block = stat.f_frsize as u64;
    #[allow(clippy::unnecessary_cast)]
    let (available, blocks) = (stat.f_bavail as u64, stat.f_blocks as u64);
    Some(DiskSpace {
        available: available.saturating_mul(block),
        size: blocks.saturating_mul(block),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_temp_dirs_file_system_has_a_size_and_no_more_available_than_that() {
        let s = space(&std::env::temp_dir()).unwrap();
        assert!(s.size > 0 && s.available <= s.size, "{s:?}");
        assert_eq!(space(Path::new("/no/such/dir/at/all")), None);
    }
}
