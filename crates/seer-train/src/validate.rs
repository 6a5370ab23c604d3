//! Refuses training options that cannot make sense (a zero batch, a negative or
//! NaN learning rate, more warm-up than steps, ...) before anything is loaded,
//! with messages naming the `seer train` option.

use crate::error::{Result, TrainError};
use crate::optim::AdamWConfig;
use crate::trainer::TrainOptions;

fn invalid(message: String) -> TrainError {
    TrainError::Invalid(message)
}

/// `value` must be finite and at least `min` (or above it when `strict`).
fn finite_at_least(flag: &str, value: f64, min: f64, strict: bool) -> Result<()> {
    let ok = value.is_finite() && if strict { value > min } else { value >= min };
    if ok {
        return Ok(());
    }
    let bound = if strict { "above" } else { "at least" };
    Err(invalid(format!(
        "{flag} must be a number {bound} {min} (got {value})"
    )))
}

/// An AdamW β: a decay rate in [0, 1).
fn beta(flag: &str, value: f64) -> Result<()> {
    if value.is_finite() && (0.0..1.0).contains(&value) {
        return Ok(());
    }
    Err(invalid(format!(
        "{flag} must be at least 0 and below 1 (got {value})"
    )))
}

/// The plain numbers of a run, checked before anything is read, loaded or
/// written. `steps` is `None` while it is still to be counted from `--epochs`
/// (then `--warmup` is checked against it by [`validate`], once known);
/// `warmup` is `None` for the default.
#[derive(Clone, Debug)]
pub struct Numbers<'a> {
    pub batch_size: usize,
    pub micro_batch: usize,
    pub steps: Option<u64>,
    pub warmup: Option<u64>,
    pub lr: f64,
    pub adamw: AdamWConfig,
    pub grad_clip: f64,
    pub keep_checkpoints: usize,
    pub stop_after: Option<u64>,
    pub workers: usize,
    pub recall_k: &'a [usize],
}

/// Every check on [`TrainOptions`]; `train` runs it first, and the CLI runs it
/// before decoding evaluation sets so a typo fails at once.
pub fn validate(o: &TrainOptions) -> Result<()> {
    check_numbers(&Numbers {
        batch_size: o.batch_size,
        micro_batch: o.micro_batch,
        steps: Some(o.steps),
        warmup: Some(o.warmup),
        lr: o.lr,
        adamw: o.adamw,
        grad_clip: o.grad_clip,
        keep_checkpoints: o.keep_checkpoints,
        stop_after: o.stop_after,
        workers: o.data.workers,
        recall_k: o.pairs.as_ref().map_or(&[], |p| &p.ks),
    })
}

/// The checks on the plain numbers, each naming its `seer train` option.
pub fn check_numbers(o: &Numbers) -> Result<()> {
    if o.batch_size < 2 {
        return Err(invalid(format!(
            "--batch-size must be at least 2 (got {}): a contrastive loss needs negatives",
            o.batch_size
        )));
    }
    if o.micro_batch == 0 {
        return Err(invalid("--micro-batch must be at least 1 (got 0)".into()));
    }
    if o.micro_batch > o.batch_size {
        return Err(invalid(format!(
            "--micro-batch ({}) is larger than --batch-size ({}): a micro-batch is the part of a \
             batch embedded at once; use at most {} (or leave it out)",
            o.micro_batch, o.batch_size, o.batch_size
        )));
    }
    if o.steps == Some(0) {
        return Err(invalid("--steps must be at least 1 (got 0)".into()));
    }
    if let (Some(warmup), Some(steps)) = (o.warmup, o.steps) {
        if warmup > steps {
            return Err(invalid(format!(
                "--warmup ({warmup}) is longer than the run (--steps {steps}): the learning rate \
                 would never reach --lr; use at most {steps}"
            )));
        }
    }
    finite_at_least("--lr", o.lr, 0.0, true)?;
    finite_at_least("--wd", o.adamw.weight_decay, 0.0, false)?;
    finite_at_least("--eps", o.adamw.eps, 0.0, true)?;
    beta("--beta1", o.adamw.beta1)?;
    beta("--beta2", o.adamw.beta2)?;
    finite_at_least("--grad-clip", o.grad_clip, 0.0, false)?;
    if o.keep_checkpoints == 0 {
        return Err(invalid(
            "--keep-checkpoints must be at least 1 (got 0): --resume needs the newest".into(),
        ));
    }
    if o.stop_after == Some(0) {
        return Err(invalid("--stop-after must be at least 1 (got 0)".into()));
    }
    if o.workers == 0 {
        return Err(invalid("--workers must be at least 1 (got 0)".into()));
    }
    if o.recall_k.contains(&0) {
        return Err(invalid(
            "--recall-k values must be at least 1 (got 0)".into(),
        ));
    }
    Ok(())
}
