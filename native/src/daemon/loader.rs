//! Turns chunk references into cached, verified bytes.
//!
//! The one path every byte takes: a chunk missing from the cache is claimed
//! (so concurrent readers wait instead of fetching twice), fetched together
//! with neighbouring missing chunks in one ranged request (up to the amplify
//! size) when the [`Scheduler`] gives it a turn, decompressed from the buffer
//! the backend filled, checked against its digest and written to the blob's
//! cache file. The reader whose fetch it was is answered from the decoded
//! chunk ([`Fresh`]); readers that waited on it, from the cache file. The
//! persisted chunk map marks it once it is durable ([`super::syncer`]). A
//! chunk whose digest does not match is never written, so it can never be
//! served.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::fetch::{FetchFailure, Fetcher, Priority};
use super::inflight::{Claim, Inflight};
use super::readahead::Readahead;
use super::recent_errors::RecentErrors;
use super::scheduler::{Queue, Scheduler, SchedulerOptions};
use super::stats::Stats;
use super::syncer::Syncer;
use crate::bits::AtomicBits;
use crate::cache::claims::Claim as CacheClaim;
use crate::cache::BlobCache;
use crate::chunk::{decode_chunk, DecodeError, StoredChunk};
use crate::codec::Compressor;
use crate::digest::{self, Digester};

/// Where one chunk lives, in both address spaces of its blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLoc {
    pub blob: u32,
    /// Index in the blob's chunk-info array (and bit in its chunk map).
    pub ci: u32,
    pub compressed_offset: u64,
    pub compressed_size: u32,
    pub uncompressed_offset: u64,
    pub uncompressed_size: u32,
    pub compressed: bool,
    pub digest: [u8; 32],
}

impl ChunkLoc {
    fn key(&self) -> (u32, u32) {
        (self.blob, self.ci)
    }
    fn compressed_end(&self) -> u64 {
        self.compressed_offset + self.compressed_size as u64
    }
}

/// The largest hole a ranged request reads through and drops (chunks of other
/// images, or already cached): when small, one request beats two round trips.
fn run_gap(limit: u64) -> u64 {
    (limit / 8).max(4096)
}

/// Groups chunks sorted by blob and offset into runs that one ranged request
/// of at most `limit` bytes can fetch.
pub fn group_runs(chunks: Vec<ChunkLoc>, limit: u64) -> Vec<Vec<ChunkLoc>> {
    let gap = run_gap(limit);
    let mut runs: Vec<Vec<ChunkLoc>> = Vec::new();
    for c in chunks {
        if let Some(run) = runs.last_mut() {
            let (first, last) = (run[0], run[run.len() - 1]);
            if first.blob == c.blob
                && c.compressed_offset >= last.compressed_end()
                && c.compressed_offset - last.compressed_end() <= gap
                && c.compressed_end() - first.compressed_offset <= limit
            {
                run.push(c);
                continue;
            }
        }
        runs.push(vec![c]);
    }
    runs
}

/// Compressed bytes between two chunks of one file that still count as
/// contiguous (a chunk deduplicated into another layer leaves a hole).
const FILE_GAP: u64 = 4096;

/// What the loader needs to know about a blob.
#[derive(Debug, Clone)]
pub struct BlobSpec {
    pub id: String,
    pub compressor: Compressor,
    pub digester: Digester,
    pub chunk_count: u32,
    pub uncompressed_size: u64,
    /// Every chunk of this blob the image references, sorted by `ci`; used
    /// to widen a fetch to the chunks that follow the requested ones.
    pub chunks: Vec<ChunkLoc>,
}

#[derive(Debug)]
pub enum LoadError {
    Fetch {
        blob: String,
        message: String,
        kind: FetchFailure,
    },
    Integrity {
        blob: String,
        ci: u32,
        message: String,
    },
    Io {
        blob: String,
        message: String,
    },
    /// A chunk another reader was fetching could not be loaded.
    Waited,
}

impl LoadError {
    /// What the reader's read fails with.
    pub fn errno(&self) -> i32 {
        match self {
            LoadError::Fetch { kind, .. } => kind.errno(),
            _ => libc::EIO,
        }
    }
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Fetch { blob, message, .. } => write!(f, "fetching from blob {blob}: {message}"),
            LoadError::Integrity { blob, ci, message } => write!(f, "chunk {ci} of blob {blob}: {message}"),
            LoadError::Io { blob, message } => write!(f, "cache of blob {blob}: {message}"),
            LoadError::Waited => write!(f, "a concurrent fetch of the same chunk failed"),
        }
    }
}

struct BlobState {
    spec: BlobSpec,
    cache: Arc<BlobCache>,
    /// One bit per chunk: checked against its digest since this process
    /// started (only kept when `validate` is on).
    validated: AtomicBits,
    /// One bit per chunk: asked for by a reader since this process started.
    demanded: AtomicBits,
    readahead: Readahead,
}

