//! The shared seeded generator lives in seer-util; this path stays for callers.

pub use seer_util::rng::*;
