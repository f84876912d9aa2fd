//! Envelope segments: the sealed envelopes of the embedded store, appended to
//! large files beside the database instead of into it.
//!
//! An envelope is written once, by the store's writer thread, to the end of the
//! active segment (`<data_dir>/envelopes/<id>.seg`); the database keeps only its
//! location (segment, offset, length) and CRC-32. The CRC guards against damage
//! on disk (a torn or edited file), not against an attacker: the envelope itself
//! is authenticated end to end (AES-GCM per JWE, the sealed manifest's hashes). Before a group that appended
//! anything commits, the active segment is fsynced: the database never refers to
//! bytes that are not on disk. A crash between the append and the commit leaves
//! bytes nothing refers to; they go with their segment.
//!
//! Why: in SQLite an envelope is written to the WAL, copied into the database
//! file at the checkpoint and its pages are read and copied again on every search
//! of the B-tree — on the one writer thread every accept and delivery waits for.
//! Here it is one sequential `pwrite`, and the database stays small however large
//! the backlog grows.
//!
//! A segment is closed (fsynced) at [`SEGMENT_BYTES`] and a new one begins; every
//! start of the store begins a new one too, so a torn tail is never appended to.
//! A closed segment is deleted once no envelope in the database refers to it
//! ([`Segments::collect`], after retention purged or an operator discarded the
//! last of them). A segment's space is therefore held as long as its longest-kept
//! envelope (a parked delivery keeps its segment until an operator acts or the
//! parked retention ends).

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A segment is closed when it reaches this size.
pub const SEGMENT_BYTES: u64 = 64 << 20;
const DIR: &str = "envelopes";
const EXT: &str = "seg";

/// Where an envelope lies, as the database records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub segment: i64,
    pub offset: i64,
    pub len: i64,
    pub crc32: u32,
}

struct Active {
    id: i64,
    file: File,
    len: u64,
    /// Bytes appended since the last fsync.
    dirty: bool,
}

/// The segment files of one store.
pub struct Segments {
    dir: PathBuf,
    /// Only the writer thread appends; the mutex makes that checkable.
    active: Mutex<Active>,
    /// Read handles, opened on first use.
    readers: Mutex<HashMap<i64, Arc<File>>>,
}

fn segment_path(dir: &Path, id: i64) -> PathBuf {
    dir.join(format!("{id:010}.{EXT}"))
}

/// The ids of the segment files in `dir`, ascending.
fn list(dir: &Path) -> io::Result<BTreeSet<i64>> {
    let mut ids = BTreeSet::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(id) = name
            .strip_suffix(&format!(".{EXT}"))
            .and_then(|s| s.parse::<i64>().ok())
        {
            ids.insert(id);
        }
    }
    Ok(ids)
}

