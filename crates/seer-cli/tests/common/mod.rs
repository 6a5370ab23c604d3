pub mod exif;
pub mod runs;
pub mod server;
pub mod video;
