//! Reader tests on real images built by the TypeScript builder
//! (`bin/nydus-image.js create`), compared with the source tree they were
//! built from, plus hostile-input tests (bit flips, truncation) that must
//! produce `Ok` or `Err`, never a panic.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::codec::{self, Compressor};
use crate::fuzzing::walk_everything;

/// The repository this crate sits in (native/..), wherever it was cloned.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rafs-test-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) -> bool {
    crate::xattr::set(p.to_str().unwrap(), name, value).is_ok()
}

/// /proc/self belongs to the process's effective user.
fn is_root() -> bool {
    fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// Runs a tool that makes a special file or changes an owner.
fn run(tool: &str, args: &[&std::ffi::OsStr]) -> bool {
    Command::new(tool).args(args).status().map(|s| s.success()).unwrap_or(false)
}

/// A tree exercising every reader path: multi-block directories, names
/// sorting before ".", inline and block symlinks, multi-chunk files, hard
/// links, special files, xattrs (when the filesystem takes them), big ids.
fn make_tree(root: &Path) -> bool {
    fs::create_dir_all(root.join("a/b/c")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::create_dir_all(root.join("big")).unwrap();
    fs::write(root.join("zero"), b"").unwrap();
    fs::write(root.join("one"), b"x").unwrap();
    fs::write(root.join("!bang"), b"sorts before dot").unwrap();
    fs::write(root.join("-dash"), b"also before dot").unwrap();
    let pattern: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    fs::write(root.join("a/random"), &pattern).unwrap();
    fs::write(root.join("a/zeros"), vec![0u8; 3 * 4096 + 17]).unwrap();
    fs::write(root.join("a/b/c/block"), vec![7u8; 4096]).unwrap();
    fs::write(root.join("a/b/text"), "hello world\n".repeat(1000)).unwrap();
    for i in 0..400 {
        fs::write(root.join(format!("big/entry-with-a-longish-name-{i:04}")), format!("{i}")).unwrap();
    }
    fs::hard_link(root.join("a/b/text"), root.join("hardlink")).unwrap();
    symlink("a/b/text", root.join("link")).unwrap();
    symlink("x".repeat(3000), root.join("longlink")).unwrap();
    symlink("y".repeat(4000), root.join("a/longerlink")).unwrap();
    assert!(run("mkfifo", &["-m".as_ref(), "0640".as_ref(), root.join("fifo").as_os_str()]));
    if is_root() {
        assert!(run("mknod", &["-m".as_ref(), "0600".as_ref(), root.join("chr").as_os_str(), "c".as_ref(), "1".as_ref(), "3".as_ref()]));
        assert!(run("chown", &["-h".as_ref(), "70000:80000".as_ref(), root.join("a/zeros").as_os_str()]));
    }
    fs::set_permissions(root.join("one"), std::os::unix::fs::PermissionsExt::from_mode(0o4755)).unwrap();
    let xattrs = set_xattr(&root.join("one"), "user.foo", b"bar")
        && set_xattr(&root.join("one"), "user.empty", b"")
        && set_xattr(&root.join("a"), "user.dir", &[1, 2, 3, 0, 255])
        && set_xattr(&root.join("a/b/c/block"), "user.long", &[b'v'; 3000]);
    if xattrs && is_root() {
        set_xattr(&root.join("one"), "trusted.t", b"tv");
    }
    xattrs
}

/// Builds an image of `src` (a directory, or a tar of it when `tar`).
fn build(scratch: &Path, src: &Path, tar: bool, compressor: &str, chunk_size: &str) -> (PathBuf, PathBuf) {
    let cli = repo().join("bin/nydus-image.js");
    let dist = repo().join("nydusify/dist/cli/nydus-image.js");
    // `npm test` builds the TypeScript before it runs these tests.
    assert!(dist.exists(), "{} is missing: run `npm run build` in {} first", dist.display(), repo().display());
    let boot = scratch.join(format!("boot-{compressor}-{tar}"));
    let blobs = scratch.join(format!("blobs-{compressor}-{tar}"));
    let source = if tar {
        let t = scratch.join("src.tar");
        let ok = Command::new("tar")
            .arg("-cf")
            .arg(&t)
            .arg("-C")
            .arg(src)
            .arg("--xattrs")
            .arg("--xattrs-include=*")
            .arg(".")
            .status();
        assert!(ok.is_ok_and(|s| s.success()), "tar failed");
        t
    } else {
        src.to_path_buf()
    };
    let out = Command::new("node")
        .arg(&cli)
        .args([
            "create",
            "--type",
            if tar { "tar-rafs" } else { "dir-rafs" },
            "--compressor",
            compressor,
            "--chunk-size",
            chunk_size,
        ])
        .arg("--bootstrap")
        .arg(&boot)
        .arg("--blob-dir")
        .arg(&blobs)
        .arg(&source)
        .output();
    let out = out.unwrap_or_else(|e| panic!("cannot run node (is Node.js installed?): {e}"));
    assert!(out.status.success(), "nydus-image create failed: {}", String::from_utf8_lossy(&out.stderr));
    (boot, blobs)
}

/// All entries of `dir` from `cookie` on.
fn list(bs: &Bootstrap, dir: &Inode, cookie: u64) -> Vec<(Vec<u8>, u64, u8, u64)> {
    let mut out = Vec::new();
    bs.read_dir(dir, cookie, &mut |e| {
        out.push((e.name.to_vec(), e.nid, e.file_type, e.next_cookie));
        true
    })
    .unwrap();
    out
}

/// The file's bytes, reassembled from its chunks and the blob files.
fn read_file(bs: &Bootstrap, blob_dir: &Path, inode: &Inode) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..bs.chunk_count(inode) {
        let c = bs.chunk(inode, i).unwrap();
        assert_eq!(c.uncompressed_offset % 4096, 0);
        let blob = &bs.blobs()[c.blob_index as usize];
        let data = fs::read(blob_dir.join(&blob.id)).unwrap();
        let stored = &data[c.compressed_offset as usize..(c.compressed_offset + c.compressed_size as u64) as usize];
        let plain = if c.compressed {
            codec::decompress(blob.compressor, stored, c.uncompressed_size as usize).unwrap()
        } else {
            stored[..c.uncompressed_size as usize].to_vec()
        };
        assert_eq!(plain.len(), c.uncompressed_size as usize);
        if let Some(crc) = c.crc32c {
            assert_eq!(crc, crate::crc32c::crc32c(&plain), "crc of chunk {i} of inode {}", inode.nid);
        }
        assert_eq!(crate::digest::digest(blob.digester, &plain), c.digest);
        out.extend_from_slice(&plain);
    }
    out
}

fn source_xattrs(p: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out: Vec<(Vec<u8>, Vec<u8>)> =
        crate::xattr::list(p.to_str().unwrap()).unwrap_or_default().into_iter().map(|(k, v)| (k.into_bytes(), v)).collect();
    out.sort();
    out
}

/// Walks the whole image and compares it with the source tree.
fn check_against_source(bs: &Bootstrap, blob_dir: &Path, src: &Path, exact_mtime: bool, xattrs: bool) {
    let root = bs.inode(bs.root_nid()).unwrap();
    assert!(root.is_dir());
    let mut queue = VecDeque::from([(bs.root_nid(), src.to_path_buf(), bs.root_nid())]);
    let mut seen_files = 0;
    while let Some((nid, path, parent)) = queue.pop_front() {
        let dir = bs.inode(nid).unwrap();
        let entries = list(bs, &dir, 0);
        // Bytewise sorted, "." and ".." included.
        assert!(entries.windows(2).all(|w| w[0].0 < w[1].0), "unsorted {}", path.display());
        let mut names: Vec<Vec<u8>> =
            fs::read_dir(&path).unwrap().map(|e| e.unwrap().file_name().as_bytes().to_vec()).collect();
        names.extend([b".".to_vec(), b"..".to_vec()]);
        names.sort();
        assert_eq!(entries.iter().map(|e| e.0.clone()).collect::<Vec<_>>(), names, "entries of {}", path.display());
        // Every cookie resumes right after its entry; cookies are non-zero.
        for (k, e) in entries.iter().enumerate() {
            assert_ne!(e.3, 0);
            assert_eq!(list(bs, &dir, e.3), entries[k + 1..].to_vec());
        }
        let mut first = Vec::new();
        bs.read_dir(&dir, 0, &mut |e| {
            first.push(e.name.to_vec());
            false
        })
        .unwrap();
        assert_eq!(first.len(), 1);
        for (name, child, ft, _) in &entries {
            assert_eq!(bs.lookup(&dir, name).unwrap(), Some(*child), "lookup {:?}", String::from_utf8_lossy(name));
            let mut missing = name.clone();
            missing.push(b'~');
            assert_eq!(bs.lookup(&dir, &missing).unwrap(), None);
            if name == b"." {
                assert_eq!(*child, nid);
                continue;
            }
            if name == b".." {
                assert_eq!(*child, parent);
                continue;
            }
            let p = path.join(std::ffi::OsStr::from_bytes(name));
            let meta = fs::symlink_metadata(&p).unwrap();
            let inode = bs.inode(*child).unwrap();
            assert_eq!(inode.mode, meta.mode(), "{}", p.display());
            assert_eq!(*ft, tree::file_type(meta.mode()));
            assert_eq!((inode.uid, inode.gid), (meta.uid(), meta.gid()), "{}", p.display());
            assert_eq!(inode.nlink as u64, meta.nlink(), "{}", p.display());
            if exact_mtime && !meta.is_dir() {
                assert_eq!(
                    (inode.mtime as i64, inode.mtime_nsec as i64),
                    (meta.mtime(), meta.mtime_nsec()),
                    "{}",
                    p.display()
                );
            }
            let rel = p.strip_prefix(src).unwrap();
            let abs = [b"/".as_slice(), rel.as_os_str().as_bytes()].concat();
            assert_eq!(bs.path_to_nid(&abs).unwrap(), Some(*child));
            check_xattr_access(bs, &inode);
            check_merkle_entry(bs, &inode);
            if xattrs {
                let mut got = bs.xattrs(&inode).unwrap();
                got.sort();
                let want: Vec<_> =
                    source_xattrs(&p).into_iter().filter(|(n, _)| !n.starts_with(b"security.")).collect();
                assert_eq!(got, want, "xattrs of {}", p.display());
            }
            if meta.is_dir() {
                queue.push_back((*child, p, nid));
            } else if meta.file_type().is_symlink() {
                assert_eq!(bs.read_link(&inode).unwrap(), fs::read_link(&p).unwrap().as_os_str().as_bytes());
            } else if meta.is_file() {
                assert_eq!(inode.size, meta.len());
                assert_eq!(read_file(bs, blob_dir, &inode), fs::read(&p).unwrap(), "content of {}", p.display());
                assert!(bs.chunk(&inode, bs.chunk_count(&inode)).is_err());
                seen_files += 1;
            } else {
                assert_eq!(
                    inode.rdev as u64,
                    if meta.file_type().is_char_device() { encode_dev(meta.rdev()) } else { 0 }
                );
                assert!(bs.read_link(&inode).is_err());
            }
        }
    }
    assert!(seen_files > 400);
    assert_eq!(bs.path_to_nid(b"/a/nope").unwrap(), None);
    assert_eq!(bs.path_to_nid(b"/one/x").unwrap(), None);
    assert_eq!(bs.path_to_nid(b"/").unwrap(), Some(bs.root_nid()));
}

use std::os::unix::fs::FileTypeExt;

/// The borrowed getters agree with the list, and a missing name is None.
fn check_xattr_access(bs: &Bootstrap, inode: &Inode) {
    let all = bs.xattrs(inode).unwrap();
    for (name, value) in &all {
        assert_eq!(bs.xattr(inode, name).unwrap(), Some(value.as_slice()));
        let mut longer = name.clone();
        longer.push(b'x');
        assert_eq!(bs.xattr(inode, &longer).unwrap(), None);
        assert_eq!(bs.xattr(inode, &name[..name.len() - 1]).unwrap(), None);
    }
    assert_eq!(bs.xattr(inode, b"user.not-there").unwrap(), None);
    let mut seen = Vec::new();
    bs.for_each_xattr(inode, &mut |x| {
        seen.push((x.full_name(), x.value.to_vec()));
        true
    })
    .unwrap();
    assert_eq!(seen, all);
}

/// SPEC §4.2: a file's content digest is H(its chunk digests), a
/// symlink's H(target), a special file's H(""); directories need the
/// entry records, which `check` covers.
fn check_merkle_entry(bs: &Bootstrap, inode: &Inode) {
    let Some(stored) = bs.merkle_digest(inode).unwrap() else { return };
    let digester = bs.blobs()[0].digester;
    let expected = if inode.is_reg() {
        let mut all = Vec::new();
        for i in 0..bs.chunk_count(inode) {
            all.extend_from_slice(&bs.chunk(inode, i).unwrap().digest);
        }
        crate::digest::digest(digester, &all)
    } else if inode.is_symlink() {
        crate::digest::digest(digester, bs.read_link(inode).unwrap())
    } else if inode.is_dir() {
        return;
    } else {
        crate::digest::digest(digester, b"")
    };
    assert_eq!(stored, expected, "merkle entry of inode {}", inode.nid);
}

/// Linux `new_encode_dev`.
fn encode_dev(dev: u64) -> u64 {
    // glibc's gnu_dev_major/minor encoding, spelled out (libc's are unsafe fns).
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (minor & 0xff) | (major & 0xfff) << 8 | (minor & !0xff) << 12
}

/// Every row is used, and the table agrees with the blobs' chunk counts.
fn check_tables(bs: &Bootstrap) {
    let rows = bs.chunk_rows().unwrap();
    assert!(!rows.is_empty());
    let keys: HashSet<_> = rows.iter().map(|r| (r.blob_index, r.chunk_index)).collect();
    assert_eq!(keys.len(), rows.len());
    for b in bs.blobs() {
        assert_eq!(b.id.len(), 64);
        assert_eq!(b.chunk_size, bs.chunk_size());
    }
    // erofs_statfs: blocks = s_blocks + every device slot's blocks; files
    // unlimited, ffree = unlimited - s_inos (checked against a kernel mount
    // in native/test/rafs-reader.test.ts).
    let s = bs.statfs();
    assert_eq!((s.bsize, s.namelen, s.files), (4096, 255, u64::MAX));
    let device_blocks: u64 = bs.blobs().iter().map(|b| b.uncompressed_size / 4096).sum();
    assert_eq!(s.blocks, bs.sup.blocks as u64 + device_blocks);
    assert_eq!(s.ffree, u64::MAX - bs.inode_count());
    for nid in bs.prefetch_nids().unwrap() {
        bs.inode(nid).unwrap();
    }
}

/// Every path of the source, "/"-rooted, including "/" itself.
fn source_paths(src: &Path) -> Vec<Vec<u8>> {
    let mut out = vec![b"/".to_vec()];
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(src).unwrap().as_os_str().as_bytes();
            out.push([b"/".as_slice(), rel].concat());
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The walk visits exactly the source's paths, each once, parents first,
/// with the inode `path_to_nid` resolves; `validate` accepts the image.
fn check_walk(bs: &Bootstrap, src: &Path) {
    let mut visited = Vec::new();
    bs.walk(&mut |path, inode| {
        assert_eq!(bs.path_to_nid(path).unwrap(), Some(inode.nid), "{}", String::from_utf8_lossy(path));
        if let Some(cut) = path.iter().rposition(|&c| c == b'/').filter(|&c| c > 0) {
            assert!(
                visited.iter().any(|p: &Vec<u8>| p == &path[..cut]),
                "parent of {} not visited first",
                String::from_utf8_lossy(path)
            );
        }
        visited.push(path.to_vec());
        Ok(())
    })
    .unwrap();
    visited.sort();
    assert_eq!(visited, source_paths(src));
    bs.validate().unwrap();
    let json = dump::dump(bs).unwrap();
    assert_eq!(json.matches("\"path\":").count(), visited.len());
}

#[test]
fn dir_image_matches_source() {
    let scratch = Scratch::new("dir");
    let src = scratch.0.join("src");
    let xattrs = make_tree(&src);
    for (compressor, chunk) in [("zstd", "0x1000"), ("lz4_block", "0x10000"), ("none", "0x100000")] {
        let (boot, blobs) = build(&scratch.0, &src, false, compressor, chunk);
        let bs = Bootstrap::open(&boot).unwrap();
        assert_eq!(bs.chunk_size(), u32::from_str_radix(&chunk[2..], 16).unwrap());
        check_tables(&bs);
        check_against_source(&bs, &blobs, &src, true, xattrs);
        check_walk(&bs, &src);
        let owned = Bootstrap::from_bytes(fs::read(&boot).unwrap()).unwrap();
        assert_eq!(owned.root_nid(), bs.root_nid());
        assert!(owned.merkle_root().is_some());
        if compressor == "zstd" {
            assert_eq!(bs.blobs()[0].compressor, Compressor::Zstd);
        }
    }
}

/// A tar image keeps most inodes compact: their mtime is the build time.
#[test]
fn a_bootstrap_rewritten_or_truncated_while_open_changes_nothing() {
    // Issue 12 defect 10: a mapped bootstrap cut short under a live daemon was SIGBUS (every image
    // of the daemon gone); now the daemon's copy is its own.
    let scratch = Scratch::new("rewrite");
    let src = scratch.0.join("src");
    let xattrs = make_tree(&src);
    let (boot, blobs) = build(&scratch.0, &src, false, "zstd", "0x1000");
    let bs = Bootstrap::open(&boot).unwrap();
    fs::OpenOptions::new().write(true).open(&boot).unwrap().set_len(0).unwrap();
    check_walk(&bs, &src);
    fs::write(&boot, vec![0xa5u8; 8192]).unwrap();
    check_against_source(&bs, &blobs, &src, true, xattrs);
}

#[test]
fn tar_image_matches_source() {
    let scratch = Scratch::new("tar");
    let src = scratch.0.join("src");
    let xattrs = make_tree(&src);
    let (boot, blobs) = build(&scratch.0, &src, true, "zstd", "0x1000");
    let bs = Bootstrap::open(&boot).unwrap();
    check_tables(&bs);
    check_against_source(&bs, &blobs, &src, true, xattrs);
    check_walk(&bs, &src);
    // Most inodes are compact here, so the build-time path was exercised.
    let image = fs::read(&boot).unwrap();
    let compact = (0..bs.sup.inos * 8)
        .filter_map(|slot| bs.inode(bs.root_nid() + slot).ok())
        .filter(|i| image[(bs.sup.meta_addr + 32 * i.nid) as usize] & 1 == 0)
        .count();
    assert!(compact > 0, "only {compact} compact inodes");
    assert!(xattrs, "the scratch filesystem refused user xattrs");
}

/// Reads everything reachable, the way the daemon would. Must not panic.
/// `dump` repeats the reads of `validate` plus a JSON writer that cannot
/// fail, so it only runs when `with_dump` (to keep the sweep fast).

fn small_image(scratch: &Scratch) -> Vec<u8> {
    let src = scratch.0.join("src");
    make_tree(&src);
    let (boot, _) = build(&scratch.0, &src, true, "zstd", "0x1000");
    fs::read(boot).unwrap()
}

fn no_panic(bytes: Vec<u8>, what: &str) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let with_dump = N.fetch_add(1, Ordering::Relaxed).is_multiple_of(4);
    let r = std::panic::catch_unwind(move || walk_everything(bytes, with_dump));
    assert!(r.is_ok(), "panic on {what}");
}

#[test]
fn bit_flips_never_panic() {
    let scratch = Scratch::new("flip");
    let image = small_image(&scratch);
    assert!(walk_everything(image.clone(), true) > 400);
    // Quiet the default hook: a failure is reported by the assertion.
    let mut positions: Vec<usize> = (1024..1408 + 256).collect();
    let meta = 4096 * 2;
    positions.extend((4096..image.len()).step_by(image.len() / 6000 + 1));
    let mut errors = HashMap::new();
    for (n, &at) in positions.iter().enumerate() {
        let mut bytes = image.clone();
        bytes[at] ^= 1 << (n % 8);
        let ok = Bootstrap::from_bytes(bytes.clone()).is_ok();
        *errors.entry(ok).or_insert(0) += 1;
        no_panic(bytes, &format!("bit {} of byte {at}", n % 8));
    }
    // Whole bytes in the metadata area, set to hostile values.
    for at in (meta..image.len().min(meta + 8192)).step_by(13) {
        for v in [0x00, 0xff, 0x80] {
            let mut bytes = image.clone();
            bytes[at] = v;
            no_panic(bytes, &format!("byte {at} = {v:#x}"));
        }
    }
    assert!(errors.get(&false).copied().unwrap_or(0) > 0, "no flip was detected at all");
}

#[test]
fn truncation_and_garbage_never_panic() {
    let scratch = Scratch::new("trunc");
    let image = small_image(&scratch);
    for len in (0..image.len()).step_by(509).chain([0, 1, 1024, 1152, 4096, 8192, image.len() - 4096]) {
        no_panic(image[..len].to_vec(), &format!("truncation to {len}"));
    }
    // A truncated image that stays 4K-aligned passes the size check and
    // must then fail on whatever it lost.
    for blocks in 2..image.len() / 4096 {
        no_panic(image[..blocks * 4096].to_vec(), &format!("truncation to {blocks} blocks"));
    }
    for len in [0usize, 100, 1024, 4096, 8192, 65536] {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 131 % 251) as u8).collect();
        assert!(Bootstrap::from_bytes(bytes).is_err());
    }
    let missing = Bootstrap::open(Path::new("/nonexistent/bootstrap")).unwrap_err();
    assert!(missing.to_string().contains("/nonexistent/bootstrap"));
}