pub struct LoaderOptions {
    /// The most an on-demand fetch is widened to (compressed bytes); the
    /// read-ahead window grows to it only along sequential streams.
    pub amplify_io: u64,
    /// Re-verify cached chunks on their first read by this process
    /// (fetched chunks are always verified).
    pub validate: bool,
    /// Keep the order in which readers first asked for each chunk (a
    /// workload's trace, for `nydusify optimize`).
    pub record_demand: bool,
    /// How far past a missed read the rest of the same file is fetched in
    /// the background (uncompressed bytes; 0: not at all). The caller turns
    /// it into the `ahead` chunks of [`ChunkLoader::ensure_ahead`].
    pub file_readahead: u64,
    /// How many fetches run at once, and prefetch's share and bandwidth.
    pub scheduler: SchedulerOptions,
}

/// The chunks a reader's own fetch just decoded and verified, among those it
/// asked for: its reply is copied from them rather than read back from the
/// cache file they were also written to.
#[derive(Default)]
pub struct Fresh(Vec<((u32, u32), Vec<u8>)>);

impl Fresh {
    pub fn get(&self, c: &ChunkLoc) -> Option<&[u8]> {
        self.0.iter().find(|(k, _)| *k == c.key()).map(|(_, plain)| plain.as_slice())
    }
}

pub struct ChunkLoader {
    blobs: Vec<BlobState>,
    inflight: Inflight,
    scheduler: Scheduler,
    fetcher: Arc<dyn Fetcher>,
    stats: Arc<Stats>,
    opts: LoaderOptions,
    errors: Arc<RecentErrors>,
    /// (blob, ci) in first-demand order, when `record_demand` is on.
    demand_log: Mutex<Vec<(u32, u32)>>,
    syncer: Syncer,
    /// Background fetches of files' next chunks in flight.
    ahead_inflight: AtomicUsize,
}

/// At most this many background file read-aheads run at once: each holds a
/// backend connection an on-demand read might want.
const MAX_AHEAD: usize = 2;

/// The most chunks a demand log keeps (1 TiB of 1 MiB chunks): a trace is a
/// hint, and a workload that reads more than this gains nothing from it.
const DEMAND_LOG_LEN: usize = 1 << 20;

impl ChunkLoader {
    pub fn new(
        work_dir: &Path,
        specs: Vec<BlobSpec>,
        fetcher: Arc<dyn Fetcher>,
        stats: Arc<Stats>,
        opts: LoaderOptions,
    ) -> std::io::Result<ChunkLoader> {
        let mut blobs = Vec::with_capacity(specs.len());
        let errors = Arc::new(RecentErrors::default());
        for spec in specs {
            let claims: Vec<CacheClaim> = spec
                .chunks
                .iter()
                .map(|c| CacheClaim {
                    ci: c.ci,
                    offset: c.uncompressed_offset,
                    size: c.uncompressed_size,
                    digest: c.digest,
                })
                .collect();
            let cache = BlobCache::open(work_dir, &spec.id, spec.uncompressed_size, spec.chunk_count, &claims)?;
            if let Some(why) = cache.private() {
                errors.push(format!("blob {}: cached privately, not shared with other images: {why}", spec.id));
            }
            let validated = AtomicBits::new(if opts.validate { spec.chunk_count } else { 0 });
            let demanded = AtomicBits::new(spec.chunk_count);
            blobs.push(BlobState {
                spec,
                cache: Arc::new(cache),
                validated,
                demanded,
                readahead: Readahead::default(),
            });
        }
        let syncer = Syncer::new(blobs.iter().map(|b| b.cache.clone()).collect(), stats.clone(), errors.clone());
        let scheduler = Scheduler::new(opts.scheduler);
        Ok(ChunkLoader {
            blobs,
            inflight: Inflight::default(),
            scheduler,
            fetcher,
            stats,
            opts,
            errors,
            demand_log: Mutex::default(),
            syncer,
            ahead_inflight: Default::default(),
        })
    }

