//! seer's photo index: which files are indexed with which model (SQLite, the
//! source of truth), how an indexing run keeps it up to date incrementally and
//! crash-safely, and how queries are answered.

pub mod ann;
pub mod dates;
pub mod dupes;
pub mod error;
pub mod exchange;
pub mod indexer;
pub mod lock;
pub mod npy;
pub mod pathcodec;
pub mod scan;
pub mod search;
pub mod store;
#[cfg(test)]
mod store_tests;
pub mod vector;

use std::path::PathBuf;

pub use error::{IndexError, Result};
pub use indexer::{index, index_locked, IndexOptions, IndexSummary, Progress};
pub use lock::IndexLock;
pub use search::{
    clamp_cosine, query_vector, rank, rank_exact, rank_excluding, Hit, Query, SearchOptions,
};
pub use store::{ModelInfo, Store, VectorSet};
pub use vector::Encoding;

/// The default index folder: `$SEER_INDEX`, else `$XDG_DATA_HOME/seer/index`,
/// else `~/.local/share/seer/index`.
pub fn default_index_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SEER_INDEX") {
        return PathBuf::from(dir);
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("seer").join("index")
}