/// The segment files under `data_dir` that hold any bytes (without opening the
/// segments or beginning a new one).
pub fn non_empty(data_dir: &Path) -> io::Result<Vec<PathBuf>> {
    let dir = data_dir.join(DIR);
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for id in list(&dir)? {
        let p = segment_path(&dir, id);
        if std::fs::metadata(&p)?.len() > 0 {
            out.push(p);
        }
    }
    Ok(out)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn create(dir: &Path, id: i64) -> io::Result<File> {
    let file = OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(segment_path(dir, id))?;
    // The new name must survive a crash before the first commit refers to it.
    sync_dir(dir)?;
    Ok(file)
}

impl Segments {
    /// Opens the segment directory under `data_dir` and begins a new segment.
    pub fn open(data_dir: &Path) -> io::Result<Segments> {
        let dir = data_dir.join(DIR);
        std::fs::create_dir_all(&dir)?;
        let id = list(&dir)?.last().map_or(1, |last| last + 1);
        let file = create(&dir, id)?;
        Ok(Segments {
            dir,
            active: Mutex::new(Active {
                id,
                file,
                len: 0,
                dirty: false,
            }),
            readers: Mutex::default(),
        })
    }

    /// Whether segment `id` exists on disk.
    pub fn exists(&self, id: i64) -> bool {
        segment_path(&self.dir, id).exists()
    }

    /// The segment directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn active(&self) -> io::Result<std::sync::MutexGuard<'_, Active>> {
        self.active
            .lock()
            .map_err(|_| io::Error::other("segment writer poisoned"))
    }

    /// Appends an envelope to the active segment. Not durable until [`Segments::sync`].
    pub fn append(&self, envelope: &[u8], crc32: u32) -> io::Result<Location> {
        let mut a = self.active()?;
        if a.len > 0 && a.len + envelope.len() as u64 > SEGMENT_BYTES {
            // Close the full segment: durable before anything refers to the next one.
            a.file.sync_data()?;
            let id = a.id + 1;
            *a = Active {
                id,
                file: create(&self.dir, id)?,
                len: 0,
                dirty: false,
            };
        }
        a.file.write_all_at(envelope, a.len)?;
        let location = Location {
            segment: a.id,
            offset: a.len as i64,
            len: envelope.len() as i64,
            crc32,
        };
        a.len += envelope.len() as u64;
        a.dirty = true;
        Ok(location)
    }

    /// Makes every append so far durable (call before the commit that refers to them).
    pub fn sync(&self) -> io::Result<()> {
        let mut a = self.active()?;
        if a.dirty {
            a.file.sync_data()?;
            a.dirty = false;
        }
        Ok(())
    }

    /// Reads an envelope and checks it against its CRC-32.
    pub fn read(&self, at: &Location) -> io::Result<Vec<u8>> {
        let file = {
            let mut readers = self
                .readers
                .lock()
                .map_err(|_| io::Error::other("segment readers poisoned"))?;
            match readers.get(&at.segment) {
                Some(f) => f.clone(),
                None => {
                    let f = Arc::new(File::open(segment_path(&self.dir, at.segment))?);
                    readers.insert(at.segment, f.clone());
                    f
                }
            }
        };
        let mut buf = vec![0u8; at.len as usize];
        file.read_exact_at(&mut buf, at.offset as u64)?;
        if crate::model::submission::envelope_checksum(&buf) != at.crc32 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "envelope at segment {} offset {} does not match its CRC-32 (disk damage or an edited segment file)",
                    at.segment, at.offset
                ),
            ));
        }
        Ok(buf)
    }

    /// Deletes every closed segment that `live` (the segments the committed
    /// database still refers to) does not name. Returns how many went.
    pub fn collect(&self, live: &BTreeSet<i64>) -> io::Result<usize> {
        let active = self.active()?.id;
        let mut removed = 0;
        for id in list(&self.dir)? {
            if id < active && !live.contains(&id) {
                std::fs::remove_file(segment_path(&self.dir, id))?;
                if let Ok(mut readers) = self.readers.lock() {
                    readers.remove(&id);
                }
                removed += 1;
            }
        }
        if removed > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    /// Bytes of all segment files.
    pub fn disk_bytes(&self) -> u64 {
        list(&self.dir)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| std::fs::metadata(segment_path(&self.dir, *id)).ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::submission::envelope_checksum as checksum;

    #[test]
    fn append_sync_read_rotate_and_collect() {
        let dir = tempfile::tempdir().unwrap();
        let s = Segments::open(dir.path()).unwrap();
        let a = s.append(b"first", checksum(b"first")).unwrap();
        let b = s.append(b"second", checksum(b"second")).unwrap();
        s.sync().unwrap();
        assert_eq!((a.segment, a.offset, b.offset), (1, 0, 5));
        assert_eq!(s.read(&b).unwrap(), b"second");
        // A big envelope does not fit: the segment is closed and the next begins.
        let big = vec![7u8; SEGMENT_BYTES as usize];
        let c = s.append(&big, checksum(&big)).unwrap();
        assert_eq!((c.segment, c.offset), (2, 0));
        assert_eq!(s.read(&c).unwrap().len(), big.len());
        // Segment 1 is still referred to: it stays. Once not, it goes; the active never.
        assert_eq!(s.collect(&BTreeSet::from([1])).unwrap(), 0);
        assert_eq!(s.collect(&BTreeSet::new()).unwrap(), 1);
        assert!(s.read(&c).is_ok());
        // A reopened store never appends to an old segment.
        drop(s);
        let s = Segments::open(dir.path()).unwrap();
        assert_eq!(s.append(b"x", checksum(b"x")).unwrap().segment, 3);
    }

    #[test]
    fn a_damaged_envelope_is_refused_not_returned() {
        let dir = tempfile::tempdir().unwrap();
        let s = Segments::open(dir.path()).unwrap();
        let at = s
            .append(b"{\"envelope\":1}", checksum(b"{\"envelope\":1}"))
            .unwrap();
        s.sync().unwrap();
        let path = segment_path(s.dir(), at.segment);
        let f = OpenOptions::new().write(true).open(path).unwrap();
        f.write_all_at(b"X", 3).unwrap();
        let err = s.read(&at).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("CRC-32"));
    }
}
