//! How far an on-demand fetch reaches past what the reader asked for.
//!
//! A fixed widening (Nydus's `amplify_io`, 1 MiB by default) fetches the
//! same amount for a stray 4 KiB read of a small file as for a stream through
//! a large one; on a slow link the stray read then pays for a megabyte nobody
//! reads. Here each blob keeps its own window: a miss that starts where the
//! previous on-demand fetch of the blob ended continues a sequential stream
//! (a big file read in order, or the files of one directory, which sit
//! together in the blob) and doubles the window, up to `amplify_io`; any
//! other miss starts again from [`FIRST_WINDOW`].
//!
//! The file read-ahead (`file_readahead`, fetched in the background beside a
//! miss) grows the same way per file, in [`FileStreams`]: a reader streaming a
//! large file (a model's tensors, read in order) would otherwise stall at the
//! end of every window, the link idle for a round trip each time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The window of a miss that continues no stream. The bandwidth-delay
/// product of a 100 Mbit/s link with 20 ms of round trip (250 KB) looks like
/// the right size, but a connection that sat idle is back in TCP slow start,
/// where every doubling costs a round trip: on bench/coldstart (that link),
/// 64 KiB fetched 15-20% fewer bytes before ready than 256 KiB in the same
/// time or less. A file read on is covered by the file read-ahead instead.
pub const FIRST_WINDOW: u64 = 64 << 10;

/// Compressed bytes a "continuing" miss may start past the previous fetch's
/// end: chunks stored by another layer, or already cached, can sit between.
const STREAM_GAP: u64 = 64 << 10;

#[derive(Default)]
pub struct Readahead {
    /// Compressed offset where the blob's last on-demand fetch ended.
    next: AtomicU64,
    window: AtomicU64,
}

impl Readahead {
    /// The window for an on-demand fetch starting at `start`, and notes that
    /// the fetch will end at `end`. `max` is the configured `amplify_io`
    /// (0: never widen). Races between concurrent misses only make the
    /// guess less precise; no fetch depends on it being exact.
    pub fn window(&self, start: u64, end: u64, max: u64) -> u64 {
        let next = self.next.swap(end, Ordering::Relaxed);
        let continues = start >= next && start - next <= STREAM_GAP && next != 0;
        let w = if continues { (self.window.load(Ordering::Relaxed) * 2).max(FIRST_WINDOW) } else { FIRST_WINDOW };
        let w = w.min(max);
        self.window.store(w, Ordering::Relaxed);
        w
    }

    /// Moves the stream's end past chunks a widened fetch took as well.
    pub fn extend_to(&self, end: u64) {
        self.next.fetch_max(end, Ordering::Relaxed);
    }
}

/// How many times the configured file read-ahead a stream may grow to.
const FILE_GROWTH: u64 = 8;
/// Files whose stream state is kept; past it the table starts afresh.
const MAX_STREAMS: usize = 4096;

/// Where the last file read-ahead of a file ended, and how large it was.
#[derive(Clone, Copy)]
struct Stream {
    miss_end: u64,
    ahead_end: u64,
    window: u64,
}

/// Per-file sequential streams for the file read-ahead.
pub struct FileStreams {
    base: u64,
    slack: u64,
    streams: Mutex<HashMap<u64, Stream>>,
}

impl FileStreams {
    /// `base`: the configured `file_readahead` (0: none); `slack`: how far
    /// past a read-ahead's end a miss still continues it (one chunk: the
    /// read-ahead covers whole chunks).
    pub fn new(base: u64, slack: u64) -> Self {
        FileStreams { base, slack, streams: Mutex::new(HashMap::new()) }
    }

    pub fn enabled(&self) -> bool {
        self.base > 0
    }

