//! Pieces every pipeline of the node shares: the latest-wins mailbox between a subscription and its
//! worker, and rate-limited warnings.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// A one-slot mailbox: `put` replaces an unread message (counting it), `take` waits for one.
pub struct Mailbox {
    slot: Mutex<(Option<(Vec<u8>, Instant)>, u64)>,
    ready: Condvar,
}

impl Mailbox {
    pub fn new() -> Self {
        Mailbox { slot: Mutex::new((None, 0)), ready: Condvar::new() }
    }

    pub fn put(&self, message: Vec<u8>) {
        let arrived = Instant::now();
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if slot.0.replace((message, arrived)).is_some() {
            slot.1 += 1;
        }
        self.ready.notify_one();
    }

    /// The newest message, when it arrived, and how many unread ones it replaced, waiting at most
    /// `timeout`.
    pub fn take(&self, timeout: Duration) -> Option<(Vec<u8>, Instant, u64)> {
        let slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        let (mut slot, _) = self.ready.wait_timeout_while(slot, timeout, |s| s.0.is_none()).unwrap_or_else(|e| e.into_inner());
        let (message, arrived) = slot.0.take()?;
        let replaced = std::mem::take(&mut slot.1);
        Some((message, arrived, replaced))
    }

    /// Wakes a waiting `take` (at shutdown).
    pub fn wake(&self) {
        self.ready.notify_all();
    }
}

/// Logs a warning of each kind at most once per period, with the number suppressed meanwhile.
pub struct RateLimitedLog {
    period: Duration,
    last: HashMap<&'static str, (Instant, u64)>,
}

impl RateLimitedLog {
    pub fn new(period: Duration) -> Self {
        RateLimitedLog { period, last: HashMap::new() }
    }

    pub fn warn(&mut self, kind: &'static str, message: &str) {
        let now = Instant::now();
        match self.last.get_mut(kind) {
            Some((at, suppressed)) if now.duration_since(*at) < self.period => *suppressed += 1,
            Some((at, suppressed)) => {
                if *suppressed > 0 {
                    log::warn!("{message} ({} similar warnings suppressed)", suppressed);
                } else {
                    log::warn!("{message}");
                }
                *at = now;
                *suppressed = 0;
            }
            None => {
                log::warn!("{message}");
                self.last.insert(kind, (now, 0));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_message_wins_and_replacements_are_counted() {
        let mailbox = Mailbox::new();
        mailbox.put(vec![1]);
        mailbox.put(vec![2]);
        mailbox.put(vec![3]);
        let (message, arrived, replaced) = mailbox.take(Duration::from_millis(1)).unwrap();
        assert_eq!((message, replaced), (vec![3], 2));
        assert!(arrived.elapsed() < Duration::from_secs(5));
        assert_eq!(mailbox.take(Duration::from_millis(1)), None);
    }
}
