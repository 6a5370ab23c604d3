pub mod bench;
pub mod classify;
pub mod embed;
pub mod eval;
pub mod index;
pub mod models;
pub mod search;
pub mod status;
