//! Streaming training data for seer: webdataset shards (`.tar`, `.tar.gz`) and
//! JSONL/CSV caption lists, a seeded shuffle buffer, parallel decoding,
//! training augmentation and exactly resumable positions. Bad samples are
//! skipped, counted and logged; they never stop a run.

mod augment;
mod error;
mod loader;
mod raw;
pub mod rng;
mod source;

pub use augment::RandomResizedCrop;
pub use error::{DataError, Result};
pub use loader::{Batch, ClassPrompts, DataPosition, Loader, LoaderConfig, LoaderStats, Sample};
pub use raw::{count_source, read_source, RawSample, SourceCount};
pub use rng::Rng;
pub use source::DataSource;

/// Usable samples in one pass over `sources` (nothing decoded).
pub fn count_samples(sources: &[DataSource]) -> Result<u64> {
    Ok(raw::count_samples(sources))
}
