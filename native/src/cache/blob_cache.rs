//! One blob's local cache: `<blob_id>.blob.data`, a sparse file laid out in
//! the blob's uncompressed address space (each chunk at its uncompressed
//! offset), and `<blob_id>.blob.data.chunk_map` saying which chunks are there.
//!
//! This is the layout Nydus's filecache uses and the one a kernel EROFS
//! mount can read as the blob's device, which is why it is kept exact.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::chunk_map::ChunkMap;

pub struct BlobCache {
    data: File,
    map: ChunkMap,
    data_path: PathBuf,
}

impl BlobCache {
    /// Opens (creating if needed) the cache of blob `blob_id` in `work_dir`.
    ///
    /// A data file of the wrong size is extended (a smaller one) or the map is
    /// reset (a larger one cannot belong to this blob).
    pub fn open(work_dir: &Path, blob_id: &str, uncompressed_size: u64, chunk_count: u32) -> io::Result<BlobCache> {
        // Owner-only: the cache holds image contents other local users must not read (the class
        // of CVE-2021-41103). An existing directory keeps the mode its owner gave it.
        DirBuilder::new().recursive(true).mode(0o700).create(work_dir)?;
        let data_path = work_dir.join(format!("{blob_id}.blob.data"));
        let map_path = work_dir.join(format!("{blob_id}.blob.data.chunk_map"));
        let data = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(&data_path)?;
        let size = data.metadata()?.len();
        if size > uncompressed_size {
            data.set_len(0)?;
            let _ = std::fs::remove_file(&map_path);
        }
        if size != uncompressed_size {
            data.set_len(uncompressed_size)?;
        }
        let map = ChunkMap::open(&map_path, chunk_count)?;
        Ok(BlobCache { data, map, data_path })
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

    /// Makes written data durable; bits for it may be set afterwards.
    pub fn sync_data(&self) -> io::Result<()> {
        self.data.sync_data()
    }
}
