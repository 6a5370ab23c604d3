//! Large zeroed buffers backed by transparent huge pages where the kernel
//! allows it (`madvise` mode): a model's weights then fault in 2 MB at a time
//! instead of 4 KB, which takes most of the system time out of loading. And the
//! process's malloc settings for the many short-lived megabyte buffers of
//! candle's ops, and training's op outputs filled in parallel without a
//! zeroing pass first.

use std::mem::MaybeUninit;

/// A zeroed vector of `n` elements; on Linux its pages are marked for huge pages
/// before first touch.
pub fn zeroed_vec<T: Copy + Default>(n: usize) -> Vec<T> {
    let v = vec![T::default(); n];
    advise_huge_pages(&v);
    v
}

/// Where [`AlignedVec`] starts: a cache line.
pub const CACHE_LINE: usize = 64;

/// A zeroed, fixed-length buffer whose first value starts a cache line, for
/// packed weights: their panel rows are 64 or 128 bytes, so every AVX-512
/// load and AMX tile row of them then touches one line instead of two.
/// (glibc's large blocks start 16 bytes into a page: three packings in four
/// had split every weight row, and AMX tile loads of split rows ran at a
/// quarter of their speed on the Intel Xeon with AMX.) A [`zeroed_vec`] a line
/// longer, used from its first whole line: the same calloc'd, untouched zero
/// pages and huge-page advice, where an allocation with a 64-byte layout
/// would have been zeroed by a memset.
pub struct AlignedVec<T> {
    /// The values are `buf[start..]`.
    buf: Vec<T>,
    start: usize,
}

impl<T: Copy + Default> AlignedVec<T> {
    /// `len` zeros (`T::default()`).
    pub fn zeroed(len: usize) -> Self {
        let slack = CACHE_LINE / std::mem::size_of::<T>().max(1);
        let mut buf = zeroed_vec::<T>(len + slack);
        // Reachable for the plain numbers packed here (sizes dividing 64);
        // otherwise unaligned, never out of bounds.
        let start = buf.as_ptr().align_offset(CACHE_LINE).min(slack);
        buf.truncate(start + len);
        Self { buf, start }
    }
}

impl<T> std::ops::Deref for AlignedVec<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.buf[self.start..]
    }
}

impl<T> std::ops::DerefMut for AlignedVec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.buf[self.start..]
    }
}

#[cfg(target_os = "linux")]
fn advise_huge_pages<T>(v: &[T]) {
    const HUGE: usize = 2 << 20;
    let start = v.as_ptr() as usize;
    let end = start + std::mem::size_of_val(v);
    let aligned_start = start.next_multiple_of(HUGE);
    if end <= aligned_start + HUGE {
        return;
    }
    let len = (end - aligned_start) / HUGE * HUGE;
    // SAFETY: advice only; the range lies inside the vector's allocation. A
    // refusal (THP disabled) leaves ordinary pages, so the result is ignored.
    unsafe {
        libc::madvise(aligned_start as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages<T>(_: &[T]) {}

/// Keeps freed blocks of up to 32 MiB in the heap for reuse, and up to 256 MiB
/// of free heap top, instead of glibc's default of unmapping every large block
/// on free and mapping (and zeroing) a fresh one on the next allocation.
/// Training allocates and frees tensors of megabytes per op: with the default,
/// 25–30% of a step went to page faults, page zeroing and TLB shootdowns, and
/// the CIFAR-10 demo trained at 142–183 samples/s against 232–242 with this
/// (AMD EPYC Zen 4, 2 threads). Call once, first thing in `main`. A no-op
/// outside glibc.
pub fn keep_freed_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; both values are in
    // the range glibc accepts (the mmap threshold's maximum is 32 MiB on 64-bit).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// `n` floats written by `fill(offset, chunk)` over chunks of `chunk` values
/// (the last may be shorter) on rayon's threads.
///
/// Each chunk is zeroed just before its call, while its lines come into cache
/// for the writes anyway, so `fill` may add onto it. Training allocates
/// hundreds of megabytes of outputs a step (activations and their gradients):
/// zeroed first by one `memset` on the calling thread, that was 6–7% of a
/// step's CPU samples with the other thread idle (Intel AMX VM, CIFAR-10
/// config), and a separate parallel pass still 6%.
pub fn filled_parallel(
    n: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    // SAFETY: every value of a chunk is zeroed before `fill` gets it.
    unsafe {
        filled_parallel_uninit(n, chunk, |offset, c| {
            c.fill(MaybeUninit::new(0.0));
            // SAFETY: every value of `c` was written just above, and
            // MaybeUninit<f32> has f32's layout.
            fill(offset, &mut *(c as *mut [MaybeUninit<f32>] as *mut [f32]))
        })
    }
}

/// [`filled_parallel`] with the chunks handed out unwritten: for kernels that
/// store every value once, the zeroing would be a wasted pass.
///
/// # Safety
/// `fill` writes every value of each chunk it is given (a panic in it is
/// fine: the vector is then never made).
pub unsafe fn filled_parallel_uninit(
    n: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    use rayon::prelude::*;
    assert!(chunk > 0, "chunks of no values");
    let mut v = Vec::with_capacity(n);
    v.spare_capacity_mut()[..n]
        .par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, c)| fill(i * chunk, c));
    // SAFETY: the capacity holds `n` values, every chunk of which `fill`
    // wrote (the caller's contract).
    unsafe { v.set_len(n) };
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_parallel_hands_out_zeroed_chunks_in_order() {
        // After freeing a block of ones, which malloc may hand back: the zeros
        // must be written, not found. Each chunk adds its offset plus one to
        // every value, so a chunk handed out twice, unzeroed or misplaced
        // shows.
        drop(vec![1f32; 1 << 20]);
        for (n, chunk) in [
            (0, 4),
            (1, 4),
            (10, 4),
            (1 << 17, 1 << 12),
            ((1 << 19) + 3, 1000),
        ] {
            let v = filled_parallel(n, chunk, |offset, c| {
                for (i, x) in c.iter_mut().enumerate() {
                    *x += (offset + i + 1) as f32;
                }
            });
            assert_eq!(v.len(), n);
            assert!(
                v.iter().enumerate().all(|(i, &x)| x == (i + 1) as f32),
                "n = {n}"
            );
        }
    }

    #[test]
    fn aligned_vectors_start_a_line_and_hold_zeros() {
        for len in [0, 1, 17, 1000, 3 << 20] {
            let mut v = AlignedVec::<u16>::zeroed(len);
            assert_eq!(v.as_ptr() as usize % CACHE_LINE, 0, "{len}");
            assert_eq!(v.len(), len);
            assert!(v.iter().all(|&x| x == 0));
            if let Some(last) = v.last_mut() {
                *last = 7;
            }
            assert_eq!(
                v.iter().map(|&x| usize::from(x)).sum::<usize>(),
                7 * usize::from(len > 0)
            );
        }
    }
}
