//! Submissions still being put together (FIT-Connect: created, attachments
//! uploading, not yet submitted), in files of their own under the data
//! directory: `staging/<id>/meta.json` and one file per part. Every write is
//! a new file fsynced and renamed into place, then the directory fsynced, so
//! an upload answered is on disk. Ids and part names are checked to be plain
//! names before they touch a path.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::store::{Staged, Staging, StoreError, StoreFuture};

pub struct FileStaging {
    dir: PathBuf,
}

/// A UUID-like name: hex digits and dashes only, 32 to 36 long.
fn plain(name: &str) -> Result<&str, StoreError> {
    let ok =
        (32..=36).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    if ok {
        Ok(name)
    } else {
        Err(StoreError::Corrupt(format!("{name:?} is not a staging id")))
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Writes `bytes` as `dir/name`, durably (temp file, fsync, rename, fsync dir).
fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

impl FileStaging {
    /// Staging under `data_dir/staging` (created if missing).
    pub fn open(data_dir: &Path) -> Result<FileStaging, StoreError> {
        Self::open_at(&data_dir.join("staging"))
    }

    /// Staging in `dir` (created if missing).
    pub fn open_at(dir: &Path) -> Result<FileStaging, StoreError> {
        fs::create_dir_all(dir)?;
        Ok(FileStaging {
            dir: dir.to_owned(),
        })
    }

    fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Path) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        let dir = self.dir.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || job(&dir))
                .await
                .map_err(|_| StoreError::Closed)?
        })
    }
}

impl Staging for FileStaging {
    fn create(&self, id: &str, meta: Vec<u8>) -> StoreFuture<'_, ()> {
        let id = id.to_owned();
        self.run(move |dir| {
            let at = dir.join(plain(&id)?);
            fs::create_dir(&at)?;
            write_durably(&at, "meta.json", &meta)?;
            Ok(sync_dir(dir)?)
        })
    }

    fn put(&self, id: &str, part: &str, bytes: Vec<u8>) -> StoreFuture<'_, bool> {
        let (id, part) = (id.to_owned(), part.to_owned());
        self.run(move |dir| {
            let at = dir.join(plain(&id)?);
            let name = format!("{}.part", plain(&part)?);
            if !at.join("meta.json").exists() {
                return Err(StoreError::Corrupt(format!("no staged submission {id}")));
            }
            // The first upload of a part stays (a sender repeating an id does not replace it).
            if at.join(&name).exists() {
                return Ok(false);
            }
            write_durably(&at, &name, &bytes)?;
            Ok(true)
        })
    }

    fn load(&self, id: &str) -> StoreFuture<'_, Option<Staged>> {
        let id = id.to_owned();
        self.run(move |dir| {
            let at = dir.join(plain(&id)?);
            let meta = match fs::read(at.join("meta.json")) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let mut parts = Vec::new();
            for entry in fs::read_dir(&at)? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(part) = name.strip_suffix(".part") {
                    parts.push((part.to_owned(), fs::read(entry.path())?));
                }
            }
            Ok(Some(Staged { meta, parts }))
        })
    }

    fn remove(&self, id: &str) -> StoreFuture<'_, ()> {
        let id = id.to_owned();
        self.run(move |dir| {
            match fs::remove_dir_all(dir.join(plain(&id)?)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            Ok(sync_dir(dir)?)
        })
    }

    fn expire(&self, older_than: Duration) -> StoreFuture<'_, u64> {
        self.run(move |dir| {
            let cut = SystemTime::now() - older_than;
            let mut n = 0;
            for entry in fs::read_dir(dir)? {
                let entry = entry?;
                let created =
                    fs::metadata(entry.path().join("meta.json")).and_then(|m| m.modified());
                if matches!(created, Ok(t) if t < cut) {
                    fs::remove_dir_all(entry.path())?;
                    n += 1;
                }
            }
            if n > 0 {
                sync_dir(dir)?;
            }
            Ok(n)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parts_are_kept_once_and_go_with_their_submission() {
        let tmp = tempfile::tempdir().unwrap();
        let s = FileStaging::open(tmp.path()).unwrap();
        let id = uuid::Uuid::now_v7().to_string();
        let part = uuid::Uuid::new_v4().to_string();
        assert!(
            s.put(&id, &part, b"x".to_vec()).await.is_err(),
            "no submission yet"
        );
        s.create(&id, b"{}".to_vec()).await.unwrap();
        assert!(s.put(&id, &part, b"first".to_vec()).await.unwrap());
        assert!(!s.put(&id, &part, b"second".to_vec()).await.unwrap());
        let staged = s.load(&id).await.unwrap().unwrap();
        assert_eq!(staged.meta, b"{}");
        assert_eq!(staged.parts, vec![(part.clone(), b"first".to_vec())]);
        assert!(s.put(&id, "../../etc", b"x".to_vec()).await.is_err());
        assert!(s.load("../x").await.is_err());
        assert_eq!(s.expire(Duration::from_secs(3600)).await.unwrap(), 0);
        assert_eq!(s.expire(Duration::ZERO).await.unwrap(), 1);
        assert!(s.load(&id).await.unwrap().is_none());
        s.remove(&id).await.unwrap();
    }
}
