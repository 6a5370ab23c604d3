//! Tile-line buffers too large for glibc's heap, kept from one product to the
//! next.
//!
//! glibc maps every block over its mmap threshold (32 MiB at most, which
//! [`crate::alloc::keep_freed_blocks`] sets) fresh from the kernel and unmaps
//! it on free, so each of its pages faults in and is zeroed on first write.
//! A product's output lines reach that size in wide models: the split lines
//! of ViT-B's MLP input (2056 rows × 3072 values × 6 bytes at batch 8, 38 MB;
//! more in batch 32's chunks), once a layer. Page faults writing them were
//! 8% of DINOv2 ViT-B/14 f32's time (perf, the Intel Xeon with AMX). A
//! buffer freed here waits for the next product of about its size instead.

use std::sync::{Mutex, PoisonError};

use super::Line;

/// Buffers from this many bytes are kept (glibc's largest mmap threshold:
/// smaller ones come from its heap, which keeps them itself).
const FROM_BYTES: usize = 32 << 20;
/// At most this many bytes wait here, the largest buffers kept (as much as
/// `keep_freed_blocks` lets glibc keep at its heap top).
const KEPT_BYTES: usize = 256 << 20;

static SPARE: Mutex<Vec<Vec<Line>>> = Mutex::new(Vec::new());

fn bytes(lines: &Vec<Line>) -> usize {
    lines.capacity() * size_of::<Line>()
}

/// An empty vector with room for `len` lines: the smallest kept one that
/// holds them, else a new one.
pub(super) fn with_capacity(len: usize) -> Vec<Line> {
    if len * size_of::<Line>() >= FROM_BYTES {
        let mut spare = SPARE.lock().unwrap_or_else(PoisonError::into_inner);
        let fitting = (0..spare.len())
            .filter(|&i| spare[i].capacity() >= len)
            .min_by_key(|&i| spare[i].capacity());
        if let Some(i) = fitting {
            return spare.swap_remove(i);
        }
    }
    Vec::with_capacity(len)
}

/// Keeps `lines`' buffer for [`with_capacity`] if it is large enough, the
/// smallest kept ones freed past [`KEPT_BYTES`]; frees it otherwise.
pub(super) fn give_back(mut lines: Vec<Line>) {
    if bytes(&lines) < FROM_BYTES {
        return;
    }
    lines.clear();
    let mut spare = SPARE.lock().unwrap_or_else(PoisonError::into_inner);
    spare.push(lines);
    spare.sort_unstable_by_key(|v| std::cmp::Reverse(v.capacity()));
    while spare.iter().map(bytes).sum::<usize>() > KEPT_BYTES {
        spare.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines for `bytes` bytes.
    fn lines(bytes: usize) -> usize {
        bytes / size_of::<Line>()
    }

    #[test]
    fn large_buffers_come_back_and_small_ones_are_not_kept() {
        // One test touches SPARE, so no other thread's buffers mix in.
        let big = with_capacity(lines(FROM_BYTES) + 7);
        let at = big.as_ptr();
        give_back(big);
        // A smaller request of the kept size takes the same block.
        let again = with_capacity(lines(FROM_BYTES));
        assert_eq!(again.as_ptr(), at, "the freed block is reused");
        assert!(again.is_empty() && again.capacity() >= lines(FROM_BYTES) + 7);
        // A larger one than any kept gets a new block; the kept stays.
        give_back(again);
        let larger = with_capacity(lines(2 * FROM_BYTES));
        assert_ne!(larger.as_ptr(), at);
        assert_eq!(SPARE.lock().unwrap().len(), 1);
        // Small buffers are glibc's: not kept.
        give_back(with_capacity(16));
        assert_eq!(SPARE.lock().unwrap().len(), 1);
        // Past the bound the smallest go first.
        give_back(larger);
        for _ in 0..8 {
            give_back(Vec::with_capacity(lines(2 * FROM_BYTES)));
        }
        let spare = SPARE.lock().unwrap();
        assert!(spare.iter().map(bytes).sum::<usize>() <= KEPT_BYTES);
        assert!(spare.iter().all(|v| v.capacity() >= lines(2 * FROM_BYTES)));
        assert_eq!(spare.len(), KEPT_BYTES / (2 * FROM_BYTES));
    }
}
