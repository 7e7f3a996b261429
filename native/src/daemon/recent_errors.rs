//! The last error messages of an image's data path (fetches, integrity,
//! cache writes and syncs), kept until the control plane drains and logs them.

use std::collections::VecDeque;
use std::sync::Mutex;

/// How many messages are kept; older ones are dropped first.
const LEN: usize = 64;

#[derive(Default)]
pub struct RecentErrors {
    log: Mutex<VecDeque<String>>,
}

impl RecentErrors {
    pub fn push(&self, message: String) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() >= LEN {
            log.pop_front();
        }
        log.push_back(message);
    }

    /// The messages since the last call, oldest first.
    pub fn drain(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect()
    }
}
