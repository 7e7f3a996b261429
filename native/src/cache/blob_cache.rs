//! One blob's local cache: `<blob_id>.blob.data`, a sparse file laid out in
//! the blob's uncompressed address space (each chunk at its uncompressed
//! offset), and `<blob_id>.blob.data.chunk_map` saying which chunks are there.
//!
//! This is the layout Nydus's filecache uses and the one a kernel EROFS
//! mount can read as the blob's device, which is why it is kept exact.
//!
//! Images share these files only when their claims about the blob agree
//! (`claims.rs`); an image that disagrees gets `<blob_id>.<fingerprint>.*`.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::chunk_map::ChunkMap;
use crate::bits::AtomicBits;
use super::claims::{self, Claim, Settled};

/// Where the chunk map of cache `stem` (a blob id, or a private stem) lives in `work_dir`.
pub fn chunk_map_path(work_dir: &Path, stem: &str) -> PathBuf {
    work_dir.join(format!("{stem}.blob.data.chunk_map"))
}

pub struct BlobCache {
    data: File,
    map: ChunkMap,
    data_path: PathBuf,
    /// Why this image's cache files are private, when they are.
    private: Option<String>,
    /// One bit per chunk: its verified bytes are written (in the page cache)
    /// but maybe not durable yet. This process may serve them; the persisted
    /// map vouches for them only after [`BlobCache::commit`].
    written: AtomicBits,
    /// Written chunks not yet marked in the persisted map.
    pending: Mutex<Vec<u32>>,
    /// Serialises commits, so a chunk is never marked before its own sync.
    committing: Mutex<()>,
}