/// Targeted corruptions produce the documented errors.
#[test]
fn corrupt_fields_are_errors() {
    let scratch = Scratch::new("fields");
    let image = small_image(&scratch);
    let with = |at: usize, v: &[u8]| {
        let mut b = image.clone();
        b[at..at + v.len()].copy_from_slice(v);
        Bootstrap::from_bytes(b)
    };
    assert!(with(1024, &[0, 0, 0, 0]).unwrap_err().to_string().contains("magic"));
    assert!(with(1024 + 80, &[0x1c, 0, 0, 0]).unwrap_err().to_string().contains("incompatible"));
    assert!(with(1024 + 44, &[1, 0, 0, 0]).unwrap_err().to_string().contains("shared xattr"));
    assert!(with(1152 + 20, &[0, 0x30, 0, 0]).unwrap_err().to_string().contains("chunk size"));
    assert!(with(1024 + 14, &[0xff, 0xff]).is_err());
    // The root's i_format gets an unknown bit.
    let bs = Bootstrap::from_bytes(image.clone()).unwrap();
    let root_off =
        4096 * (u32::from_le_bytes(image[1064..1068].try_into().unwrap()) as usize) + 32 * bs.root_nid() as usize;
    assert!(with(root_off, &[0x31, 0]).unwrap_err().to_string().contains("i_format"));
    // A nid far past the end is an error, not a panic.
    assert!(bs.inode(u64::MAX).is_err());
    assert!(bs.inode(u64::MAX / 32).is_err());
    let root = bs.inode(bs.root_nid()).unwrap();
    assert!(bs.read_link(&root).is_err());
    assert_eq!(bs.chunk_count(&root), 0);
    assert!(bs.chunk(&root, 0).is_err());
    assert_eq!(bs.lookup(&root, b"").unwrap(), None);
    assert_eq!(bs.lookup(&root, &[b'z'; 300]).unwrap(), None);
}

