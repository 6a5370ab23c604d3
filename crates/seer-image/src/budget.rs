//! A byte budget shared by every decode in the process, so that decoding on N
//! threads cannot hold N large images at once (six 12,000 × 12,000 PNGs took
//! 1.17 GB on two threads before it). A decode reserves its estimated size,
//! from the dimensions in the header and before it allocates, and the
//! reservation is released when the decoded image is dropped.
//!
//! Reservations are granted in arrival order (no starvation of big images). An
//! image larger than the whole budget (but within `--max-pixels`) waits until
//! nothing else is reserved and then decodes alone. A thread that already holds
//! a reservation never waits (it would wait for itself).

use std::collections::HashMap;
use std::sync::{Condvar, LazyLock, Mutex, MutexGuard};
use std::thread::ThreadId;

/// Default total (2 GiB): about ten 24-megapixel photos decode at once, while
/// images of more than 134 megapixels (a 12,000 × 12,000 PNG) decode one at a time.
pub const DEFAULT_DECODE_MEMORY: u64 = 2 << 30;

/// Bytes reserved per pixel: a decoder's buffer (up to 8 bytes per pixel for
/// 16-bit RGBA) or, for 8-bit images, the decoded buffer plus the RGB copy and
/// the rotated copy that conversion and EXIF orientation make.
pub const RESERVED_BYTES_PER_PIXEL: u64 = 8;

#[derive(Debug, Default)]
struct State {
    capacity: u64,
    in_use: u64,
    peak: u64,
    next_ticket: u64,
    serving: u64,
    /// Reservations held per thread, for the never-wait-for-yourself rule.
    holders: HashMap<ThreadId, usize>,
}

/// A counting semaphore over bytes.
#[derive(Debug)]
pub struct DecodeBudget {
    state: Mutex<State>,
    changed: Condvar,
}

static GLOBAL: LazyLock<DecodeBudget> = LazyLock::new(|| DecodeBudget::new(DEFAULT_DECODE_MEMORY));

impl DecodeBudget {
    pub fn new(capacity: u64) -> Self {
        Self {
            state: Mutex::new(State {
                capacity,
                ..State::default()
            }),
            changed: Condvar::new(),
        }
    }

    /// The process-wide budget that [`crate::DecodeLimits::default`] uses.
    pub fn global() -> &'static DecodeBudget {
        &GLOBAL
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the total (e.g. from `--decode-memory`); waiting decodes re-check.
    pub fn set_capacity(&self, bytes: u64) {
        self.lock().capacity = bytes;
        self.changed.notify_all();
    }

    pub fn capacity(&self) -> u64 {
        self.lock().capacity
    }

    /// Bytes reserved now.
    pub fn in_use(&self) -> u64 {
        self.lock().in_use
    }

    /// The most bytes ever reserved at once (the high-water mark).
    pub fn peak(&self) -> u64 {
        self.lock().peak
    }

    /// Waits until `bytes` fit (or nothing else is reserved), then reserves them
    /// until the returned reservation is dropped.
    pub fn reserve(&'static self, bytes: u64) -> Reservation {
        let me = std::thread::current().id();
        let mut s = self.lock();
        if !s.holders.contains_key(&me) {
            let ticket = s.next_ticket;
            s.next_ticket += 1;
            while s.serving != ticket || !(s.in_use == 0 || s.in_use + bytes <= s.capacity) {
                s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            s.serving += 1;
        }
        s.in_use += bytes;
        s.peak = s.peak.max(s.in_use);
        *s.holders.entry(me).or_default() += 1;
        drop(s);
        // The next ticket may fit too.
        self.changed.notify_all();
        Reservation {
            budget: self,
            bytes,
            holder: me,
        }
    }
}

/// Bytes of a [`DecodeBudget`] held until dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: &'static DecodeBudget,
    bytes: u64,
    holder: ThreadId,
}

impl Reservation {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut s = self.budget.lock();
        s.in_use -= self.bytes;
        if let Some(n) = s.holders.get_mut(&self.holder) {
            *n -= 1;
            if *n == 0 {
                s.holders.remove(&self.holder);
            }
        }
        drop(s);
        self.budget.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    fn leaked(capacity: u64) -> &'static DecodeBudget {
        Box::leak(Box::new(DecodeBudget::new(capacity)))
    }

    #[test]
    fn concurrent_reservations_never_exceed_the_budget() {
        let budget = leaked(100);
        // Measured by the holders themselves, not only by the budget's own count.
        let held = Arc::new(AtomicU64::new(0));
        let most = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (held, most) = (held.clone(), most.clone());
                std::thread::spawn(move || {
                    for i in 0..200u64 {
                        let bytes = 10 + (t * 7 + i * 13) % 60;
                        let r = budget.reserve(bytes);
                        let now = held.fetch_add(bytes, Ordering::SeqCst) + bytes;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        held.fetch_sub(bytes, Ordering::SeqCst);
                        drop(r);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(most.load(Ordering::SeqCst) <= 100);
        assert!(budget.peak() <= 100);
        assert!(budget.peak() > 60, "reservations did overlap");
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn an_image_larger_than_the_budget_proceeds_alone() {
        let budget = leaked(100);
        let small = budget.reserve(30);
        let (tx, rx) = std::sync::mpsc::channel();
        let big = std::thread::spawn(move || {
            let r = budget.reserve(500);
            tx.send(budget.in_use()).unwrap();
            drop(r);
        });
        // The big one waits while the small one is held...
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(200))
            .is_err());
        drop(small);
        // ...then has the budget to itself.
        assert_eq!(rx.recv().unwrap(), 500);
        big.join().unwrap();
        assert_eq!(budget.peak(), 500);
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn a_thread_holding_a_reservation_does_not_wait_for_itself() {
        let budget = leaked(100);
        let a = budget.reserve(80);
        let b = budget.reserve(80); // would deadlock if it waited
        assert_eq!(budget.in_use(), 160);
        drop((a, b));
        assert_eq!(budget.in_use(), 0);
        let c = budget.reserve(80);
        assert_eq!(c.bytes(), 80);
    }

    #[test]
    fn raising_the_capacity_wakes_waiters() {
        let budget = leaked(100);
        let held = budget.reserve(90);
        let waiter = std::thread::spawn(move || budget.reserve(50).bytes());
        budget.set_capacity(200);
        assert_eq!(waiter.join().unwrap(), 50);
        drop(held);
    }
}