    /// Fetches waiting for their turn, and in flight.
    pub fn queue(&self) -> Queue {
        self.scheduler.queue()
    }

    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }

    pub fn blob_spec(&self, blob: u32) -> Option<&BlobSpec> {
        self.blobs.get(blob as usize).map(|b| &b.spec)
    }

    /// The chunks of `blob` whose uncompressed bytes overlap [offset, offset + count):
    /// what a kernel read of the blob's cache file needs present.
    pub fn chunks_in(&self, blob: u32, offset: u64, count: u64) -> Vec<ChunkLoc> {
        let Some(spec) = self.blob_spec(blob) else { return Vec::new() };
        let end = offset.saturating_add(count.max(1));
        spec.chunks
            .iter()
            .filter(|c| c.uncompressed_offset < end && c.uncompressed_offset + c.uncompressed_size as u64 > offset)
            .copied()
            .collect()
    }

    pub fn cache_path(&self, blob: u32) -> Option<&Path> {
        self.blobs.get(blob as usize).map(|b| b.cache.data_path())
    }

    /// (ready chunks, total chunks) of one blob's cache.
    pub fn cache_state(&self, blob: u32) -> (u32, u32) {
        self.blobs.get(blob as usize).map_or((0, 0), |b| (b.cache.present_count(), b.spec.chunk_count))
    }

    pub fn is_ready(&self, c: &ChunkLoc) -> bool {
        self.blobs.get(c.blob as usize).is_some_and(|b| b.cache.is_present(c.ci))
    }

    /// Makes every chunk fetched so far durable and marked in the persisted
    /// maps, on the calling thread (at shutdown).
    pub fn flush(&self) {
        self.syncer.flush();
    }

    /// Drains the messages of errors seen since the last call.
    pub fn take_errors(&self) -> Vec<String> {
        self.errors.drain()
    }

    /// Keeps a message for the next [`take_errors`](Self::take_errors) (errors beside the loader's own).
    pub fn note_error(&self, message: String) {
        self.errors.push(message);
    }

    fn note(&self, err: &LoadError) {
        self.errors.push(err.to_string());
    }

    fn blob(&self, blob: u32) -> Result<&BlobState, LoadError> {
        self.blobs
            .get(blob as usize)
            .ok_or_else(|| LoadError::Io { blob: format!("#{blob}"), message: "no such blob in the image".into() })
    }

    /// Makes every chunk in `chunks` ready in the cache (fetching what is
    /// missing), for an on-demand read without read-ahead (the tests' reader:
    /// the daemon's readers go through `ensure_ahead`).
    #[cfg(test)]
    pub fn ensure(&self, chunks: &[ChunkLoc]) -> Result<Fresh, LoadError> {
        self.ensure_ahead(chunks, &Vec::new, &|_| false)
    }

    /// [`ensure`](Self::ensure), for a read of a file whose next chunks
    /// (`ahead`, in file order, asked for only on a miss) the same reader is
    /// likely to want soon. When the read has to go to the backend anyway,
    /// the chunks of `ahead` that follow it in the blob are claimed and
    /// handed to `background` (which returns whether it could start a thread
    /// for [`fetch_ahead`](Self::fetch_ahead)): they arrive over a second
    /// connection while this reader gets its own chunks, so the next pages
    /// of a binary that faults in no order are there or on their way. In one
    /// request with the reader's chunks they would delay the reader by their
    /// transfer; after it, by a round trip each.
    ///
    /// Returns the chunks of `chunks` this reader fetched itself, decoded.
    pub fn ensure_ahead(
        &self,
        chunks: &[ChunkLoc],
        ahead: &dyn Fn() -> Vec<ChunkLoc>,
        background: &dyn Fn(Vec<ChunkLoc>) -> bool,
    ) -> Result<Fresh, LoadError> {
        for (i, c) in chunks.iter().enumerate() {
            // A file may use one chunk twice: count it once.
            if chunks[..i].iter().any(|p| p.key() == c.key()) {
                continue;
            }
            self.note_demand(c);
            if self.is_ready(c) {
                Stats::add(&self.stats.cache_hits, 1);
            } else {
                Stats::add(&self.stats.cache_misses, 1);
            }
        }
        // A chunk someone else was fetching (a prefetch, another reader) whose
        // fetch failed is tried once more by this reader, at on-demand
        // priority, before its read fails: a prefetch's failure (fewer
        // retries, a stalled proxy) must not become an application's error.
        let mut fresh = Fresh::default();
        for _round in 0..2 {
            match self.ensure_once(chunks, ahead, background, &mut fresh) {
                Ok(()) => return Ok(fresh),
                // Our own fetch failed, with the backend's retries spent.
                Err(Some(e)) => return Err(e),
                Err(None) => {}
            }
        }
        Err(LoadError::Waited)
    }

    /// One pass of [`ensure`]: claims and fetches what is missing, waits for
    /// what others fetch. `Err(Some)`: a fetch of ours failed; `Err(None)`:
    /// only chunks others were fetching are still missing.
    fn ensure_once(
        &self,
        chunks: &[ChunkLoc],
        ahead: &dyn Fn() -> Vec<ChunkLoc>,
        background: &dyn Fn(Vec<ChunkLoc>) -> bool,
        fresh: &mut Fresh,
    ) -> Result<(), Option<LoadError>> {
        let mut owned: Vec<ChunkLoc> = Vec::new();
        let mut waits = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            // Claiming one chunk twice would wait on ourselves.
            if chunks[..i].iter().any(|p| p.key() == c.key()) || self.is_ready(c) {
                continue;
            }
            match self.inflight.claim(c.key()) {
                Claim::Owner if self.is_ready(c) => self.inflight.finish(c.key(), true),
                Claim::Owner => owned.push(*c),
                Claim::Wait(p) => waits.push(p),
            }
        }
        // Errors of chunks fetched only to widen a request must not fail
        // this read: what counts is whether the requested chunks are ready.
        let mut first_err = None;
        let _unwinding = self.inflight.unwind_guard(owned.iter().map(|c| c.key()).collect());
        if !owned.is_empty() {
            owned.sort_by_key(|c| (c.blob, c.compressed_offset));
            let mut runs = group_runs(owned, self.opts.amplify_io);
            for run in runs.iter_mut() {
                self.widen(run, self.opts.amplify_io, run_gap(self.opts.amplify_io));
            }
            if let Some(last) = runs.last() {
                self.start_file_ahead(last, ahead, background);
            }
            let mut keep = |c: &ChunkLoc, plain: Vec<u8>| {
                if chunks.iter().any(|r| r.key() == c.key()) {
                    fresh.0.push((c.key(), plain));
                }
            };
            for run in runs {
                if let Err(e) = self.load_run(&run, Priority::OnDemand, &mut keep) {
                    first_err.get_or_insert(e);
                }
            }
        }
        for p in waits {
            p.wait();
        }
        if chunks.iter().all(|c| self.is_ready(c)) {
            return Ok(());
        }
        Err(first_err)
    }

    /// Claims the file's chunks that follow `run` and hands them to
    /// `background`, unless read-ahead is off or MAX_AHEAD already run.
    fn start_file_ahead(
        &self,
        run: &[ChunkLoc],
        ahead: &dyn Fn() -> Vec<ChunkLoc>,
        background: &dyn Fn(Vec<ChunkLoc>) -> bool,
    ) {
        if self.opts.file_readahead == 0 {
            return;
        }
        if self.ahead_inflight.fetch_add(1, Ordering::SeqCst) >= MAX_AHEAD {
            self.ahead_inflight.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        let claimed = self.claim_file_ahead(run, &ahead());
        if !claimed.is_empty() && background(claimed.clone()) {
            Stats::add(&self.stats.readahead_requests, 1);
            Stats::add(&self.stats.readahead_chunks, claimed.len() as u64);
        } else {
            for c in &claimed {
                self.inflight.finish(c.key(), false);
            }
            self.ahead_inflight.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Claims the chunks of `ahead` (a file's next chunks) that follow `run`
    /// contiguously in its blob and are missing, for a background fetch.
    fn claim_file_ahead(&self, run: &[ChunkLoc], ahead: &[ChunkLoc]) -> Vec<ChunkLoc> {
        let last = run[run.len() - 1];
        let mut out = Vec::new();
        let Some(at) = ahead.iter().position(|c| c.blob == last.blob && c.compressed_offset >= last.compressed_end())
        else {
            return out;
        };
        let mut end = last.compressed_end();
        for c in &ahead[at..] {
            if c.blob != last.blob || c.compressed_offset < end || c.compressed_offset - end > FILE_GAP {
                break;
            }
            end = c.compressed_end();
            if self.is_ready(c) || !self.inflight.try_claim(c.key()) {
                if out.is_empty() {
                    continue;
                }
                break;
            }
            if self.is_ready(c) {
                self.inflight.finish(c.key(), true);
                break;
            }
            out.push(*c);
        }
        out
    }

    /// Fetches a run [`claim_file_ahead`](Self::claim_file_ahead) claimed (on
    /// another thread than the reader that claimed it).
    pub fn fetch_ahead(&self, run: &[ChunkLoc]) {
        // A failure (even a panic: load_run's guard releases the claims) is
        // the next reader's to retry; the count must come down regardless.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.load_run(run, Priority::OnDemand, &mut |_, _| {})
        }));
        self.ahead_inflight.fetch_sub(1, Ordering::SeqCst);
    }

    /// Counts `c` into the workload's demand the first time a reader asks for it.
    fn note_demand(&self, c: &ChunkLoc) {
        if self.blobs.get(c.blob as usize).is_some_and(|b| b.demanded.set(c.ci)) {
            Stats::add(&self.stats.demand_chunks, 1);
            Stats::add(&self.stats.demand_bytes, c.compressed_size as u64);
            if self.opts.record_demand {
                let mut log = self.demand_log.lock().unwrap_or_else(|e| e.into_inner());
                if log.len() < DEMAND_LOG_LEN {
                    log.push((c.blob, c.ci));
                }
            }
        }
    }

    /// The chunks readers asked for, as (blob id, chunk index), in the order
    /// of their first demand; empty unless `record_demand` is on.
    pub fn demand_log(&self) -> Vec<(String, u32)> {
        let log = self.demand_log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter().filter_map(|&(b, ci)| self.blob_spec(b).map(|s| (s.id.clone(), ci))).collect()
    }

    /// The chunk `ci` of the blob with id `blob_id`, if the image references it.
    pub fn find_chunk(&self, blob_id: &str, ci: u32) -> Option<ChunkLoc> {
        let b = self.blobs.iter().find(|b| b.spec.id == blob_id)?;
        let at = b.spec.chunks.binary_search_by_key(&ci, |c| c.ci).ok()?;
        Some(b.spec.chunks[at])
    }

    /// Fetches the missing chunks among `chunks` in requests of at most
    /// `merging_size`, at prefetch priority. Chunks someone else is already
    /// fetching are skipped. Returns the number of chunks loaded.
    pub fn prefetch(&self, chunks: &mut Vec<ChunkLoc>, merging_size: u64) -> Result<u64, LoadError> {
        chunks.sort_by_key(|c| (c.blob, c.compressed_offset));
        chunks.dedup_by_key(|c| c.key());
        let mut claimed = Vec::new();
        for c in chunks.iter() {
            if !self.is_ready(c) && self.inflight.try_claim(c.key()) {
                if self.is_ready(c) {
                    self.inflight.finish(c.key(), true);
                } else {
                    claimed.push(*c);
                }
            }
        }
        let mut loaded = 0;
        let mut result = Ok(0);
        for run in group_runs(claimed, merging_size) {
            match self.load_run(&run, Priority::Prefetch, &mut |_, _| {}) {
                Ok(()) => {
                    loaded += run.len() as u64;
                    Stats::add(&self.stats.prefetch_chunks, run.len() as u64);
                }
                Err(e) => result = Err(e),
            }
        }
        result.map(|_| loaded)
    }

    /// Extends an on-demand run over the following chunks of the blob that
    /// are missing and unclaimed, up to the read-ahead window.
    fn widen(&self, run: &mut Vec<ChunkLoc>, limit: u64, gap: u64) {
        let Ok(state) = self.blob(run[0].blob) else { return };
        let chunks = &state.spec.chunks;
        let last = run[run.len() - 1];
        let limit = state.readahead.window(run[0].compressed_offset, last.compressed_end(), limit);
        let start = chunks.partition_point(|c| c.ci <= last.ci);
        let first_offset = run[0].compressed_offset;
        let mut end = last.compressed_end();
        for c in &chunks[start..] {
            if c.compressed_offset < end || c.compressed_offset - end > gap || c.compressed_end() - first_offset > limit
            {
                break;
            }
            if state.cache.is_present(c.ci) {
                continue;
            }
            if !self.inflight.try_claim(c.key()) {
                break;
            }
            run.push(*c);
            end = c.compressed_end();
        }
        state.readahead.extend_to(end);
    }

    /// Fetches one contiguous run and settles every chunk in it: verified
    /// and written chunks are served at once, and handed to `keep` decoded.
    /// An on-demand reader does not wait for the fdatasync (the syncer does
    /// it); a prefetch, which nobody waits on, commits its own chunks before
    /// it reports them loaded.
    fn load_run(
        &self,
        run: &[ChunkLoc],
        priority: Priority,
        keep: &mut dyn FnMut(&ChunkLoc, Vec<u8>),
    ) -> Result<(), LoadError> {
        let _unwinding = self.inflight.unwind_guard(run.iter().map(|c| c.key()).collect());
        let outcome = self.fetch_and_store(run, priority);
        let state = self.blob(run[0].blob);
        let mut first_err = None;
        let mut written = 0;
        for (c, r) in run.iter().zip(outcome) {
            match r {
                Ok(plain) => {
                    if let Ok(state) = state {
                        state.cache.mark_written(c.ci);
                        // Just verified: a first read need not check it again.
                        state.validated.set(c.ci);
                        written += 1;
                    }
                    self.inflight.finish(c.key(), true);
                    keep(c, plain);
                }
                Err(e) => {
                    self.note(&e);
                    self.inflight.finish(c.key(), false);
                    first_err.get_or_insert(e);
                }
            }
        }
        if let (Ok(state), true) = (state, written > 0) {
            if priority == Priority::Prefetch {
                if let Err(e) = state.cache.commit() {
                    Stats::add(&self.stats.cache_write_errors, 1);
                    let err = LoadError::Io { blob: state.spec.id.clone(), message: format!("fdatasync: {e}") };
                    self.note(&err);
                    return Err(err);
                }
            } else {
                self.syncer.notify();
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// One outcome per chunk of `run`, in order: its decoded bytes, or why not.
    fn fetch_and_store(&self, run: &[ChunkLoc], priority: Priority) -> Vec<Result<Vec<u8>, LoadError>> {
        let state = match self.blob(run[0].blob) {
            Ok(s) => s,
            Err(e) => {
                return run.iter().map(|_| Err(LoadError::Io { blob: e.to_string(), message: String::new() })).collect()
            }
        };
        let blob_id = &state.spec.id;
        let start = run[0].compressed_offset;
        let len = run[run.len() - 1].compressed_end() - start;
        Stats::add(&self.stats.fetch_requests, 1);
        if priority == Priority::Prefetch {
            Stats::add(&self.stats.prefetch_requests, 1);
        }
        let fetched = {
            let _turn = self.scheduler.turn(priority, len);
            self.fetcher.fetch(blob_id, start, len, priority)
        };
        let fetched = match fetched {
            Ok(d) if (*d).as_ref().len() as u64 == len => d,
            failed => {
                let (message, kind) = match failed {
                    Ok(d) => {
                        let got = (*d).as_ref().len();
                        (format!("backend returned {got} bytes for a {len}-byte range at {start}"), FetchFailure::Transient)
                    }
                    Err(e) => (e.message, e.kind),
                };
                Stats::add(&self.stats.fetch_errors, 1);
                return run.iter().map(|_| Err(LoadError::Fetch { blob: blob_id.clone(), message: message.clone(), kind })).collect();
            }
        };
        Stats::add(&self.stats.fetch_bytes, len);
        if priority == Priority::Prefetch {
            Stats::add(&self.stats.prefetch_bytes, len);
        }
        let data: &[u8] = (*fetched).as_ref();
        run.iter()
            .map(|c| {
                let at = (c.compressed_offset - start) as usize;
                let stored = &data[at..at + c.compressed_size as usize];
                let plain = self.decode(state, c, stored)?;
                state.cache.write_at(&plain, c.uncompressed_offset).map_err(|e| {
                    Stats::add(&self.stats.cache_write_errors, 1);
                    LoadError::Io { blob: blob_id.clone(), message: format!("write: {e}") }
                })?;
                Ok(plain)
            })
            .collect()
    }

    /// Decompresses (when stored compressed) and verifies one chunk.
    fn decode(&self, state: &BlobState, c: &ChunkLoc, stored: &[u8]) -> Result<Vec<u8>, LoadError> {
        let spec = StoredChunk {
            compressor: state.spec.compressor,
            digester: state.spec.digester,
            compressed: c.compressed,
            uncompressed_size: c.uncompressed_size as usize,
            digest: &c.digest,
        };
        decode_chunk(stored, &spec).map_err(|e| {
            match e {
                DecodeError::Decompress(_) => Stats::add(&self.stats.decompress_errors, 1),
                DecodeError::Digest => Stats::add(&self.stats.digest_errors, 1),
                DecodeError::Short { .. } => {}
            }
            LoadError::Integrity { blob: state.spec.id.clone(), ci: c.ci, message: e.to_string() }
        })
    }

    /// Appends `len` bytes of ready chunk `c`, starting `offset` bytes into it.
    pub fn read(&self, c: &ChunkLoc, offset: u32, len: u32, out: &mut Vec<u8>) -> Result<(), LoadError> {
        let state = self.blob(c.blob)?;
        if self.opts.validate {
            self.validate_cached(state, c)?;
        }
        let at = out.len();
        out.resize(at + len as usize, 0);
        state.cache.read_at(&mut out[at..], c.uncompressed_offset + offset as u64).map_err(|e| {
            out.truncate(at);
            LoadError::Io { blob: state.spec.id.clone(), message: format!("read: {e}") }
        })
    }

    /// The first read of a cached chunk in this process checks it against its
    /// digest, so a cache file altered on disk is caught too.
    fn validate_cached(&self, state: &BlobState, c: &ChunkLoc) -> Result<(), LoadError> {
        if !state.validated.covers(c.ci) || state.validated.get(c.ci) {
            return Ok(());
        }
        let mut plain = vec![0u8; c.uncompressed_size as usize];
        state
            .cache
            .read_at(&mut plain, c.uncompressed_offset)
            .map_err(|e| LoadError::Io { blob: state.spec.id.clone(), message: format!("read: {e}") })?;
        if digest::digest(state.spec.digester, &plain) != c.digest {
            Stats::add(&self.stats.digest_errors, 1);
            let err = LoadError::Integrity {
                blob: state.spec.id.clone(),
                ci: c.ci,
                message: "cached chunk does not match its digest (cache file altered?)".into(),
            };
            self.note(&err);
            return Err(err);
        }
        state.validated.set(c.ci);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::fetch::{FetchError, Fetched};
    use std::sync::atomic::Ordering;
    use std::sync::mpsc::{channel, Receiver, Sender};
    use std::time::{Duration, Instant};

    const CHUNK: u32 = 4096;

    /// No widening, no validation or demand log; nydusd's default scheduling.
    fn test_options(file_readahead: u64) -> LoaderOptions {
        let scheduler = SchedulerOptions { concurrency: 4, reserved_for_on_demand: 2, prefetch_bandwidth: 0 };
        LoaderOptions { amplify_io: 0, validate: false, record_demand: false, file_readahead, scheduler }
    }

    /// Serves a blob from memory; a prefetch fetch blocks until released and then fails.
    struct GatedFetcher {
        data: Vec<u8>,
        prefetch_started: Mutex<Sender<()>>,
        release_prefetch: Mutex<Receiver<()>>,
    }

    impl Fetcher for GatedFetcher {
        fn fetch(&self, _blob_id: &str, offset: u64, len: u64, priority: Priority) -> Result<Fetched, FetchError> {
            if priority == Priority::Prefetch {
                let _ = self.prefetch_started.lock().unwrap().send(());
                let _ = self.release_prefetch.lock().unwrap().recv();
                return Err("injected prefetch failure".into());
            }
            Ok(Box::new(self.data[offset as usize..(offset + len) as usize].to_vec()))
        }
    }

    fn chunk(ci: u32, data: &[u8]) -> ChunkLoc {
        let at = (ci * CHUNK) as u64;
        ChunkLoc {
            blob: 0,
            ci,
            compressed_offset: at,
            compressed_size: CHUNK,
            uncompressed_offset: at,
            uncompressed_size: CHUNK,
            compressed: false,
            digest: digest::digest(Digester::Blake3, &data[at as usize..at as usize + CHUNK as usize]),
        }
    }

    /// An uncompressed blob of `chunks` (laid out by [`chunk`]), its id `id` repeated.
    fn plain_spec(id: &str, chunks: &[ChunkLoc]) -> BlobSpec {
        BlobSpec {
            id: id.repeat(32),
            compressor: Compressor::None,
            digester: Digester::Blake3,
            chunk_count: chunks.len() as u32,
            uncompressed_size: chunks.len() as u64 * CHUNK as u64,
            chunks: chunks.to_vec(),
        }
    }

    #[test]
    fn a_failed_prefetch_of_a_chunk_does_not_fail_the_reader_waiting_for_it() {
        let work = std::env::temp_dir().join(format!("nydus-loader-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        let data: Vec<u8> = (0..2 * CHUNK).map(|i| if i < CHUNK { b'a' } else { b'b' }).collect();
        let chunks = vec![chunk(0, &data), chunk(1, &data)];
        let (started_tx, started_rx) = channel();
        let (release_tx, release_rx) = channel();
        let fetcher = Arc::new(GatedFetcher {
            data: data.clone(),
            prefetch_started: Mutex::new(started_tx),
            release_prefetch: Mutex::new(release_rx),
        });
        let spec = plain_spec("ab", &chunks);
        let opts = test_options(0);
        let loader = Arc::new(ChunkLoader::new(&work, vec![spec], fetcher, Arc::new(Stats::default()), opts).unwrap());

        // A prefetch claims chunk 0 and hangs in its fetch.
        let prefetching = {
            let (loader, c) = (loader.clone(), chunks[0]);
            std::thread::spawn(move || loader.prefetch(&mut vec![c], 1 << 20))
        };
        started_rx.recv().unwrap();
        // A reader of chunk 0 waits for that prefetch ...
        let reading = {
            let (loader, c) = (loader.clone(), chunks[0]);
            std::thread::spawn(move || loader.ensure(&[c]))
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while loader.inflight.waiters(chunks[0].key()) == 0 {
            assert!(Instant::now() < deadline, "the reader never waited for the prefetch");
            std::thread::yield_now();
        }
        // ... which then fails: the reader fetches the chunk itself and succeeds.
        release_tx.send(()).unwrap();
        assert!(prefetching.join().unwrap().is_err());
        reading.join().unwrap().expect("the reader's read must not fail because a prefetch did");
        let mut out = Vec::new();
        loader.read(&chunks[0], 0, CHUNK, &mut out).unwrap();
        assert!(out.iter().all(|&b| b == b'a'));
        let _ = std::fs::remove_dir_all(&work);
    }

    /// Panics on its first fetch, then serves.
    struct PanicOnce {
        data: Vec<u8>,
        panicked: std::sync::atomic::AtomicBool,
    }

    impl Fetcher for PanicOnce {
        fn fetch(&self, _blob_id: &str, offset: u64, len: u64, _priority: Priority) -> Result<Fetched, FetchError> {
            if !self.panicked.swap(true, Ordering::SeqCst) {
                panic!("injected panic in a fetch");
            }
            Ok(Box::new(self.data[offset as usize..(offset + len) as usize].to_vec()))
        }
    }

    #[test]
    fn a_panic_during_a_fetch_releases_its_claims() {
        let work = std::env::temp_dir().join(format!("nydus-loader-panic-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        let data: Vec<u8> = vec![b'z'; CHUNK as usize];
        let c = chunk(0, &data);
        let spec = plain_spec("cd", &[c]);
        let fetcher = Arc::new(PanicOnce { data, panicked: Default::default() });
        let opts = test_options(0);
        let loader = Arc::new(ChunkLoader::new(&work, vec![spec], fetcher, Arc::new(Stats::default()), opts).unwrap());
        assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| loader.ensure(&[c]))).is_err());
        // The next reader must not wait for the dead claim: it fetches, within a bound.
        let (tx, rx) = channel();
        let l = loader.clone();
        std::thread::spawn(move || tx.send(l.ensure(&[c]).is_ok()).unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(true), "a reader hung on a claim left by a panic");
        let _ = std::fs::remove_dir_all(&work);
    }

    /// Serves a blob from memory and records every range asked for.
    struct RecordingFetcher {
        data: Vec<u8>,
        ranges: Mutex<Vec<(u64, u64)>>,
    }

    impl Fetcher for RecordingFetcher {
        fn fetch(&self, _blob_id: &str, offset: u64, len: u64, _priority: Priority) -> Result<Fetched, FetchError> {
            self.ranges.lock().unwrap().push((offset, len));
            Ok(Box::new(self.data[offset as usize..(offset + len) as usize].to_vec()))
        }
    }

    /// A blob of 16 chunks; a loader with `file_readahead` and no amplify_io.
    fn recording_loader(
        name: &str,
        file_readahead: u64,
    ) -> (Arc<ChunkLoader>, Arc<RecordingFetcher>, Vec<ChunkLoc>, std::path::PathBuf) {
        let work = std::env::temp_dir().join(format!("nydus-loader-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        let data: Vec<u8> = (0..16 * CHUNK).map(|i| (i / CHUNK) as u8).collect();
        let chunks: Vec<ChunkLoc> = (0..16).map(|ci| chunk(ci, &data)).collect();
        let spec = plain_spec("ef", &chunks);
        let fetcher = Arc::new(RecordingFetcher { data, ranges: Mutex::default() });
        let opts = test_options(file_readahead);
        let loader =
            Arc::new(ChunkLoader::new(&work, vec![spec], fetcher.clone(), Arc::new(Stats::default()), opts).unwrap());
        (loader, fetcher, chunks, work)
    }

    #[test]
    fn a_reader_gets_the_chunks_it_asked_for_decoded_from_its_own_fetch() {
        let (loader, fetcher, chunks, work) = recording_loader("fresh", 0);
        let loader = Arc::into_inner(loader).unwrap();
        let loader = ChunkLoader { opts: LoaderOptions { amplify_io: 4 * CHUNK as u64, ..loader.opts }, ..loader };
        let fresh = loader.ensure(&chunks[2..4]).unwrap();
        // One request, widened past what was asked for...
        assert_eq!(*fetcher.ranges.lock().unwrap(), vec![(2 * CHUNK as u64, 4 * CHUNK as u64)]);
        assert!(chunks[2..6].iter().all(|c| loader.is_ready(c)));
        // ...whose asked-for chunks come back decoded; the widened ones only went to the cache.
        assert_eq!(fresh.get(&chunks[2]), Some(&[2u8; CHUNK as usize][..]));
        assert_eq!(fresh.get(&chunks[3]), Some(&[3u8; CHUNK as usize][..]));
        assert_eq!(fresh.get(&chunks[4]), None);
        // A reader of a cached chunk fetched nothing itself: it reads the cache.
        assert_eq!(loader.ensure(&chunks[4..5]).unwrap().get(&chunks[4]), None);
        let _ = std::fs::remove_dir_all(&work);
    }

    /// Runs a background read-ahead at once, on the caller's thread.
    fn run_now(loader: &Arc<ChunkLoader>) -> impl Fn(Vec<ChunkLoc>) -> bool + '_ {
        move |run| {
            loader.fetch_ahead(&run);
            true
        }
    }

    #[test]
    fn a_miss_starts_a_read_ahead_of_the_rest_of_its_file_and_no_further() {
        let (loader, fetcher, chunks, work) = recording_loader("file-ahead", 1 << 20);
        // A file of chunks 2..=6 read at chunk 3: the reader fetches 3; 4..=6 (not 7: another
        // file) go in a second request, started before the reader's own.
        loader.ensure_ahead(&chunks[3..4], &|| chunks[4..=6].to_vec(), &run_now(&loader)).unwrap();
        let c = CHUNK as u64;
        assert_eq!(*fetcher.ranges.lock().unwrap(), vec![(4 * c, 3 * c), (3 * c, c)]);
        assert!(chunks[3..=6].iter().all(|c| loader.is_ready(c)) && !loader.is_ready(&chunks[7]));
        // The next read of the file is served from the cache.
        loader.ensure_ahead(&chunks[5..6], &|| chunks[6..=6].to_vec(), &run_now(&loader)).unwrap();
        assert_eq!(fetcher.ranges.lock().unwrap().len(), 2);
        assert_eq!(loader.ahead_inflight.load(Ordering::SeqCst), 0);
        assert_eq!(
            (
                loader.stats.readahead_requests.load(Ordering::SeqCst),
                loader.stats.readahead_chunks.load(Ordering::SeqCst)
            ),
            (1, 3)
        );
        let _ = std::fs::remove_dir_all(&work);
    }

    #[test]
    fn read_ahead_stops_at_a_chunk_stored_elsewhere_is_off_at_zero_and_releases_what_it_cannot_start() {
        let c = CHUNK as u64;
        let (loader, fetcher, chunks, work) = recording_loader("file-gap", 1 << 20);
        // The file's next chunks are 9 and 10: not contiguous with 3, so not read ahead.
        loader.ensure_ahead(&chunks[3..4], &|| vec![chunks[9], chunks[10]], &run_now(&loader)).unwrap();
        assert_eq!(*fetcher.ranges.lock().unwrap(), vec![(3 * c, c)]);
        // No thread for the read-ahead: its claims are released, the next reader fetches.
        loader.ensure_ahead(&chunks[11..12], &|| chunks[12..=13].to_vec(), &|_| false).unwrap();
        loader.ensure(&chunks[12..13]).unwrap();
        assert_eq!(fetcher.ranges.lock().unwrap()[1..], [(11 * c, c), (12 * c, c)]);
        assert_eq!(loader.ahead_inflight.load(Ordering::SeqCst), 0);
        let _ = std::fs::remove_dir_all(&work);

        let (loader, fetcher, chunks, work) = recording_loader("file-off", 0);
        loader.ensure_ahead(&chunks[3..4], &|| chunks[4..=6].to_vec(), &run_now(&loader)).unwrap();
        assert_eq!(*fetcher.ranges.lock().unwrap(), vec![(3 * c, c)]);
        let _ = std::fs::remove_dir_all(&work);
    }
}
