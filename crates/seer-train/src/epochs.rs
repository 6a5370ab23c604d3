//! How many samples one pass over the training data holds, and where a run
//! stands in passes (the `epoch` of metrics.jsonl and `--json`).
//!
//! Every data source seer trains on is a file that can be read through once
//! without decoding, so the size of a pass is counted before the first step
//! (or taken from the caller, who counted it for `--epochs`) and stored in every
//! checkpoint: a resumed run reports the same epochs as an uninterrupted one.
//!
//! The count is needed before the first step even without `--epochs`: the
//! epoch of every step (metrics.jsonl, `--json`) is a fraction of a pass, and
//! the loader only learns a pass's size at its end. It costs little: no member
//! is kept, plain `.tar` shards are seeked through header by header, and the
//! sources are counted in parallel; only gzipped shards must be decompressed
//! whole, as they have no index.

use rayon::prelude::*;
use seer_data::{count_source, DataPosition, DataSource};

/// One pass over the data, counted without decoding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassCount {
    /// Samples as stored, unreadable ones included: the unit of the loader's
    /// position, and what an epoch's fraction is of.
    pub stored: u64,
    /// Samples without a problem visible before decoding (what `--epochs`
    /// turns into steps).
    pub usable: u64,
}

/// Counts one pass over `sources` (read in parallel, nothing decoded).
pub fn count_pass(sources: &[DataSource]) -> PassCount {
    sources
        .par_iter()
        .map(|source| {
            let count = count_source(source);
            PassCount {
                stored: count.stored,
                usable: count.usable,
            }
        })
        .reduce(PassCount::default, |a, b| PassCount {
            stored: a.stored + b.stored,
            usable: a.usable + b.usable,
        })
}

/// Passes over the data done at `position`: whole epochs plus the part of the
/// current one consumed, `pass_size` stored samples making one epoch. The
/// fraction is capped at 1 (should the data have grown since it was counted).
pub fn epoch_value(position: DataPosition, pass_size: u64) -> f64 {
    if pass_size == 0 {
        return position.epoch as f64;
    }
    position.epoch as f64 + position.consumed.min(pass_size) as f64 / pass_size as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_whole_passes_plus_the_consumed_part() {
        let at = |epoch, consumed| DataPosition { epoch, consumed };
        assert_eq!(epoch_value(at(0, 8), 24), 1.0 / 3.0);
        assert_eq!(epoch_value(at(0, 24), 24), 1.0);
        assert_eq!(epoch_value(at(1, 16), 24), 1.0 + 2.0 / 3.0);
        assert_eq!(epoch_value(at(2, 30), 24), 3.0, "capped at a whole pass");
        assert_eq!(epoch_value(at(3, 5), 0), 3.0);
    }

    #[test]
    fn a_pass_counts_stored_and_usable_samples() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("pairs.jsonl");
        std::fs::write(
            &list,
            "{\"image\": \"a.jpg\", \"caption\": \"a\"}\nnot json\n{\"image\": \"b.jpg\", \"caption\": \"b\"}\n",
        )
        .unwrap();
        let sources = vec![DataSource::Jsonl(list.clone()), DataSource::Jsonl(list)];
        assert_eq!(
            count_pass(&sources),
            PassCount {
                stored: 6,
                usable: 4
            }
        );
    }
}
