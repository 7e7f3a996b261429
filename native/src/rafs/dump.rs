//! The whole image as JSON (`rafsDump` in JS): how the TypeScript side
//! reads a bootstrap (nydusify's check, merge, inspect and chunk dicts,
//! nydusd's access records), so the format is decoded in one place, this
//! crate. Tests compare it with a kernel EROFS mount of the same
//! bootstrap.
//!
//! Shape (one object):
//!
//! ```text
//! { rootNid, chunkSize, compressor, digester, inodeCount, merkleRoot: hex | null,
//!   statfs: { blocks, files, ffree, bsize, namelen },
//!   blobs: [ { id, compressor, digester, chunkSize, chunkCount, features,
//!              compressedSize, uncompressedSize, ciCompressor, ciOffset,
//!              ciCompressedSize, ciUncompressedSize, tocSize, tocDigest } ],
//!   prefetch: [ nid ],
//!   nodes: [ { path, nid, ino, mode, uid, gid, size, nlink, rdev, mtime,
//!              mtimeNsec, blocks, xattrs: { name: base64 },
//!              merkleDigest?: hex,
//!              target?, targetBase64?                       (symlinks)
//!              entries?: [ { name, nid, fileType } ]        (directories)
//!              chunks?: [ { blobIndex, chunkIndex, compressedOffset,
//!                           compressedSize, uncompressedOffset,
//!                           uncompressedSize, digest, compressed,
//!                           crc32c, fileOffset } ]          (regular files) } ] }
//! ```
//!
//! `nodes` is in walk order (breadth-first, on-disk entry order); a hard
//! link appears once per path. `entries` keeps `.` and `..`. Names and
//! targets are UTF-8 with invalid bytes replaced, as `Buffer.toString`
//! does; `targetBase64` has the exact bytes. Integers above 2^53 - 1 are
//! written as decimal strings, because JSON numbers would round them.

use std::fmt::Write;
use std::path::Path;

use super::bytes::MAX_SAFE;
use super::error::Result;
use super::{Bootstrap, Inode};

/// Opens, walks and dumps the bootstrap at `path`.
pub fn dump_file(path: &Path) -> Result<String> {
    dump(&Bootstrap::open(path)?)
}

/// Walks and dumps a bootstrap held in memory.
pub fn dump_bytes(bytes: Vec<u8>) -> Result<String> {
    dump(&Bootstrap::from_bytes(bytes)?)
}

/// The JSON described in the module docs. Fails on the first format error
/// anywhere in the tree (the walk reads every inode, directory, xattr area,
/// symlink target and chunk).
pub fn dump(bs: &Bootstrap) -> Result<String> {
    let mut j = Json(String::with_capacity(4096));
    j.raw("{\"rootNid\":");
    j.u64(bs.root_nid());
    j.raw(",\"chunkSize\":");
    j.u64(bs.chunk_size() as u64);
    j.raw(",\"compressor\":");
    j.str(bs.compressor().name().as_bytes());
    j.raw(",\"digester\":");
    j.str(bs.digester().name().as_bytes());
    j.raw(",\"inodeCount\":");
    j.u64(bs.inode_count());
    j.raw(",\"merkleRoot\":");
    match bs.merkle_root() {
        Some(d) => j.hex(&d),
        None => j.raw("null"),
    }
    let s = bs.statfs();
    j.raw(",\"statfs\":{\"blocks\":");
    j.u64(s.blocks);
    j.raw(",\"files\":");
    j.u64(s.files);
    j.raw(",\"ffree\":");
    j.u64(s.ffree);
    j.raw(",\"bsize\":");
    j.u64(s.bsize as u64);
    j.raw(",\"namelen\":");
    j.u64(s.namelen as u64);
    j.raw("},\"blobs\":[");
    for (i, b) in bs.blobs().iter().enumerate() {
        j.sep(i);
        j.raw("{\"id\":");
        j.str(b.id.as_bytes());
        j.raw(",\"compressor\":");
        j.str(b.compressor.name().as_bytes());
        j.raw(",\"digester\":");
        j.str(b.digester.name().as_bytes());
        for (k, v) in [
            ("chunkSize", b.chunk_size as u64),
            ("chunkCount", b.chunk_count as u64),
            ("features", b.features as u64),
            ("compressedSize", b.compressed_size),
            ("uncompressedSize", b.uncompressed_size),
        ] {
            j.key(k);
            j.u64(v);
        }
        j.raw(",\"ciCompressor\":");
        j.str(b.ci_compressor.name().as_bytes());
        for (k, v) in [
            ("ciOffset", b.ci_offset),
            ("ciCompressedSize", b.ci_compressed_size),
            ("ciUncompressedSize", b.ci_uncompressed_size),
            ("tocSize", b.toc_size as u64),
        ] {
            j.key(k);
            j.u64(v);
        }
        j.raw(",\"tocDigest\":");
        j.hex(&b.toc_digest);
        j.raw("}");
    }
    j.raw("],\"prefetch\":[");
    for (i, nid) in bs.prefetch_nids()?.into_iter().enumerate() {
        j.sep(i);
        j.u64(nid);
    }
    j.raw("],\"nodes\":[");
    let mut n = 0;
    bs.walk(&mut |path, inode| {
        j.sep(n);
        n += 1;
        node(bs, &mut j, path, inode).map_err(|e| e.context(String::from_utf8_lossy(path)))
    })?;
    j.raw("]}");
    Ok(j.0)
}

