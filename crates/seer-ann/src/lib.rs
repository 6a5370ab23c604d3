//! Nearest-neighbour search over embeddings for seer.
//!
//! - [`exact_top_k`] / [`exact_top_k_filtered`] / [`exact_top_k_batch`]: SIMD brute
//!   force over an f32 matrix, exact, parallel for large inputs.
//! - [`Hnsw`]: an approximate index (HNSW graph, f16 vectors) with inserts, deletes
//!   (tombstones + neighbour repair), filtered search and crash-safe incremental
//!   persistence.
//! - [`prefer_exact`]: the size threshold below which brute force is both exact and
//!   fast enough, so callers can switch automatically.
//!
//! Scores are dot products; for L2-normalised vectors (CLIP embeddings) that is the
//! cosine similarity.

mod error;
mod exact;
mod hnsw;
mod persist;
pub mod simd;

pub use error::AnnError;
pub use exact::{exact_top_k, exact_top_k_batch, exact_top_k_filtered};
pub use hnsw::{Hnsw, HnswParams};
pub use persist::{log_path, SaveKind};

/// Collections with at most this many matrix elements (`n * dim`) are searched
/// exactly: at 25M f32 elements (~49k vectors of 512-d, 100 MB) one brute-force
/// query takes ~5 ms on 2 cores, the same budget the HNSW index is tuned for,
/// with perfect recall and no index to build or keep in sync.
pub const EXACT_MAX_ELEMENTS: usize = 25_000_000;

/// Whether a collection of `n` vectors of `dim` dimensions should use exact search
/// rather than the approximate index.
pub fn prefer_exact(n: usize, dim: usize) -> bool {
    n.saturating_mul(dim) <= EXACT_MAX_ELEMENTS
}

#[cfg(test)]
mod send_sync {
    fn assert_send_sync<T: Send + Sync>() {}
    #[test]
    fn hnsw_is_send_and_sync() {
        assert_send_sync::<super::Hnsw>();
    }
}