/// Where the dirent for `name` in `dir`'s first block sits in the image.
fn dirent_offset(bs: &Bootstrap, dir: &Inode, name: &[u8]) -> usize {
    let base = match dir.layout {
        Layout::FlatInline if dir.size < 4096 => dir.data_offset,
        _ => dir.raw_u as u64 * 4096,
    } as usize;
    let nid = bs.lookup(dir, name).unwrap().unwrap();
    let mut k = 0;
    bs.read_dir(dir, 0, &mut |e| {
        if e.name == name {
            return false;
        }
        k += 1;
        true
    })
    .unwrap();
    let at = base + 12 * k;
    assert_eq!(bs.bytes.slice(at as u64, 8, "test").unwrap(), nid.to_le_bytes(), "dirent of {name:?} not found");
    at
}

/// Corruptions only a walk or a full listing can see, and the numeric
/// limits that keep every value exact in JavaScript.
#[test]
fn structural_corruption_is_reported() {
    let scratch = Scratch::new("struct");
    let image = small_image(&scratch);
    let bs = Bootstrap::from_bytes(image.clone()).unwrap();
    let root = bs.inode(bs.root_nid()).unwrap();
    let a = bs.lookup(&root, b"a").unwrap().unwrap();
    let patched = |at: usize, v: &[u8]| {
        let mut b = image.clone();
        b[at..at + v.len()].copy_from_slice(v);
        Bootstrap::from_bytes(b).unwrap()
    };

    // "/empty" now names the directory "/a": reached twice.
    let bad = patched(dirent_offset(&bs, &root, b"empty"), &a.to_le_bytes());
    let err = bad.walk(&mut |_, _| Ok(())).unwrap_err().to_string();
    assert!(err.contains("appears twice"), "{err}");
    assert!(bad.validate().is_err() && dump::dump(&bad).is_err());
    // A directory naming its root as a child is a loop.
    let dir_a = bs.inode(a).unwrap();
    let bad = patched(dirent_offset(&bs, &dir_a, b"b"), &bs.root_nid().to_le_bytes());
    assert!(bad.walk(&mut |_, _| Ok(())).unwrap_err().to_string().contains("appears twice"));

    // "." pointing elsewhere is refused when listed.
    let bad = patched(dirent_offset(&bs, &root, b"."), &a.to_le_bytes());
    let root2 = bad.inode(bad.root_nid()).unwrap();
    let err = bad.read_dir(&root2, 0, &mut |_| true).unwrap_err().to_string();
    assert!(err.contains("'.' points at"), "{err}");

    // A nid past the end of the image is refused in the dirent itself.
    let bad = patched(dirent_offset(&bs, &root, b"one"), &(1u64 << 40).to_le_bytes());
    let err = bad.lookup(&root2, b"one").unwrap_err().to_string();
    assert!(err.contains("lies outside the bootstrap"), "{err}");

    // u64 fields above 2^53 are refused (SPEC §6.2).
    let mut b = image.clone();
    b[1024 + 24..1024 + 32].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(Bootstrap::from_bytes(b).unwrap_err().to_string().contains("s_build_time is too large"));

    // The merkle table must have an entry for every inode it is asked for.
    let mut b = image.clone();
    let ino_at = (bs.sup.meta_addr + 32 * a + 20) as usize;
    b[ino_at..ino_at + 4].copy_from_slice(&0u32.to_le_bytes());
    let bad = Bootstrap::from_bytes(b).unwrap();
    assert!(bad.inode(a).unwrap_err().to_string().contains("no merkle table entry"));

    // An image that stores only the merkle root (offset and size 0, the
    // table cut off) reads the same, with no per-inode digests.
    let table_at = u64::from_le_bytes(image[1216..1224].try_into().unwrap()) as usize;
    let mut b = image[..table_at].to_vec();
    b[1216..1232].fill(0);
    let rootless = Bootstrap::from_bytes(b).unwrap();
    assert_eq!(rootless.merkle_root(), bs.merkle_root());
    let inode = rootless.inode(a).unwrap();
    assert_eq!(rootless.merkle_digest(&inode).unwrap(), None);

    // Opening something that is not a regular file fails instead of
    // blocking (a FIFO) or mapping garbage.
    let fifo = scratch.0.join("fifo");
    assert!(run("mkfifo", &[fifo.as_os_str()]));
    assert!(Bootstrap::open(&fifo).unwrap_err().to_string().contains("not a regular file"));
    assert!(Bootstrap::open(&scratch.0).is_err());
}

