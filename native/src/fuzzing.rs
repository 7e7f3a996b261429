//! Entry points for the coverage-guided fuzzers (`fuzz/`, built with the
//! `fuzzing` feature) and for the tests that replay their findings: each
//! takes arbitrary bytes and must never panic, hang or read out of bounds,
//! whatever they are.

use std::collections::{HashSet, VecDeque};

use crate::codec::{self, Compressor};
use crate::digest::{self, Digester};
use crate::rafs::{dump, Bootstrap};

/// A bootstrap: parsed, validated, and every structure reachable from the
/// root visited (inodes, xattrs, links, chunks, directories, lookups), as a
/// daemon serving it would. Returns the inodes visited.
pub fn bootstrap(data: &[u8]) -> usize {
    walk_everything(data.to_vec(), true)
}

pub(crate) fn walk_everything(bytes: Vec<u8>, with_dump: bool) -> usize {
    let Ok(bs) = Bootstrap::from_bytes(bytes) else { return 0 };
    let _ = bs.chunk_rows();
    let _ = bs.prefetch_nids();
    let _ = bs.statfs();
    let _ = bs.path_to_nid(b"/a/b/c/block");
    let _ = bs.validate();
    if with_dump {
        let _ = dump::dump(&bs);
    }
    let mut seen = HashSet::new();
    let mut queue = VecDeque::from([bs.root_nid()]);
    let mut work = 0;
    while let Some(nid) = queue.pop_front() {
        if !seen.insert(nid) || seen.len() > 5000 {
            continue;
        }
        let Ok(inode) = bs.inode(nid) else { continue };
        work += 1;
        let _ = bs.xattrs(&inode);
        let _ = bs.xattr(&inode, b"user.foo");
        let _ = bs.merkle_digest(&inode);
        let _ = bs.read_link(&inode);
        for i in 0..bs.chunk_count(&inode).min(1000) {
            let _ = bs.chunk(&inode, i);
        }
        if inode.is_dir() {
            let mut names = Vec::new();
            let _ = bs.read_dir(&inode, 0, &mut |e| {
                names.push((e.name.to_vec(), e.nid, e.next_cookie));
                names.len() < 2000
            });
            for (name, child, cookie) in names {
                let _ = bs.lookup(&inode, &name);
                let _ = bs.read_dir(&inode, cookie, &mut |_| false);
                queue.push_back(child);
            }
        }
    }
    work
}

/// A stored chunk: the first byte picks the compressor (low bits) and the
/// digest (top bit), the next
/// two the claimed uncompressed size; the rest is decompressed as the loader
/// would, and digested.
pub fn chunk(data: &[u8]) {
    let [sel, a, b, stored @ ..] = data else { return };
    let compressor = Compressor::ALL[(sel & 0x7f) as usize % Compressor::ALL.len()];
    let digester = if sel & 0x80 != 0 { Digester::Sha256 } else { Digester::Blake3 };
    let expected = u16::from_le_bytes([*a, *b]) as usize * 16;
    if let Ok(plain) = codec::decompress(compressor, stored, expected) {
        assert_eq!(plain.len(), expected, "a decompressed chunk must have the size it claims");
        let _ = digest::digest(digester, &plain);
    }
}

/// One request as the kernel would write it to /dev/fuse: decoded, answered
/// by a small filesystem, and the answer encoded (and written to /dev/null).
pub fn fuse_request(data: &[u8]) {
    crate::fuse::fuzz_request(data);
}
