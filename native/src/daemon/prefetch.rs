//! Background prefetch: warms the cache with the chunks of chosen files (or
//! the whole image) on dedicated threads, so on-demand reads find them.
//!
//! Work is cut into batches of one ranged request each (up to `merging_size`
//! compressed bytes), taken by `threads` workers from one queue. Prefetch never blocks on-demand
//! reads: it skips chunks someone is already fetching, and the backend
//! serves on-demand requests first.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::instance::{blob_specs, Instance};
use super::loader::{group_runs, ChunkLoc};
use crate::rafs::{Bootstrap, RafsError};

/// What to prefetch.
pub enum Target {
    /// Every chunk of every blob.
    All,
    /// The files (directories recursively) at these paths.
    Paths(Vec<String>),
    /// The image's own prefetch table; a table holding only the root means
    /// everything, as in Nydus. With `or_all`, an empty table means
    /// everything too (`prefetch_all`).
    Table { or_all: bool },
    /// These chunks, as (blob id, chunk index): a workload's trace kept
    /// beside the bootstrap (`prefetch.chunks`). Chunks the image does not
    /// reference are skipped, so a hint can never widen what is fetched.
    Chunks(Vec<(String, u32)>),
}

/// Parses a chunk trace: one `BLOB_ID CHUNK_INDEX` per line.
pub fn parse_chunk_trace(text: &str) -> Result<Vec<(String, u32)>, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, l)| {
            let mut f = l.split_ascii_whitespace();
            match (f.next(), f.next().map(str::parse::<u32>), f.next()) {
                (Some(id), Some(Ok(ci)), None) => Ok((id.to_string(), ci)),
                _ => Err(format!("chunk trace line {}: expected 'BLOB_ID CHUNK_INDEX', got {l:?}", i + 1)),
            }
        })
        .collect()
}

impl Target {
    /// A target by its API name (`all`, `table`, `table-or-all`, `paths`,
    /// `chunks`); `text` holds the newline-separated paths, or the chunk trace.
    pub fn parse(mode: &str, text: &str) -> Result<Target, String> {
        Ok(match mode {
            "all" => Target::All,
            "table" => Target::Table { or_all: false },
            "table-or-all" => Target::Table { or_all: true },
            "paths" => Target::Paths(text.lines().filter(|l| !l.is_empty()).map(String::from).collect()),
            "chunks" => Target::Chunks(parse_chunk_trace(text)?),
            other => return Err(format!("unknown prefetch mode {other:?}")),
        })
    }
}

/// Resolves `target` to the chunks it covers, in blob order.
pub fn plan(instance: &Instance, target: &Target) -> Result<Vec<ChunkLoc>, String> {
    plan_with(&instance.bootstrap, target, &|| instance.all_chunks(), &|id, ci| instance.loader.find_chunk(id, ci))
}

/// The same plan from a bootstrap alone, before any daemon mounts it: what
/// `nydusify` announces in the manifest so the blob ranges can be fetched
/// while the bootstrap itself is still being pulled.
pub fn plan_bootstrap(bootstrap: &Bootstrap, target: &Target) -> Result<Vec<ChunkLoc>, String> {
    let specs = blob_specs(bootstrap)?;
    let all = || specs.iter().flat_map(|s| s.chunks.iter().copied()).collect();
    let find = |id: &str, ci: u32| {
        let s = specs.iter().find(|s| s.id == id)?;
        s.chunks.binary_search_by_key(&ci, |c| c.ci).ok().map(|at| s.chunks[at])
    };
    plan_with(bootstrap, target, &all, &find)
}

