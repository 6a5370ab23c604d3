pub mod exif;
pub mod server;