    /// The read-ahead for a miss at `[start, end)` of file `nid`: doubled
    /// (up to FILE_GROWTH times the base) when the miss lies past the file's
    /// previous miss and within reach of where its read-ahead ended; kept when
    /// it lies a little behind (the kernel's own read-ahead sends reads of one
    /// stream from several threads, not quite in order); the base otherwise.
    /// Called only when a read-ahead is really started.
    pub fn window(&self, nid: u64, start: u64, end: u64) -> u64 {
        if self.base == 0 {
            return 0;
        }
        let mut map = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_STREAMS {
            map.clear();
        }
        let stream = map.get(&nid).copied().filter(|s| start <= s.ahead_end.saturating_add(self.slack) && start.saturating_add(s.window) >= s.miss_end);
        let next = match stream {
            Some(s) if start >= s.miss_end => {
                let w = (s.window * 2).min(self.base * FILE_GROWTH);
                Stream { miss_end: end, ahead_end: s.ahead_end.max(end.saturating_add(w)), window: w }
            }
            Some(s) => Stream { miss_end: s.miss_end.max(end), ahead_end: s.ahead_end.max(end.saturating_add(s.window)), window: s.window },
            None => Stream { miss_end: end, ahead_end: end.saturating_add(self.base), window: self.base },
        };
        map.insert(nid, next);
        next.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_stream_grows_its_read_ahead_and_a_jump_resets_it() {
        let mb = 1u64 << 20;
        let s = FileStreams::new(4 * mb, mb);
        // A miss, then the next miss where the read-ahead ended (rounded to the chunk after).
        assert_eq!(s.window(7, 0, 128 << 10), 4 * mb);
        assert_eq!(s.window(7, 5 * mb, 5 * mb + 4096), 8 * mb);
        assert_eq!(s.window(7, 14 * mb, 14 * mb + 4096), 16 * mb);
        assert_eq!(s.window(7, 31 * mb, 31 * mb + 4096), 32 * mb);
        assert_eq!(s.window(7, 64 * mb, 64 * mb + 4096), 32 * mb, "capped at 8x");
        // A read of the same stream a little behind (another kernel thread) keeps the window.
        assert_eq!(s.window(7, 60 * mb, 60 * mb + 4096), 32 * mb);
        // Another file is its own stream; a jump back (or far ahead) starts again.
        assert_eq!(s.window(9, 5 * mb, 5 * mb + 4096), 4 * mb);
        assert_eq!(s.window(7, mb, mb + 4096), 4 * mb);
        assert_eq!(s.window(7, 200 * mb, 200 * mb + 4096), 4 * mb);
        assert_eq!(FileStreams::new(0, mb).window(1, 0, 4096), 0, "read-ahead off stays off");
    }

    #[test]
    fn a_stray_miss_gets_the_first_window() {
        let r = Readahead::default();
        assert_eq!(r.window(5 << 20, (5 << 20) + 4096, 1 << 20), FIRST_WINDOW);
        // Far from the previous fetch: still a stray read.
        assert_eq!(r.window(1 << 20, (1 << 20) + 4096, 1 << 20), FIRST_WINDOW);
    }

    #[test]
    fn a_stream_doubles_up_to_amplify_io_and_a_jump_resets() {
        let r = Readahead::default();
        let mut at = 0x1000;
        let mut seen = Vec::new();
        for _ in 0..5 {
            let w = r.window(at, at + 4096, 16 * FIRST_WINDOW);
            seen.push(w);
            r.extend_to(at + w);
            at += w;
        }
        assert_eq!(seen, vec![FIRST_WINDOW, 2 * FIRST_WINDOW, 4 * FIRST_WINDOW, 8 * FIRST_WINDOW, 16 * FIRST_WINDOW]);
        assert_eq!(r.window(at, at + 4096, 16 * FIRST_WINDOW), 16 * FIRST_WINDOW, "capped at amplify_io");
        assert_eq!(r.window(at + (64 << 20), at + (64 << 20) + 10, 16 * FIRST_WINDOW), FIRST_WINDOW);
    }

    #[test]
    fn amplify_io_zero_never_widens() {
        let r = Readahead::default();
        assert_eq!(r.window(0x1000, 0x2000, 0), 0);
        assert_eq!(r.window(0x2000, 0x3000, 0), 0);
    }
}
