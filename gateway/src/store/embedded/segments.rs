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
//! The targets of one submission share its parts' ciphertext (envelope format
//! 2, see `ozg_adapter_sdk::envelope::build`): the shared pieces are appended
//! once, followed by a small *recipe* per delivery — its own bytes and where the
//! shared pieces lie — all in one segment, so the segment a delivery row names
//! holds everything its envelope needs. A recipe begins with [`RECIPE`], which
//! no envelope (JSON) does; every shared piece has its CRC-32 in the recipe.
//!
//! A large part is not held in memory: while it arrives, its ciphertext is
//! written to a segment of its own, a *spool* ([`Segments::spool`], see
//! `core::intake::stream`), which holds only ciphertext. When the submission is
//! accepted, the writer appends the rest of its shared pieces and its recipes
//! to that spool instead of the active segment, so again one segment holds all
//! a delivery needs and nothing else changes. A spool that is being written is
//! never collected; one whose upload broke off or was refused is deleted when
//! its handle goes; one left by a crash before its commit is collected like any
//! segment nothing refers to.
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
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use super::recipe::{parse_recipe, place, recipe_len, Step, RECIPE};
use crate::model::delivery::StoredAt;
use crate::model::submission::{envelope_checksum, NewDelivery, SharedPiece, SpoolFile};
use crate::store::StoreError;

/// A segment is closed when it reaches this size.
pub const SEGMENT_BYTES: u64 = 64 << 20;
const DIR: &str = "envelopes";
const EXT: &str = "seg";

/// Where an envelope lies, as the database records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub segment: i64,
    pub offset: i64,
    /// Bytes stored there: the envelope, or its recipe.
    pub len: i64,
    /// CRC-32 of the stored bytes.
    pub crc32: u32,
    /// Bytes of the whole envelope (0 where unknown: only reading needs none).
    pub size: i64,
}

impl From<&StoredAt> for Location {
    /// Where a claim says its envelope lies (reading needs no whole size).
    fn from(s: &StoredAt) -> Location {
        Location {
            segment: s.segment,
            offset: s.offset,
            len: s.len,
            crc32: s.crc32,
            size: 0,
        }
    }
}

pub(super) fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
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
    /// The id the next segment or spool gets.
    next_id: AtomicI64,
    /// Spools being written or not yet committed: never collected.
    open_spools: Arc<Mutex<BTreeSet<i64>>>,
}

/// A segment of one submission's own, written while its large parts arrive
/// (ciphertext only) and completed by the writer at the accept. Dropped
/// before [`Spool::keep`], its file is deleted: a broken or refused upload
/// leaves nothing behind.
pub struct Spool {
    id: i64,
    path: PathBuf,
    file: File,
    /// Bytes written so far.
    len: Mutex<u64>,
    /// A committed row refers to it: the file stays.
    kept: AtomicBool,
    open_spools: Arc<Mutex<BTreeSet<i64>>>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool").field("id", &self.id).finish()
    }
}

impl SpoolFile for Spool {
    fn id(&self) -> i64 {
        self.id
    }

    fn append(&self, bytes: &[u8]) -> io::Result<u64> {
        let mut len = self
            .len
            .lock()
            .map_err(|_| io::Error::other("spool poisoned"))?;
        let at = *len;
        self.file.write_all_at(bytes, at)?;
        *len += bytes.len() as u64;
        Ok(at)
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()?;
        match self.path.parent() {
            Some(dir) => sync_dir(dir),
            None => Ok(()),
        }
    }

