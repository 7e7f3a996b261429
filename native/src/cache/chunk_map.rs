//! The persisted chunk-ready bitmap, in Nydus's `.chunk_map` file format.
//!
//! Layout (Nydus's): a 4096-byte header
//! (`magic`, `version`, `magic2`, `all_ready`, then zeros) followed by one bit
//! per chunk, most significant bit first: chunk `i` is bit `1 << (7 - i % 8)`
//! of byte `4096 + i / 8`.
//!
//! The file is mapped shared and bits are set with atomic `fetch_or`, so the
//! page cache holds the truth the moment a bit is set: a `kill -9` right after
//! loses nothing, and another process mapping the same file sees the bit.
//! Callers set a bit only after the chunk's data is durable.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::Ordering;

use crate::shared_map::SharedMap;

pub const HEADER_SIZE: usize = 4096;
pub const MAGIC: u32 = 0x424D_4150;
pub const MAGIC2: u32 = 0x434D_4150;
pub const VERSION: u32 = 1;
/// Written into the `all_ready` word when every chunk is present.
pub const ALL_READY: u32 = 0x4D4D_4150;

pub struct ChunkMap {
    map: SharedMap,
    chunk_count: u32,
    /// Set at open from the header; lets readers skip the bitmap entirely.
    all_ready: bool,
}

fn bitmap_len(chunk_count: u32) -> usize {
    (chunk_count as usize).div_ceil(8)
}

impl ChunkMap {
    /// Opens or creates the map for a blob of `chunk_count` chunks.
    ///
    /// A file without a valid header (all zeros: created but never given one,
    /// or damaged) is reset: its bits cannot be trusted, and nobody maps such
    /// a file. A valid map of another length is refused, never truncated:
    /// another daemon may have it mapped (truncating would kill it with
    /// SIGBUS), and a blob's chunk count follows from its id, so an image
    /// declaring another count describes the blob wrongly. Daemons opening
    /// one map at once are serialised by an exclusive flock.
    pub fn open(path: &Path, chunk_count: u32) -> io::Result<ChunkMap> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path)?;
        // Released below, or when `file` is closed.
        file.lock()?;
        let len = HEADER_SIZE + bitmap_len(chunk_count);
        let current = file.metadata()?.len();
        let mut header = [0u8; 16];
        let has_header = current >= HEADER_SIZE as u64 && {
            use std::os::unix::fs::FileExt;
            file.read_exact_at(&mut header, 0).is_ok()
                && word(&header, 0) == MAGIC
                && word(&header, 4) == VERSION
                && word(&header, 8) == MAGIC2
        };
        if has_header && current != len as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("chunk map {} is for another chunk count than this image's {chunk_count}: another image describes this blob differently", path.display()),
            ));
        }
        if !has_header {
            // Full length, all zeros, then the header: the order Nydus uses, so
            // a crash in between leaves a file that the next open repairs.
            file.set_len(0)?;
            file.set_len(len as u64)?;
            let mut h = [0u8; 16];
            h[0..4].copy_from_slice(&MAGIC.to_le_bytes());
            h[4..8].copy_from_slice(&VERSION.to_le_bytes());
            h[8..12].copy_from_slice(&MAGIC2.to_le_bytes());
            use std::os::unix::fs::FileExt;
            file.write_all_at(&h, 0)?;
            header = h;
        }
        let map = SharedMap::new(&file, len)?;
        // The mapping stays valid after the lock goes, and after the file is closed.
        file.unlock()?;
        let mut this = ChunkMap { map, chunk_count, all_ready: word(&header, 12) == ALL_READY };
        if !this.all_ready && chunk_count > 0 && this.ready_count() == chunk_count {
            this.mark_all_ready();
        }
        Ok(this)
    }

    pub fn chunk_count(&self) -> u32 {
        self.chunk_count
    }

    pub fn is_ready(&self, chunk: u32) -> bool {
        if self.all_ready {
            return true;
        }
        if chunk >= self.chunk_count {
            return false;
        }
        let b = self.map.byte(HEADER_SIZE + chunk as usize / 8).load(Ordering::Acquire);
        b & (1 << (7 - chunk % 8)) != 0
    }

    /// Marks `chunk` ready. Call only once its data is durable.
    pub fn set_ready(&self, chunk: u32) {
        if chunk < self.chunk_count {
            self.map.byte(HEADER_SIZE + chunk as usize / 8).fetch_or(1 << (7 - chunk % 8), Ordering::AcqRel);
        }
    }

    pub fn ready_count(&self) -> u32 {
        if self.all_ready {
            return self.chunk_count;
        }
        let mut n = 0u32;
        let bytes = bitmap_len(self.chunk_count);
        for i in 0..bytes {
            let mut b = self.map.byte(HEADER_SIZE + i).load(Ordering::Relaxed);
            // Bits past the last chunk are padding: a damaged map may have them set.
            if i == bytes - 1 && self.chunk_count % 8 != 0 {
                b &= 0xffu8 << (8 - self.chunk_count % 8);
            }
            n += b.count_ones();
        }
        n
    }

    fn mark_all_ready(&mut self) {
        for (i, b) in ALL_READY.to_le_bytes().iter().enumerate() {
            self.map.byte(12 + i).store(*b, Ordering::Release);
        }
        self.all_ready = true;
    }

    /// Pushes the bitmap to disk (used at clean shutdown; the page cache
    /// already survives a crash of this process).
    pub fn flush(&self) -> io::Result<()> {
        self.map.flush()
    }
}

