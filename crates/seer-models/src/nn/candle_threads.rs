//! candle's own CPU threads, kept out of seer's way.
//!
//! candle 0.11 runs its large element-wise ops (64 K values and more: the
//! residual adds, the gradient sums of its backward pass) on a pool of its
//! own beside rayon's, whose worker spins up to 25,000 `pause`s after each op
//! before it sleeps, and whose caller spins until that worker is done.
//! seer's kernels run on rayon's threads, one per core, so candle's worker
//! and caller spin on cores that rayon's workers need for the next product
//! (about 140 cycles a `pause` on Intel cores since Skylake: a millisecond a
//! spin). With the pool threadless the ops run on the calling thread, as the
//! Python package has always run them (its `__init__.py`, for fork safety).
//!
//! Measured on the CIFAR-10 training config (`seer-train`'s `step_speed`,
//! batch 256, 2 threads, Intel Xeon of family 6 model 207 without AMX, 10
//! alternating pairs): 961 against 850 samples/s (medians), +13%, faster in
//! 9 of 10 pairs. ViT-B/32 inference, whose element-wise work is seer's own,
//! moved within noise (`clip_image_speed`, 8 pairs).

/// Makes candle run its element-wise CPU ops on the calling thread (its pool
/// starts no thread), unless the user chose a count in `CANDLE_NUM_THREADS`.
/// Call first thing in `main`, before any thread starts (it sets an
/// environment variable) and before the first candle op (the pool is sized
/// once, at first use).
pub fn run_candle_ops_inline() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}
