//! A value made once per process and safe across `fork()`: thread pools that
//! a forked child must not use, since it inherits the parent's record of a pool
//! but none of its threads (a call into it would wait forever).
//!
//! Published through an atomic pointer, not a mutex: a thread of the parent
//! holding a mutex at the instant of a fork would leave it locked in the child
//! for good (seen in CI with Python's `multiprocessing`). Records are leaked,
//! never freed: references to them are `'static`, and a parent's record, in a
//! child, would signal threads that do not exist there if dropped.

use std::sync::atomic::{AtomicPtr, Ordering};

/// The value and the process that made it.
struct Record<T> {
    pid: u32,
    value: T,
}

/// See the module comment. Meant for a `static`.
pub struct PerProcess<T> {
    current: AtomicPtr<Record<T>>,
}

impl<T> Default for PerProcess<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> PerProcess<T> {
    pub const fn new() -> Self {
        Self {
            current: AtomicPtr::new(std::ptr::null_mut()),
        }
    }
}

/// `Sync`: the value is handed to every thread that asks.
impl<T: Sync> PerProcess<T> {
    /// This process's value where it has one that `fits`; else one from
    /// `make`, published in its place (the one it replaces, this process's or
    /// its parent's, stays leaked: others may hold it).
    pub fn get_or_make<E>(
        &'static self,
        fits: impl Fn(&T) -> bool,
        make: impl Fn() -> Result<T, E>,
    ) -> Result<&'static T, E> {
        let pid = std::process::id();
        loop {
            let current = self.current.load(Ordering::Acquire);
            // SAFETY: `current` is null or a record leaked by `Box::into_raw`
            // below and never freed, so the reference is valid for 'static.
            if let Some(record) = unsafe { current.as_ref() } {
                if record.pid == pid && fits(&record.value) {
                    return Ok(&record.value);
                }
            }
            let fresh = Box::into_raw(Box::new(Record {
                pid,
                value: make()?,
            }));
            match self
                .current
                .compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire)
            {
                // SAFETY: `fresh` came from `Box::into_raw` and is never freed
                // now that it is published.
                Ok(_) => return Ok(unsafe { &(*fresh).value }),
                // Another thread of this process published first; nobody else
                // has seen `fresh`, so it is dropped and the lookup runs again.
                //
                // SAFETY: `fresh` came from `Box::into_raw` above and was not
                // published, so this is its only owner.
                Err(_) => drop(unsafe { Box::from_raw(fresh) }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_made_once_until_it_no_longer_fits() {
        static VALUE: PerProcess<usize> = PerProcess::new();
        let made = std::sync::atomic::AtomicUsize::new(0);
        let make = |n: usize| {
            let made = &made;
            move || -> Result<usize, ()> {
                made.fetch_add(1, Ordering::SeqCst);
                Ok(n)
            }
        };
        assert_eq!(*VALUE.get_or_make(|&v| v >= 2, make(2)).unwrap(), 2);
        assert_eq!(*VALUE.get_or_make(|&v| v >= 1, make(9)).unwrap(), 2);
        assert_eq!(made.load(Ordering::SeqCst), 1);
        assert_eq!(*VALUE.get_or_make(|&v| v >= 3, make(4)).unwrap(), 4);
        assert_eq!(made.load(Ordering::SeqCst), 2);
        assert_eq!(
            VALUE.get_or_make(|&v| v >= 5, || Err("refused")),
            Err("refused")
        );
    }
}
