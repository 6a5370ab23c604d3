//! seer's photo index: which files are indexed with which model (SQLite, the
//! source of truth), how an indexing run keeps it up to date incrementally and
//! crash-safely, and how queries are answered: by vectors, by caption words,
//! or both (`hybrid`), optionally reranked by an image-text matching model.

pub mod ann;
#[cfg(test)]
mod caption_tests;
pub mod captions;
pub mod dates;
pub mod dupes;
pub mod error;
pub mod exchange;
pub mod find;
pub mod forget;
pub mod hybrid;
pub mod indexer;
pub mod lock;
pub mod npy;
pub mod pathcodec;
pub mod rerank;
pub mod scan;
pub mod search;
pub mod searcher;
pub mod store;
#[cfg(test)]
mod store_tests;
#[cfg(test)]
mod test_index;
pub mod vector;
pub mod video;
#[cfg(test)]
mod video_tests;
pub mod words;

pub use captions::{caption_locked, CaptionOptions, CaptionSummary};
pub use error::{IndexError, Result};
pub use forget::{forget_folder, Forgotten};
pub use hybrid::{Found, SearchMode};
pub use indexer::{index, index_locked, IndexOptions, IndexSummary, Progress};
pub use lock::IndexLock;
pub use search::{clamp_cosine, query_vector, Hit, Query, SearchOptions};
pub use searcher::{Searcher, SearcherOptions};
pub use store::{Caption, CaptionerInfo, FrameSet, ModelInfo, Store, StoredFrame, VectorSet};
pub use vector::Encoding;
pub use video::VideoOptions;