impl BlobCache {
    /// Opens (creating if needed) the cache of blob `blob_id` in `work_dir`.
    ///
    /// A data file shorter than the blob (new, or cut short by a crash or an
    /// outside hand) loses its chunk map first, then is extended: a map never
    /// vouches for bytes that are not there. A longer one is refused, never
    /// truncated: another daemon may be serving it, and a blob's size follows
    /// from its id, so an image declaring another size describes the blob wrongly.
    ///
    /// `claims` are the image's facts about the chunks it references; the
    /// shared files are used only if they agree with every other user's.
    pub fn open(work_dir: &Path, blob_id: &str, uncompressed_size: u64, chunk_count: u32, claims: &[Claim]) -> io::Result<BlobCache> {
        // Owner-only: the cache holds image contents other local users must not read (the class
        // of CVE-2021-41103). An existing directory keeps the mode its owner gave it.
        DirBuilder::new().recursive(true).mode(0o700).create(work_dir)?;
        let claims_of = |stem: &str| work_dir.join(format!("{stem}.blob.data.claims"));
        let (stem, fresh, private) = match claims::settle(&claims_of(blob_id), chunk_count, uncompressed_size, claims)? {
            Settled::Shared { fresh } => (blob_id.to_string(), fresh, None),
            Settled::Conflict(why) => {
                let stem = claims::private_stem(blob_id, chunk_count, uncompressed_size, claims);
                match claims::settle(&claims_of(&stem), chunk_count, uncompressed_size, claims)? {
                    Settled::Shared { fresh } => (stem, fresh, Some(why)),
                    Settled::Conflict(again) => {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("blob {blob_id}: {why}; and its private cache: {again}")))
                    }
                }
            }
        };
        let data_path = work_dir.join(format!("{stem}.blob.data"));
        let map_path = chunk_map_path(work_dir, &stem);
        if fresh {
            // Bits set before any claims were recorded vouch for nobody's layout.
            match std::fs::remove_file(&map_path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        let data = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(&data_path)?;
        let size = data.metadata()?.len();
        if size > uncompressed_size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("cache file {} holds {size} bytes but this image declares blob {blob_id} as {uncompressed_size}: refusing to truncate what another image may be reading", data_path.display()),
            ));
        }
        if size < uncompressed_size {
            match std::fs::remove_file(&map_path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            data.set_len(uncompressed_size)?;
        }
        let map = ChunkMap::open(&map_path, chunk_count)?;
        Ok(BlobCache { data, map, data_path, private, written: AtomicBits::new(chunk_count), pending: Mutex::default(), committing: Mutex::default() })
    }

    /// Why this image reads and writes private cache files rather than the
    /// shared ones (its claims about the blob contradict another image's).
    pub fn private(&self) -> Option<&str> {
        self.private.as_deref()
    }

    pub fn map(&self) -> &ChunkMap {
        &self.map
    }

    pub fn data_path(&self) -> &Path {
        &self.data_path
    }

    /// Reads cached bytes at an uncompressed offset (the caller checked the map).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.data.read_exact_at(buf, offset)
    }

    /// Writes chunk data at its uncompressed offset. Not yet durable.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.data.write_all_at(buf, offset)
    }

    /// Whether this process may read chunk `ci` from the data file: marked in
    /// the persisted map, or written by this process and awaiting its commit.
    pub fn is_present(&self, ci: u32) -> bool {
        self.map.is_ready(ci) || self.written.get(ci)
    }

    /// Records that chunk `ci`'s verified bytes were written with
    /// [`BlobCache::write_at`]: readers of this process may have them now,
    /// the persisted map after the next [`BlobCache::commit`].
    pub fn mark_written(&self, ci: u32) {
        if self.written.set(ci) {
            self.pending.lock().unwrap_or_else(|e| e.into_inner()).push(ci);
        }
    }

    /// Whether written chunks await a commit.
    #[cfg(test)]
    pub fn has_pending(&self) -> bool {
        !self.pending.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    }

    /// Makes the written chunks durable (one fdatasync), then marks them in
    /// the persisted map: a crash can lose a fetch, never leave a bit set
    /// for bytes that are not on disk. Returns how many chunks it marked. If
    /// the sync fails, those chunks count as never written (they will be
    /// fetched again) and the error is returned.
    pub fn commit(&self) -> io::Result<usize> {
        let _one_at_a_time = self.committing.lock().unwrap_or_else(|e| e.into_inner());
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if batch.is_empty() {
            return Ok(0);
        }
        if let Err(e) = self.data.sync_data() {
            for &ci in &batch {
                self.written.clear(ci);
            }
            return Err(e);
        }
        for &ci in &batch {
            self.map.set_ready(ci);
        }
        Ok(batch.len())
    }

    /// Chunks this process may read: persisted or awaiting their commit.
    pub fn present_count(&self) -> u32 {
        let count = self.map.chunk_count();
        if self.map.ready_count() == count {
            return count;
        }
        (0..count).filter(|&ci| self.is_present(ci)).count() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn work(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nydus-blobcache-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// A cache of 2 chunks of 4 KiB with chunk 0 written and marked ready.
    fn filled(dir: &Path) -> BlobCache {
        let c = BlobCache::open(dir, ID, 8192, 2, &[]).unwrap();
        c.write_at(&[7u8; 4096], 0).unwrap();
        c.mark_written(0);
        assert_eq!(c.commit().unwrap(), 1);
        c
    }

    #[test]
    fn a_map_never_outlives_the_data_it_vouches_for() {
        // The data file lost (a crash, a GC deleting it first): its map is not trusted.
        let dir = work("lost");
        drop(filled(&dir));
        std::fs::remove_file(dir.join(format!("{ID}.blob.data"))).unwrap();
        assert!(!BlobCache::open(&dir, ID, 8192, 2, &[]).unwrap().map().is_ready(0));

        // Cut short: the same.
        let dir2 = work("short");
        drop(filled(&dir2));
        std::fs::OpenOptions::new().write(true).open(dir2.join(format!("{ID}.blob.data"))).unwrap().set_len(4096).unwrap();
        let c = BlobCache::open(&dir2, ID, 8192, 2, &[]).unwrap();
        assert!(!c.map().is_ready(0));
        assert_eq!(std::fs::metadata(c.data_path()).unwrap().len(), 8192);

        // Intact: kept, bits and bytes.
        drop(c);
        let dir3 = work("intact");
        drop(filled(&dir3));
        let c = BlobCache::open(&dir3, ID, 8192, 2, &[]).unwrap();
        let mut b = [0u8; 4096];
        assert!(c.map().is_ready(0));
        c.read_at(&mut b, 0).unwrap();
        assert_eq!(b, [7u8; 4096]);
        for d in [dir, dir2, dir3] {
            let _ = std::fs::remove_dir_all(d);
        }
    }

    #[test]
    fn a_written_chunk_is_served_at_once_and_vouched_for_only_after_its_commit() {
        let dir = work("commit");
        let c = BlobCache::open(&dir, ID, 8192, 2, &[]).unwrap();
        c.write_at(&[9u8; 4096], 4096).unwrap();
        c.mark_written(1);
        // This process reads it now; the persisted map (what another daemon, or this one after a
        // crash, trusts) does not have it yet.
        assert!(c.is_present(1) && !c.is_present(0));
        assert!(!c.map().is_ready(1));
        assert_eq!(c.present_count(), 1);
        assert!(!BlobCache::open(&dir, ID, 8192, 2, &[]).unwrap().map().is_ready(1));
        assert!(c.has_pending());
        assert_eq!(c.commit().unwrap(), 1);
        assert!(!c.has_pending());
        assert!(c.map().is_ready(1));
        assert!(BlobCache::open(&dir, ID, 8192, 2, &[]).unwrap().map().is_ready(1));
        // Nothing left: a second commit marks nothing.
        assert_eq!(c.commit().unwrap(), 0);
        let _ = std::fs::remove_dir_all(dir);
    }

    fn claim(ci: u32, offset: u64, fill: u8) -> Claim {
        Claim { ci, offset, size: 4096, digest: [fill; 32] }
    }

    #[test]
    fn another_size_or_chunk_count_gets_private_files_and_nothing_is_truncated() {
        let dir = work("declared");
        let live = filled(&dir);
        // An image declaring the blob smaller, or with another chunk count, gets files of its own ...
        for (size, count) in [(4096, 1), (8192 * 10, 20)] {
            let other = BlobCache::open(&dir, ID, size, count, &[]).unwrap();
            assert!(other.private().unwrap().contains("is recorded as 2 chunks in 8192 bytes"), "{:?}", other.private());
            assert_ne!(other.data_path(), live.data_path());
            assert!(!other.map().is_ready(0));
        }
        // ... and the daemon already serving it keeps its bytes and its map.
        assert_eq!(std::fs::metadata(live.data_path()).unwrap().len(), 8192);
        assert!(live.map().is_ready(0));
        let mut b = [0u8; 4096];
        live.read_at(&mut b, 0).unwrap();
        assert_eq!(b, [7u8; 4096]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn images_share_a_blob_only_when_their_claims_agree() {
        let dir = work("claims");
        let a = BlobCache::open(&dir, ID, 8192, 2, &[claim(0, 0, 0xaa)]).unwrap();
        a.write_at(&[0xaa; 4096], 0).unwrap();
        a.map().set_ready(0);
        // Another image referencing the same chunk the same way, plus one more: shared.
        let b = BlobCache::open(&dir, ID, 8192, 2, &[claim(0, 0, 0xaa), claim(1, 4096, 0xbb)]).unwrap();
        assert_eq!((b.private(), b.data_path()), (None, a.data_path()));
        assert!(b.map().is_ready(0));
        // Another digest for chunk 0 (a hostile image naming A's blob): private, and A's bit and
        // bytes are not its to see or change.
        let h = BlobCache::open(&dir, ID, 8192, 2, &[claim(0, 0, 0x66)]).unwrap();
        assert!(h.private().unwrap().contains("chunk 0 is recorded at 0+4096"), "{:?}", h.private());
        assert_ne!(h.data_path(), a.data_path());
        assert!(!h.map().is_ready(0));
        h.write_at(&[0x66; 4096], 0).unwrap();
        let mut got = [0u8; 4096];
        a.read_at(&mut got, 0).unwrap();
        assert_eq!(got, [0xaa; 4096]);
        // A chunk placed over another's bytes (same digest, other offset): private too.
        let o = BlobCache::open(&dir, ID, 8192, 2, &[claim(1, 2048, 0xbb)]).unwrap();
        assert!(o.private().is_some());
        // Chunk 1 unclaimed so far, but overlapping chunk 0: private.
        let dir2 = work("claims-overlap");
        drop(BlobCache::open(&dir2, ID, 8192, 2, &[claim(0, 0, 1)]).unwrap());
        assert!(BlobCache::open(&dir2, ID, 8192, 2, &[claim(1, 1024, 2)]).unwrap().private().unwrap().contains("overlaps"));
        // The same conflicting claims twice share their private files.
        let h2 = BlobCache::open(&dir, ID, 8192, 2, &[claim(0, 0, 0x66)]).unwrap();
        assert_eq!(h2.data_path(), h.data_path());
        for d in [dir, dir2] {
            let _ = std::fs::remove_dir_all(d);
        }
    }

    #[test]
    fn bits_set_before_claims_were_recorded_are_dropped() {
        // A cache from before claims existed (or whose claims file was lost): its map is not trusted.
        let dir = work("unclaimed");
        drop(filled(&dir));
        std::fs::remove_file(dir.join(format!("{ID}.blob.data.claims"))).unwrap();
        let c = BlobCache::open(&dir, ID, 8192, 2, &[claim(0, 0, 7)]).unwrap();
        assert!(!c.map().is_ready(0));
        let _ = std::fs::remove_dir_all(dir);
    }
}
