//! One flag per chunk, set and read from many threads without a lock: the
//! loader's "validated" and "demanded" sets and the cache's "written" set.

use std::sync::atomic::{AtomicU64, Ordering};

pub struct AtomicBits {
    words: Vec<AtomicU64>,
}

impl AtomicBits {
    /// `n` flags, all clear.
    pub fn new(n: u32) -> AtomicBits {
        AtomicBits { words: (0..(n as usize).div_ceil(64)).map(|_| AtomicU64::new(0)).collect() }
    }

    /// Whether flag `i` exists.
    pub fn covers(&self, i: u32) -> bool {
        (i as usize / 64) < self.words.len()
    }

    /// Flag `i` (clear when it does not exist).
    pub fn get(&self, i: u32) -> bool {
        self.words.get(i as usize / 64).is_some_and(|w| w.load(Ordering::Acquire) & (1 << (i % 64)) != 0)
    }

    /// Sets flag `i`; true when this call set it (false: it was set already, or does not exist).
    pub fn set(&self, i: u32) -> bool {
        self.words.get(i as usize / 64).is_some_and(|w| w.fetch_or(1 << (i % 64), Ordering::AcqRel) & (1 << (i % 64)) == 0)
    }

    pub fn clear(&self, i: u32) {
        if let Some(w) = self.words.get(i as usize / 64) {
            w.fetch_and(!(1 << (i % 64)), Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_set_once_clear_and_stay_in_range() {
        let b = AtomicBits::new(70);
        assert!(b.covers(69) && b.covers(127) && !b.covers(128));
        assert!(!b.get(65));
        assert!(b.set(65));
        assert!(!b.set(65), "a second set reports the flag was already set");
        assert!(b.get(65) && !b.get(64) && !b.get(66));
        b.clear(65);
        assert!(!b.get(65));
        assert!(!b.set(500) && !b.get(500));
        b.clear(500);
    }
}