    fn keep(&self) {
        self.kept.store(true, Ordering::Release);
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if !self.kept.load(Ordering::Acquire) {
            if let Err(e) = std::fs::remove_file(&self.path) {
                tracing::warn!(error = %e, path = %self.path.display(), "cannot delete the spool of a submission that was not accepted; it is collected at the next purge");
            }
        }
        if let Ok(mut open) = self.open_spools.lock() {
            open.remove(&self.id);
        }
    }
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
            next_id: AtomicI64::new(id + 1),
            open_spools: Arc::default(),
        })
    }

    /// Begins a spool: a new segment for one submission's large parts.
    pub fn spool(&self) -> io::Result<Spool> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.open_spools
            .lock()
            .map_err(|_| io::Error::other("spools poisoned"))?
            .insert(id);
        let path = segment_path(&self.dir, id);
        let file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path);
        let file = match file {
            Ok(f) => f,
            Err(e) => {
                if let Ok(mut open) = self.open_spools.lock() {
                    open.remove(&id);
                }
                return Err(e);
            }
        };
        Ok(Spool {
            id,
            path,
            file,
            len: Mutex::new(0),
            kept: AtomicBool::new(false),
            open_spools: self.open_spools.clone(),
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

    /// Appends one envelope as it is. Not durable until [`Segments::sync`].
    pub fn append_one(&self, envelope: &[u8]) -> io::Result<Location> {
        let d = NewDelivery::whole(String::new(), String::new(), envelope.to_vec());
        self.append_submission(&[], std::slice::from_ref(&d))?
            .pop()
            .ok_or_else(|| io::Error::other("nothing appended"))
    }

    /// Appends one submission's envelopes: its shared pieces, then for each
    /// delivery its envelope, or the recipe that assembles it — all in one
    /// segment. Returns the deliveries' locations. Not durable until
    /// [`Segments::sync`].
    pub fn append_submission(
        &self,
        shared: &[SharedPiece],
        deliveries: &[NewDelivery],
    ) -> io::Result<Vec<Location>> {
        let mut a = self.active()?;
        let total = shared.iter().map(|p| p.bytes.len()).sum::<usize>()
            + deliveries.iter().map(recipe_len).sum::<usize>();
        if a.len > 0 && a.len + total as u64 > SEGMENT_BYTES {
            // Close the full segment: durable before anything refers to the next one.
            a.file.sync_data()?;
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            *a = Active {
                id,
                file: create(&self.dir, id)?,
                len: 0,
                dirty: false,
            };
        }
        let write = |a: &mut Active, bytes: &[u8], crc32: u32, size: usize| {
            a.file.write_all_at(bytes, a.len)?;
            let at = Location {
                segment: a.id,
                offset: a.len as i64,
                len: bytes.len() as i64,
                crc32,
                size: size as i64,
            };
            a.len += bytes.len() as u64;
            a.dirty = true;
            io::Result::Ok(at)
        };
        if shared.iter().any(|p| p.spooled.is_some()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a spooled piece outside its spool",
            ));
        }
        let pieces = shared
            .iter()
            .map(|p| write(&mut a, &p.bytes, p.crc32, p.bytes.len()))
            .collect::<io::Result<Vec<_>>>()?;
        place(deliveries, shared, &pieces, |bytes, crc32, size| {
            write(&mut a, bytes, crc32, size)
        })
    }

    /// Completes `spool` with one submission: its shared pieces not spooled
    /// yet, then every delivery's recipe (or envelope), as
    /// [`Segments::append_submission`] does in the active segment. Not durable
    /// until [`Spool::sync`].
    pub fn append_spooled(
        &self,
        spool: &dyn SpoolFile,
        shared: &[SharedPiece],
        deliveries: &[NewDelivery],
    ) -> io::Result<Vec<Location>> {
        let at = |offset: u64, len: u64, crc32: u32| Location {
            segment: spool.id(),
            offset: offset as i64,
            len: len as i64,
            crc32,
            size: len as i64,
        };
        let pieces = shared
            .iter()
            .map(|p| match p.spooled {
                Some(s) => Ok(at(s.offset, s.len, p.crc32)),
                None => Ok(at(spool.append(&p.bytes)?, p.bytes.len() as u64, p.crc32)),
            })
            .collect::<io::Result<Vec<_>>>()?;
        place(deliveries, shared, &pieces, |bytes, crc32, size| {
            let offset = spool.append(bytes)?;
            Ok(Location {
                size: size as i64,
                ..at(offset, bytes.len() as u64, crc32)
            })
        })
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

    fn reader(&self, segment: i64) -> io::Result<Arc<File>> {
        let mut readers = self
            .readers
            .lock()
            .map_err(|_| io::Error::other("segment readers poisoned"))?;
        if let Some(f) = readers.get(&segment) {
            return Ok(f.clone());
        }
        let f = Arc::new(File::open(segment_path(&self.dir, segment))?);
        readers.insert(segment, f.clone());
        Ok(f)
    }

    /// Reads what is stored at `at` and checks it against its CRC-32.
    pub fn read(&self, at: &Location) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; at.len as usize];
        self.reader(at.segment)?
            .read_exact_at(&mut buf, at.offset as u64)?;
        if envelope_checksum(&buf) != at.crc32 {
            return Err(invalid(format!(
                "envelope at segment {} offset {} does not match its CRC-32 (disk damage or an edited segment file)",
                at.segment, at.offset
            )));
        }
        Ok(buf)
    }

    /// Reads an envelope: what is stored at `at`, or, for a recipe, the
    /// envelope it assembles (every shared piece checked against its CRC-32).
    pub fn read_envelope(&self, at: &Location) -> io::Result<Vec<u8>> {
        let stored = self.read(at)?;
        let Some(r) = stored.strip_prefix(RECIPE) else {
            return Ok(stored);
        };
        let steps = parse_recipe(r)?;
        let size = steps
            .iter()
            .map(|s| match s {
                Step::Own(range) => range.len(),
                Step::Shared { len, .. } => *len as usize,
            })
            .sum();
        let file = self.reader(at.segment)?;
        let mut out = Vec::with_capacity(size);
        for step in steps {
            match step {
                Step::Own(range) => out.extend_from_slice(&r[range]),
                Step::Shared { offset, len, crc32 } => {
                    let start = out.len();
                    out.resize(start + len as usize, 0);
                    file.read_exact_at(&mut out[start..], offset)?;
                    if envelope_checksum(&out[start..]) != crc32 {
                        return Err(invalid(format!(
                            "the shared ciphertext at segment {} offset {offset} does not match its CRC-32 (disk damage or an edited segment file)",
                            at.segment
                        )));
                    }
                }
            }
        }
        Ok(out)
    }

    /// [`Segments::read_envelope`] for the store: missing or not matching its
    /// CRC is `Damaged` (no retry brings it back).
    pub fn read_stored(&self, at: &Location) -> Result<Vec<u8>, StoreError> {
        use io::ErrorKind::{InvalidData, NotFound, UnexpectedEof};
        self.read_envelope(at).map_err(|e| match e.kind() {
            NotFound | InvalidData | UnexpectedEof => StoreError::Damaged(format!(
                "segment {} at offset {}, {} bytes: {e}",
                at.segment, at.offset, at.len
            )),
            _ => e.into(),
        })
    }

    /// Deletes every closed segment that `live` (the segments the committed
    /// database still refers to) does not name, except spools still open.
    /// Returns how many went.
    pub fn collect(&self, live: &BTreeSet<i64>) -> io::Result<usize> {
        let active = self.active()?.id;
        // The directory is listed before the open spools are: a spool's id is
        // open before its file exists, so every spool file listed is named there
        // unless it was dropped (deleted, or kept and then in `live`).
        let listed = list(&self.dir)?;
        let open = self
            .open_spools
            .lock()
            .map_err(|_| io::Error::other("spools poisoned"))?
            .clone();
        let mut removed = 0;
        for id in listed {
            if id != active && !live.contains(&id) && !open.contains(&id) {
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
    use crate::model::submission::Splice;

    #[test]
    fn append_sync_read_rotate_and_collect() {
        let dir = tempfile::tempdir().unwrap();
        let s = Segments::open(dir.path()).unwrap();
        let a = s.append_one(b"first").unwrap();
        let b = s.append_one(b"second").unwrap();
        s.sync().unwrap();
        assert_eq!((a.segment, a.offset, b.offset), (1, 0, 5));
        assert_eq!(s.read_envelope(&b).unwrap(), b"second");
        // A big envelope does not fit: the segment is closed and the next begins.
        let big = vec![7u8; SEGMENT_BYTES as usize];
        let c = s.append_one(&big).unwrap();
        assert_eq!((c.segment, c.offset), (2, 0));
        assert_eq!(s.read_envelope(&c).unwrap().len(), big.len());
        // Segment 1 is still referred to: it stays. Once not, it goes; the active never.
        assert_eq!(s.collect(&BTreeSet::from([1])).unwrap(), 0);
        assert_eq!(s.collect(&BTreeSet::new()).unwrap(), 1);
        assert!(s.read_envelope(&c).is_ok());
        // A reopened store never appends to an old segment.
        drop(s);
        let s = Segments::open(dir.path()).unwrap();
        assert_eq!(s.append_one(b"x").unwrap().segment, 3);
    }

    fn piece(bytes: &[u8]) -> SharedPiece {
        SharedPiece::held(bytes.to_vec())
    }

    fn spliced(own: &str, splices: &[(usize, usize)]) -> NewDelivery {
        NewDelivery {
            splices: splices
                .iter()
                .map(|&(at, shared)| Splice { at, shared })
                .collect(),
            ..NewDelivery::whole("m".into(), "t".into(), own.as_bytes().to_vec())
        }
    }

    #[test]
    fn shared_pieces_are_written_once_and_every_recipe_assembles_its_envelope() {
        let dir = tempfile::tempdir().unwrap();
        let s = Segments::open(dir.path()).unwrap();
        s.append_one(b"before").unwrap();
        let shared = [piece(&[b'C'; 1000]), piece(b"<second>")];
        let deliveries = [
            spliced("{a:[,]}", &[(4, 0), (5, 1)]),
            spliced("{bb:[,]}", &[(5, 0), (6, 1)]),
            NewDelivery::whole("m".into(), "t".into(), b"{whole}".to_vec()),
        ];
        let at = s.append_submission(&shared, &deliveries).unwrap();
        s.sync().unwrap();
        let c1000 = "C".repeat(1000);
        let want = [
            format!("{{a:[{c1000},<second>]}}"),
            format!("{{bb:[{c1000},<second>]}}"),
            "{whole}".to_owned(),
        ];
        for (at, want) in at.iter().zip(&want) {
            assert_eq!(
                String::from_utf8(s.read_envelope(at).unwrap()).unwrap(),
                *want
            );
            assert_eq!(at.size as usize, want.len());
            assert_eq!(at.segment, 1);
        }
        // The ciphertext is on disk once, not per delivery.
        let on_disk = std::fs::metadata(segment_path(s.dir(), 1)).unwrap().len();
        assert!(on_disk < 1100 + 3 * 100, "{on_disk} bytes");
        // A group that does not fit the segment begins the next one whole.
        let big = [piece(&vec![1u8; SEGMENT_BYTES as usize - 10])];
        let at = s
            .append_submission(&big, &[spliced("[]", &[(1, 0)]), spliced("[]", &[(1, 0)])])
            .unwrap();
        assert!(at.iter().all(|a| a.segment == 2));
        assert_eq!(
            s.read_envelope(&at[1]).unwrap().len(),
            SEGMENT_BYTES as usize - 8
        );
        // A splice naming no shared piece is refused, nothing referred to.
        assert!(s
            .append_submission(&[], &[spliced("[]", &[(1, 0)])])
            .is_err());
    }

    #[test]
    fn a_spool_holds_its_submission_whole_and_is_deleted_unless_kept() {
        use crate::model::submission::Spooled;
        let dir = tempfile::tempdir().unwrap();
        let s = Segments::open(dir.path()).unwrap();
        // A large part written as it arrived, in pieces.
        let spool = s.spool().unwrap();
        assert_ne!(spool.id(), 1, "not the active segment");
        let big = "B".repeat(3000);
        let at = spool.append(&big.as_bytes()[..1000]).unwrap();
        spool.append(&big.as_bytes()[1000..]).unwrap();
        let spooled = SharedPiece {
            bytes: Vec::new(),
            crc32: envelope_checksum(big.as_bytes()),
            spooled: Some(Spooled {
                offset: at,
                len: 3000,
            }),
        };
        // Outside its spool a spooled piece is refused.
        assert!(s
            .append_submission(std::slice::from_ref(&spooled), &[spliced("[]", &[(1, 0)])])
            .is_err());
        let shared = [piece(b"<small>"), spooled];
        let deliveries = [
            spliced("{a:[,]}", &[(4, 0), (5, 1)]),
            spliced("{b:[,]}", &[(4, 0), (5, 1)]),
        ];
        let locs = s.append_spooled(&spool, &shared, &deliveries).unwrap();
        spool.sync().unwrap();
        for (loc, who) in locs.iter().zip(["a", "b"]) {
            assert_eq!(loc.segment, spool.id());
            let want = format!("{{{who}:[<small>,{big}]}}");
            assert_eq!(
                String::from_utf8(s.read_envelope(loc).unwrap()).unwrap(),
                want
            );
            assert_eq!(loc.size as usize, want.len());
        }
        // Open, it is never collected, whatever the database says.
        assert_eq!(s.collect(&BTreeSet::new()).unwrap(), 0);
        // Kept (a committed row refers to it), it outlives its handle, and is
        // collected once nothing refers to it any more.
        let id = spool.id();
        spool.keep();
        drop(spool);
        assert!(s.exists(id));
        assert_eq!(s.collect(&BTreeSet::from([id])).unwrap(), 0);
        assert_eq!(s.collect(&BTreeSet::new()).unwrap(), 1);
        assert!(!s.exists(id));
        // Dropped before the accept (a broken or refused upload): gone at once.
        let broken = s.spool().unwrap();
        broken.append(b"ciphertext of half a part").unwrap();
        let id = broken.id();
        drop(broken);
        assert!(!s.exists(id));
        // Ids never collide with the segments that follow.
        let later = s.spool().unwrap();
        let next = s
            .append_submission(
                &[piece(&vec![0u8; SEGMENT_BYTES as usize])],
                &[spliced("[]", &[(1, 0)])],
            )
            .unwrap();
        let next = s
            .append_submission(&[piece(b"x")], &[spliced("[]", &[(1, 0)])])
            .map(|n| n[0].segment)
            .unwrap_or(next[0].segment);
        assert_ne!(next, later.id());
    }

    #[test]
    fn a_damaged_shared_piece_is_refused_not_returned() {
        let dir = tempfile::tempdir().unwrap();
        let s = Segments::open(dir.path()).unwrap();
        let at = s
            .append_submission(&[piece(b"CIPHERTEXT")], &[spliced("[]", &[(1, 0)])])
            .unwrap();
        s.sync().unwrap();
        assert_eq!(s.read_envelope(&at[0]).unwrap(), b"[CIPHERTEXT]");
        let f = OpenOptions::new()
            .write(true)
            .open(segment_path(s.dir(), 1))
            .unwrap();
        f.write_all_at(b"X", 2).unwrap();
        let err = s.read_envelope(&at[0]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("shared ciphertext"), "{err}");
    }

    #[test]
    fn a_damaged_envelope_is_refused_not_returned() {
        let dir = tempfile::tempdir().unwrap();
        let s = Segments::open(dir.path()).unwrap();
        let at = s.append_one(b"{\"envelope\":1}").unwrap();
        s.sync().unwrap();
        let path = segment_path(s.dir(), at.segment);
        let f = OpenOptions::new().write(true).open(path).unwrap();
        f.write_all_at(b"X", 3).unwrap();
        let err = s.read_envelope(&at).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("CRC-32"));
    }
}
