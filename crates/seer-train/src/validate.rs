//! Refuses training options that cannot make sense (a zero batch, a negative or
//! NaN learning rate, more warm-up than steps, ...) before anything is loaded,
//! with messages naming the `seer train` option.

use crate::error::{Result, TrainError};
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

/// Every check on [`TrainOptions`]; `train` runs it first, and the CLI runs it
/// before decoding evaluation sets so a typo fails at once.
pub fn validate(o: &TrainOptions) -> Result<()> {
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
    if o.steps == 0 {
        return Err(invalid("--steps must be at least 1 (got 0)".into()));
    }
    if o.warmup > o.steps {
        return Err(invalid(format!(
            "--warmup ({}) is longer than the run (--steps {}): the learning rate would never \
             reach --lr; use at most {}",
            o.warmup, o.steps, o.steps
        )));
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
    if o.data.workers == 0 {
        return Err(invalid("--workers must be at least 1 (got 0)".into()));
    }
    if let Some(pairs) = &o.pairs {
        if pairs.ks.contains(&0) {
            return Err(invalid(
                "--recall-k values must be at least 1 (got 0)".into(),
            ));
        }
    }
    Ok(())
}