/// A deep chain of long names above a wide directory: the walk's memory is
/// linear in the entries (paths are links, built on demand), and every path
/// it reports is still the full one.
#[test]
fn deep_and_wide_trees_walk_in_linear_memory() {
    let scratch = Scratch::new("deep");
    let src = scratch.0.join("src");
    let name = "d".repeat(200);
    let mut deep = src.clone();
    // As deep as PATH_MAX lets the source be made (18 x 201 bytes below the scratch dir).
    for _ in 0..18 {
        deep.push(&name);
    }
    fs::create_dir_all(&deep).unwrap();
    for i in 0..300 {
        fs::write(deep.join(format!("f{i}")), b"x").unwrap();
    }
    let (boot, _) = build(&scratch.0, &src, false, "none", "0x100000");
    let bs = Bootstrap::open(&boot).unwrap();
    bs.validate().unwrap();
    let mut deepest = 0;
    let mut files = 0;
    bs.walk_nodes(&mut |paths, at, inode| {
        if inode.is_reg() {
            files += 1;
            let p = paths.path(at);
            deepest = deepest.max(p.len());
            assert_eq!(bs.path_to_nid(&p).unwrap(), Some(inode.nid));
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(files, 300);
    assert_eq!(deepest, 18 * 201 + "/f299".len());
}
