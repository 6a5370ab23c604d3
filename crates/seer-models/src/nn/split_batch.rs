//! One sub-batch per thread: a batch of independent items (images, texts)
//! cut into one contiguous part per thread of the current rayon pool, each
//! part taken through the whole forward by one thread on its own, the outputs
//! concatenated in order.
//!
//! Why: where the threads share every step of one batch, each product,
//! attention and norm ends by waiting for the slowest thread (a ViT-B/32
//! forward has about eighty such joins), and a batch's rows seldom cut into
//! equal whole tiles. ViT-B/32 on two threads, old and new builds alternating
//! (AMD Zen 4): f32 images at batch 8 +2.5–9%, batch 32 +0.5–2%, texts at 77
//! tokens +1–3%; bf16 at batch 8 +2–9%. Cut and whole alternating on the AMX
//! Xeon (family 6 model 167): bf16 images +5–20%, int8 images +20–30% and
//! texts unpadded +15–30%; f32 the same within noise (batch 8 once each part
//! took its rows as one block, `seer_kernels::gemm`'s whole share), texts
//! unpadded 1–3% slower in f32 and bf16; since f32 runs on the AMX tiles
//! there, its batches run whole again (see [`applies`]). Each item's outputs
//! are the same bits either way: no kernel's sums depend on the other rows of
//! its batch (the few-row kernels of `seer_kernels::gemm`) or on the threads.
//!
//! A part runs on a rayon pool of one thread, so every parallel loop inside
//! the forward runs in order there. The pools are kept (the kernels keep
//! buffers per thread), once per process: a child forked after a batch has
//! none of its parent's pool threads and builds its own.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::Tensor;
use rayon::prelude::*;
use rayon::{ThreadPool, ThreadPoolBuilder};
use seer_util::per_process::PerProcess;

use crate::error::Result;
use crate::io::weights::Weights;
use seer_kernels::Precision;

/// How much more than an equal share of the work the largest part may hold
/// for the batch to be cut: 1/20 above it. Two threads sharing a bf16 batch
/// of 8 ran 43.3 images/s where one thread alone ran 22.8 (5% short of
/// twice that, AMD Zen 4), so a part much larger would lose what the cut
/// gains.
const MAX_EXCESS_TWENTIETHS: usize = 1;

/// Cleared by [`keep_batches_whole`].
static CUT_ALLOWED: AtomicBool = AtomicBool::new(true);

/// Models built after this call run every batch whole, shared by the threads
/// at each step, as before the cut existed: the off switch, so that the two
/// can be compared on the CPU at hand (`seer bench --whole-batches`, the
/// speed examples' `SEER_WHOLE_BATCHES=1`). The outputs are the same bits.
pub fn keep_batches_whole() {
    CUT_ALLOWED.store(false, Ordering::Relaxed);
}

/// Whether a model built from `weights` cuts its batches: on the CPU's fused
/// inference kernels only, unless [`keep_batches_whole`] was called. A
/// differentiable model (training) runs candle's composite ops and a backward
/// pass over the whole graph; cut, the CIFAR-10 training demo ran 1–28%
/// slower (AMD Zen 4). Nor f32 on the AMX tiles
/// (`seer_kernels::gemm::f32_on_tiles`): whole against cut, alternating on
/// the AMX Xeon (family 6 model 167, 2 vCPUs), ViT-B/32 images at batch 8
/// faster whole in 9 of 10 pairs (median +4%, −6 to +50%), batch 32 in 8 of
/// 10 (median +4%, −5 to +13%), texts at 77 tokens 7 of 7 (median +10%),
/// unpadded 6 of 7 (median +4.5%).
pub fn applies(weights: &Weights) -> bool {
    let f32_on_tiles = weights.precision() == Precision::F32 && seer_kernels::gemm::f32_on_tiles();
    CUT_ALLOWED.load(Ordering::Relaxed)
        && weights.device().is_cpu()
        && !weights.differentiable()
        && !f32_on_tiles
}

/// `forward` over the items `0..costs.len()` (item `i` costing `costs[i]`, in
/// any unit: tokens, or 1 per image): where `cut` (see [`applies`]), the
/// current rayon pool has several threads and the items cut into that many
/// contiguous parts of near-equal cost, as one part per thread at once; else
/// as one call over them all. The parts' outputs in order, or the first
/// error (a forward that reports per item can use `Infallible`).
pub fn per_thread<T: Send, E: Send>(
    cut: bool,
    costs: &[usize],
    forward: impl Fn(Range<usize>) -> std::result::Result<T, E> + Sync,
) -> std::result::Result<Vec<T>, E> {
    let all = 0..costs.len();
    let threads = rayon::current_num_threads();
    if !cut || threads < 2 {
        return Ok(vec![forward(all)?]);
    }
    let Some(parts) = even_parts(costs, threads) else {
        return Ok(vec![forward(all)?]);
    };
    let Some(pools) = one_thread_pools(threads) else {
        return Ok(vec![forward(all)?]);
    };
    parts
        .into_par_iter()
        .zip(pools)
        .map(|(part, pool)| pool.install(|| forward(part)))
        .collect()
}