fn plan_with(
    bootstrap: &Bootstrap,
    target: &Target,
    all: &dyn Fn() -> Vec<ChunkLoc>,
    find: &dyn Fn(&str, u32) -> Option<ChunkLoc>,
) -> Result<Vec<ChunkLoc>, String> {
    let root = bootstrap.root_nid();
    let nids = match target {
        Target::All => return Ok(all()),
        Target::Chunks(list) => {
            let mut chunks: Vec<ChunkLoc> = list.iter().filter_map(|(id, ci)| find(id, *ci)).collect();
            chunks.sort_by_key(|c| (c.blob, c.compressed_offset));
            chunks.dedup_by_key(|c| (c.blob, c.ci));
            return Ok(chunks);
        }
        Target::Table { or_all } => {
            let nids = bootstrap.prefetch_nids().map_err(|e| e.to_string())?;
            if (nids.len() == 1 && nids[0] == root) || (nids.is_empty() && *or_all) {
                return Ok(all());
            }
            nids
        }
        Target::Paths(paths) => {
            if paths.len() == 1 && paths[0] == "/" {
                return Ok(all());
            }
            let mut nids = Vec::new();
            for p in paths {
                // A missing path is skipped, as Nydus does: prefetch lists are hints.
                if let Ok(Some(nid)) = bootstrap.path_to_nid(p.as_bytes()) {
                    nids.push(nid);
                }
            }
            nids
        }
    };
    let mut chunks = files_chunks(bootstrap, &nids).map_err(|e| format!("prefetch walk: {e}"))?;
    chunks.sort_by_key(|c| (c.blob, c.compressed_offset));
    chunks.dedup_by_key(|c| (c.blob, c.ci));
    Ok(chunks)
}

/// Every chunk of the files at `nids`, directories recursively.
fn files_chunks(bootstrap: &Bootstrap, nids: &[u64]) -> Result<Vec<ChunkLoc>, RafsError> {
    let mut out = Vec::new();
    let mut stack: Vec<u64> = nids.to_vec();
    let mut seen = std::collections::HashSet::new();
    while let Some(nid) = stack.pop() {
        if !seen.insert(nid) {
            continue;
        }
        let inode = bootstrap.inode(nid)?;
        if inode.is_dir() {
            let mut children = Vec::new();
            bootstrap.read_dir(&inode, 0, &mut |e| {
                if e.name != b"." && e.name != b".." {
                    children.push(e.nid);
                }
                true
            })?;
            stack.extend(children);
        } else if inode.is_reg() {
            for i in 0..bootstrap.chunk_count(&inode) {
                out.push(ChunkLoc::from(&bootstrap.chunk(&inode, i)?));
            }
        }
    }
    Ok(out)
}

/// Outcome of one prefetch run.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub planned: u64,
    pub loaded: u64,
    pub errors: Vec<String>,
}

/// Runs prefetch of `chunks` on `threads` threads; `done` is called once, on
/// the last thread to finish.
pub fn spawn(
    instance: Arc<Instance>,
    chunks: Vec<ChunkLoc>,
    threads: usize,
    merging_size: u64,
    done: impl FnOnce(Report) + Send + 'static,
) {
    let planned = chunks.len() as u64;
    let queue: VecDeque<Vec<ChunkLoc>> = batches(chunks, merging_size).into();
    let shared = Arc::new(Shared {
        queue: Mutex::new(queue),
        report: Mutex::new(Report { planned, ..Default::default() }),
        done: Mutex::new(Some(Box::new(done))),
        running: Mutex::new(threads.max(1)),
    });
    for i in 0..threads.max(1) {
        let (mine, instance) = (shared.clone(), instance.clone());
        let spawned = std::thread::Builder::new().name(format!("nydus-prefetch-{i}")).spawn(move || {
            // A panic in a batch (a bug, never an input) must still end this worker, or the
            // run's `done` never fires and the prefetch reads as running forever.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker(&mine, &instance, merging_size)));
            if outcome.is_err() {
                mine.report.lock().unwrap_or_else(|e| e.into_inner()).errors.push("a prefetch worker panicked".into());
                finish_one(&mine);
            }
        });
        if spawned.is_err() {
            // Could not start this worker: count it as finished.
            finish_one(&shared);
        }
    }
}

type Done = Box<dyn FnOnce(Report) + Send>;

struct Shared {
    queue: Mutex<VecDeque<Vec<ChunkLoc>>>,
    report: Mutex<Report>,
    done: Mutex<Option<Done>>,
    running: Mutex<usize>,
}