fn node(bs: &Bootstrap, j: &mut Json, path: &[u8], inode: &Inode) -> Result<()> {
    j.raw("{\"path\":");
    j.str(path);
    for (k, v) in [
        ("nid", inode.nid),
        ("ino", inode.ino as u64),
        ("mode", inode.mode as u64),
        ("uid", inode.uid as u64),
        ("gid", inode.gid as u64),
        ("size", inode.size),
        ("nlink", inode.nlink as u64),
        ("rdev", inode.rdev as u64),
    ] {
        j.key(k);
        j.u64(v);
    }
    j.raw(",\"mtime\":");
    j.i64(inode.mtime_secs());
    j.raw(",\"mtimeNsec\":");
    j.u64(inode.mtime_nsec as u64);
    j.raw(",\"blocks\":");
    j.u64(inode.blocks_512());
    j.raw(",\"xattrs\":{");
    for (i, (name, value)) in bs.xattrs(inode)?.iter().enumerate() {
        j.sep(i);
        j.str(name);
        j.raw(":");
        j.base64(value);
    }
    j.raw("}");
    if let Some(d) = bs.merkle_digest(inode)? {
        j.raw(",\"merkleDigest\":");
        j.hex(&d);
    }
    if inode.is_symlink() {
        let target = bs.read_link(inode)?;
        j.raw(",\"target\":");
        j.str(target);
        j.raw(",\"targetBase64\":");
        j.base64(target);
    }
    if inode.is_dir() {
        j.raw(",\"entries\":[");
        let mut i = 0;
        bs.read_dir(inode, 0, &mut |e| {
            j.sep(i);
            i += 1;
            j.raw("{\"name\":");
            j.str(e.name);
            j.raw(",\"nid\":");
            j.u64(e.nid);
            j.raw(",\"fileType\":");
            j.u64(e.file_type as u64);
            j.raw("}");
            true
        })?;
        j.raw("]");
    }
    if inode.is_reg() {
        j.raw(",\"chunks\":[");
        for i in 0..bs.chunk_count(inode) {
            let c = bs.chunk(inode, i)?;
            j.sep(i as usize);
            j.raw("{\"blobIndex\":");
            j.u64(c.blob_index as u64);
            for (k, v) in [
                ("chunkIndex", c.chunk_index as u64),
                ("compressedOffset", c.compressed_offset),
                ("compressedSize", c.compressed_size as u64),
                ("uncompressedOffset", c.uncompressed_offset),
                ("uncompressedSize", c.uncompressed_size as u64),
            ] {
                j.key(k);
                j.u64(v);
            }
            j.raw(",\"digest\":");
            j.hex(&c.digest);
            j.raw(",\"compressed\":");
            j.raw(if c.compressed { "true" } else { "false" });
            j.raw(",\"crc32c\":");
            match c.crc32c {
                Some(crc) => j.u64(crc as u64),
                None => j.raw("null"),
            }
            j.raw(",\"fileOffset\":");
            j.u64(c.file_offset);
            j.raw("}");
        }
        j.raw("]");
    }
    j.raw("}");
    Ok(())
}

/// A minimal JSON writer: enough for this one document, no escaping rules
/// beyond what RFC 8259 requires.
struct Json(String);

impl Json {
    fn raw(&mut self, s: &str) {
        self.0.push_str(s);
    }

    /// A comma before every element but the first.
    fn sep(&mut self, i: usize) {
        if i > 0 {
            self.0.push(',');
        }
    }

    fn key(&mut self, k: &str) {
        self.0.push_str(",\"");
        self.0.push_str(k);
        self.0.push_str("\":");
    }

    fn u64(&mut self, v: u64) {
        if v > MAX_SAFE {
            let _ = write!(self.0, "\"{v}\"");
        } else {
            let _ = write!(self.0, "{v}");
        }
    }

    fn i64(&mut self, v: i64) {
        if v.unsigned_abs() > MAX_SAFE {
            let _ = write!(self.0, "\"{v}\"");
        } else {
            let _ = write!(self.0, "{v}");
        }
    }

    /// A string from bytes, invalid UTF-8 replaced by U+FFFD.
    fn str(&mut self, bytes: &[u8]) {
        self.0.push('"');
        for c in String::from_utf8_lossy(bytes).chars() {
            match c {
                '"' => self.0.push_str("\\\""),
                '\\' => self.0.push_str("\\\\"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(self.0, "\\u{:04x}", c as u32);
                }
                c => self.0.push(c),
            }
        }
        self.0.push('"');
    }

    fn hex(&mut self, bytes: &[u8]) {
        self.0.push('"');
        for b in bytes {
            let _ = write!(self.0, "{b:02x}");
        }
        self.0.push('"');
    }

    /// Standard base64 with padding, as `Buffer.from(s, 'base64')` reads.
    fn base64(&mut self, bytes: &[u8]) {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        self.0.push('"');
        for group in bytes.chunks(3) {
            let n = group.iter().enumerate().fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
            for i in 0..4 {
                if i <= group.len() {
                    self.0.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    self.0.push('=');
                }
            }
        }
        self.0.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::Json;

    #[test]
    fn json_encoding() {
        let mut j = Json(String::new());
        for s in [&b""[..], b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar", &[0xff, 0x00, 0x80]] {
            j.base64(s);
        }
        assert_eq!(j.0, r#""""Zg==""Zm8=""Zm9v""Zm9vYg==""Zm9vYmE=""Zm9vYmFy""/wCA""#);
        let mut j = Json(String::new());
        j.str(b"a\"b\\c\n\x01\xffz");
        j.u64((1 << 53) - 1);
        j.u64(1 << 53);
        j.i64(-5);
        j.i64(i64::MIN);
        assert_eq!(
            j.0,
            "\"a\\\"b\\\\c\\u000a\\u0001\u{fffd}z\"9007199254740991\"9007199254740992\"-5\"-9223372036854775808\""
        );
    }
}