/// [`per_thread`] for a forward that gives one tensor of the items along
/// dimension 0: the parts' tensors concatenated.
pub fn per_thread_cat(
    cut: bool,
    costs: &[usize],
    forward: impl Fn(Range<usize>) -> Result<Tensor> + Sync,
) -> Result<Tensor> {
    cat_parts(per_thread(cut, costs, forward)?)
}

/// [`per_thread`] over a batch of images, `pixels` (batch, 3, H, W), each
/// costing the same: `forward` gets each part's pixels. A tensor of any other
/// rank goes whole, so that its error describes the tensor as given.
pub fn per_image<T: Send>(
    cut: bool,
    pixels: &Tensor,
    forward: impl Fn(&Tensor) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    match *pixels.dims() {
        [n, _, _, _] => per_thread(cut, &vec![1; n], |part| {
            forward(&pixels.narrow(0, part.start, part.len())?)
        }),
        _ => Ok(vec![forward(pixels)?]),
    }
}

/// The parts' tensors concatenated along dimension 0 (one part as it is).
pub fn cat_parts(mut parts: Vec<Tensor>) -> Result<Tensor> {
    if parts.len() == 1 {
        return Ok(parts.remove(0));
    }
    Ok(Tensor::cat(&parts, 0)?)
}

/// `parts` contiguous ranges of the items, each cut where the running cost
/// is nearest an equal share, or `None` where a part would be empty or more
/// than [`MAX_EXCESS_TWENTIETHS`] above an equal share.
fn even_parts(costs: &[usize], parts: usize) -> Option<Vec<Range<usize>>> {
    let total: usize = costs.iter().sum();
    if costs.len() < parts || total == 0 {
        return None;
    }
    // Item `i` starts at prefix[i] and ends at prefix[i + 1].
    let prefix: Vec<usize> = std::iter::once(0)
        .chain(costs.iter().scan(0, |sum, &c| {
            *sum += c;
            Some(*sum)
        }))
        .collect();
    // The cut before part j: the item boundary nearest j·total / parts.
    let cut = |j: usize| {
        let target = j * total / parts;
        let after = prefix.partition_point(|&p| p < target).min(costs.len());
        match after.checked_sub(1) {
            Some(before) if target - prefix[before] <= prefix[after] - target => before,
            _ => after,
        }
    };
    let cuts: Vec<usize> = (0..parts).map(cut).chain([costs.len()]).collect();
    let ranges: Vec<Range<usize>> = cuts.windows(2).map(|w| w[0]..w[1]).collect();
    let fits = ranges.iter().all(|r| {
        let cost = prefix[r.end] - prefix[r.start];
        !r.is_empty() && cost * parts * 20 <= total * (20 + MAX_EXCESS_TWENTIETHS)
    });
    fits.then_some(ranges)
}

/// `count` rayon pools of one thread each, built on first use and kept (per
/// process: a forked child builds its own, see [`PerProcess`]); `None` where
/// the system refuses a thread (the caller then runs the batch whole on the
/// threads it has).
fn one_thread_pools(count: usize) -> Option<&'static [ThreadPool]> {
    static POOLS: PerProcess<Vec<ThreadPool>> = PerProcess::new();
    let build = || {
        (0..count)
            .map(|_| {
                ThreadPoolBuilder::new()
                    .num_threads(1)
                    .thread_name(|_| "seer-part".into())
                    .build()
            })
            .collect::<std::result::Result<Vec<_>, _>>()
    };
    let pools = POOLS
        .get_or_make(|pools| pools.len() >= count, build)
        .ok()?;
    Some(&pools[..count])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_items_cut_into_equal_parts_where_they_divide() {
        assert_eq!(even_parts(&[1; 8], 2), Some(vec![0..4, 4..8]));
        assert_eq!(even_parts(&[1; 9], 3), Some(vec![0..3, 3..6, 6..9]));
        // 5 and 4 of 9: the larger part is 11% above an equal share.
        assert_eq!(even_parts(&[1; 9], 2), None);
        // 11 and 10 of 21: under 5% above.
        assert_eq!(even_parts(&[1; 21], 2), Some(vec![0..10, 10..21]));
        assert_eq!(even_parts(&[1; 1], 2), None);
        assert_eq!(even_parts(&[], 2), None);
    }

    #[test]
    fn batches_are_cut_unless_f32_runs_on_the_tiles() {
        let cpu = Weights::random(&candle_core::Device::Cpu);
        for precision in [Precision::F32, Precision::Bf16, Precision::Int8] {
            let on_tiles = precision == Precision::F32 && seer_kernels::gemm::f32_on_tiles();
            let w = cpu.clone().with_precision(precision);
            assert_eq!(applies(&w), !on_tiles, "{precision:?}");
        }
    }

    #[test]
    fn uneven_items_cut_by_their_cost() {
        // Token counts: 20 + 4 + 4 + 4 + 4 + 4 = 40, cut at 20.
        assert_eq!(even_parts(&[20, 4, 4, 4, 4, 4], 2), Some(vec![0..1, 1..6]));
        // One item holds most of the work: no cut is near even.
        assert_eq!(even_parts(&[30, 4, 4, 2], 2), None);
        assert_eq!(even_parts(&[0, 0], 2), None);
    }
}