fn word(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("nydus-chunkmap-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        dir
    }

    #[test]
    fn bits_are_msb_first_and_persist() {
        let path = temp("persist");
        {
            let map = ChunkMap::open(&path, 20).unwrap();
            assert!(!map.is_ready(0));
            map.set_ready(0);
            map.set_ready(9);
            assert!(map.is_ready(0) && map.is_ready(9) && !map.is_ready(8));
            assert_eq!(map.ready_count(), 2);
        }
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 4096 + 3);
        assert_eq!(word(&bytes, 0), MAGIC);
        assert_eq!(word(&bytes, 8), MAGIC2);
        assert_eq!(bytes[4096], 0x80);
        assert_eq!(bytes[4097], 0x40);
        let map = ChunkMap::open(&path, 20).unwrap();
        assert!(map.is_ready(9));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn full_map_gets_all_ready_and_bad_header_resets() {
        let path = temp("full");
        {
            let map = ChunkMap::open(&path, 3).unwrap();
            (0..3).for_each(|i| map.set_ready(i));
        }
        let map = ChunkMap::open(&path, 3).unwrap();
        assert!(map.all_ready);
        drop(map);
        assert_eq!(word(&std::fs::read(&path).unwrap(), 12), ALL_READY);
        // A different chunk count: refused, the file left as it is (another daemon may map it).
        let err = ChunkMap::open(&path, 30).err().expect("a map of another chunk count must be refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(ChunkMap::open(&path, 3).unwrap().all_ready);
        std::fs::remove_file(&path).unwrap();
        drop(ChunkMap::open(&path, 30).unwrap());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[0] ^= 1;
        bytes[4096] = 0xff;
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(ChunkMap::open(&path, 30).unwrap().ready_count(), 0);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn padding_bits_are_not_counted() {
        let path = temp("padding");
        drop(ChunkMap::open(&path, 3).unwrap());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER_SIZE] = 0b1001_1111; // chunk 0 ready, 1 and 2 not; the 5 padding bits set
        std::fs::write(&path, bytes).unwrap();
        let map = ChunkMap::open(&path, 3).unwrap();
        assert_eq!(map.ready_count(), 1);
        assert!(!map.all_ready);
        std::fs::remove_file(&path).unwrap();
    }
}
