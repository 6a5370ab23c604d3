//! Small helpers with no domain of their own that several seer crates need, kept
//! here so there is one of each: seer-ann and seer-plot depend on no other seer
//! crate, so the lowest shared crate has to be a new one.
//!
//! - [`fs`]: write a file or a folder atomically (temp beside it, then rename).
//! - [`per_process`]: a value made once per process and safe across `fork()`
//!   (thread pools).
//! - [`rng`]: the deterministic splitmix64 generator behind shuffles,
//!   augmentations, initial weights and HNSW levels.
//! - [`signals`]: whether a signal was ignored at start (the command line and
//!   the server leave such a signal ignored).

pub mod fs;
pub mod per_process;
pub mod rng;
pub mod signals;

pub use rng::Rng;