fn worker(shared: &Shared, instance: &Instance, merging_size: u64) {
    loop {
        let batch = shared.queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
        let Some(mut batch) = batch else { break };
        let outcome = instance.loader.prefetch(&mut batch, merging_size);
        let mut report = shared.report.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Ok(n) => report.loaded += n,
            Err(e) if report.errors.len() < 16 => report.errors.push(e.to_string()),
            Err(_) => {}
        }
    }
    finish_one(shared);
}

fn finish_one(shared: &Shared) {
    let mut running = shared.running.lock().unwrap_or_else(|e| e.into_inner());
    *running -= 1;
    if *running == 0 {
        let done = shared.done.lock().unwrap_or_else(|e| e.into_inner()).take();
        let report = shared.report.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(done) = done {
            done(report);
        }
    }
}

/// The first batch's size limit; each next batch may be twice the previous,
/// up to `merging_size`.
const FIRST_BATCH: u64 = 256 * 1024;

/// Cuts blob-ordered chunks into batches that are one ranged request each, so
/// the workers fetch scattered files in parallel rather than one worker
/// fetching them one request after another. Sizes ramp up from FIRST_BATCH to
/// `size`: a contiguous region (an optimized image's hot blob, in the order the
/// workload reads it) arrives head first in parallel requests, instead of as
/// one large response whose first bytes wait for its last.
fn batches(chunks: Vec<ChunkLoc>, size: u64) -> Vec<Vec<ChunkLoc>> {
    let size = size.max(1);
    let mut limit = FIRST_BATCH.min(size);
    let mut out = Vec::new();
    for run in group_runs(chunks, size) {
        let mut rest = run.as_slice();
        while !rest.is_empty() {
            let base = rest[0].compressed_offset;
            let mut take = 1;
            while take < rest.len() && rest[take].compressed_offset + rest[take].compressed_size as u64 - base <= limit {
                take += 1;
            }
            out.push(rest[..take].to_vec());
            rest = &rest[take..];
            limit = (limit * 2).min(size);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{batches, parse_chunk_trace};
    use crate::daemon::loader::ChunkLoc;

    fn chunk(blob: u32, ci: u32, offset: u64, size: u32) -> ChunkLoc {
        ChunkLoc {
            blob,
            ci,
            compressed_offset: offset,
            compressed_size: size,
            uncompressed_offset: 0,
            uncompressed_size: size,
            compressed: true,
            digest: [0; 32],
        }
    }

    #[test]
    fn batches_are_one_request_each_so_workers_fetch_scattered_files_in_parallel() {
        let mib = 1 << 20;
        // Three small scattered files of blob 0 (well under merging_size together), a neighbour
        // pair, and a chunk of another blob: five chunks, four requests, four batches.
        let plan = vec![
            chunk(0, 0, 0, 1000),
            chunk(0, 1, 1000, 2000),
            chunk(0, 7, 5 * mib, 16_000),
            chunk(0, 9, 13 * mib, 100_000),
            chunk(1, 0, 0, 500_000),
        ];
        let b = batches(plan, mib);
        let sizes: Vec<usize> = b.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![2, 1, 1, 1]);
        // A long run is cut into batches that start small and double up to merging_size.
        let long: Vec<ChunkLoc> = (0..8).map(|i| chunk(0, i, i as u64 * 200_000, 200_000)).collect();
        assert_eq!(batches(long, mib).iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 2, 2, 3]);
    }

    #[test]
    fn chunk_traces_parse_and_bad_lines_are_named() {
        let t = parse_chunk_trace("abc 3\n\n  def 0  \nabc 7\n").unwrap();
        assert_eq!(t, vec![("abc".to_string(), 3), ("def".to_string(), 0), ("abc".to_string(), 7)]);
        for bad in ["abc", "abc x", "abc 1 2", "abc -1"] {
            let e = parse_chunk_trace(&format!("ok 1\n{bad}\n")).unwrap_err();
            assert!(e.contains("line 2"), "{e}");
        }
    }
}
