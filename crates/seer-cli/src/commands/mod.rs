pub mod bench;
pub mod classify;
pub mod embed;
pub mod eval;
pub mod models;
