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

use std::sync::atomic::{AtomicU64, Ordering};

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

#[cfg(test)]
mod tests {
    use super::*;

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
