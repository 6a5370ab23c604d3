//! Thumbnails: a PNG at most 256 px on its longest side, cached in
//! `<index>/thumbnails/` under the content hash of the file (of a video: the
//! hash of its content and the frame's time, see [`frame_key`]).
//!
//! Keyed by content, not by row id: SQLite reuses the largest row id after a
//! delete, so an id-keyed cache could serve one file's thumbnail for another.
//! The cache is only looked at after the file itself passed the checks of
//! [`crate::files`], so no thumbnail outlives the file it shows being served.

use std::io::Read;
use std::path::{Path, PathBuf};

use seer_image::DecodeLimits;

const LONGEST_SIDE: f32 = 256.0;
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// The thumbnail PNG of image bytes (`name` appears in decode errors).
pub fn make(bytes: &[u8], name: &str, limits: &DecodeLimits) -> Result<Vec<u8>, MakeError> {
    let img = seer_image::decode_bytes(bytes, name, limits)?;
    Ok(png_of(&img)?)
}

/// The thumbnail PNG of decoded pixels (a photo's, or a video frame's).
pub fn png_of(img: &seer_image::image::RgbImage) -> Result<Vec<u8>, seer_image::image::ImageError> {
    let scale = (LONGEST_SIDE / img.width().max(img.height()) as f32).min(1.0);
    let size = |side: u32| ((side as f32 * scale).round() as u32).max(1);
    let thumb = seer_image::image::imageops::thumbnail(img, size(img.width()), size(img.height()));
    let mut png = Vec::new();
    thumb.write_to(
        &mut std::io::Cursor::new(&mut png),
        seer_image::image::ImageFormat::Png,
    )?;
    Ok(png)
}

/// The cache key of a video's frame at `time_ms`: its content AND the time,
/// so that frames of one video (and the video's photo-like key) never collide.
pub fn frame_key(hash: &[u8; 32], time_ms: i64) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"seer video frame\0");
    hasher.update(hash);
    hasher.update(&time_ms.to_le_bytes());
    *hasher.finalize().as_bytes()
}

#[derive(Debug, thiserror::Error)]
pub enum MakeError {
    #[error(transparent)]
    Decode(#[from] seer_image::ImageError),
    #[error("cannot encode the thumbnail: {0}")]
    Encode(#[from] seer_image::image::ImageError),
}

/// The cache of one index folder.
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn new(index_dir: &Path) -> Self {
        Self {
            dir: index_dir.join("thumbnails"),
        }
    }

    fn file(&self, hash: &[u8; 32]) -> PathBuf {
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{hex}.png"))
    }

    /// Whether the cache folder is a real folder of the index, not a symlink
    /// that would send reads and writes elsewhere.
    fn usable(&self) -> bool {
        std::fs::symlink_metadata(&self.dir).is_ok_and(|m| m.is_dir())
    }

    pub fn get(&self, hash: &[u8; 32]) -> Option<Vec<u8>> {
        if !self.usable() {
            return None;
        }
        let mut bytes = Vec::new();
        open_no_follow(&self.file(hash))
            .ok()?
            .take(16 << 20)
            .read_to_end(&mut bytes)
            .ok()?;
        bytes.starts_with(PNG_SIGNATURE).then_some(bytes)
    }

    /// Best effort: a read-only index folder just means no cache.
    pub fn put(&self, hash: &[u8; 32], png: &[u8]) {
        let _ = std::fs::create_dir(&self.dir);
        if !self.usable() {
            return;
        }
        // A temporary of its own per writer, created exclusively (never through
        // a symlink), then renamed into place: readers see a whole file or none.
        // A cache can be remade, so no fsync; a failed write leaves no temporary.
        let _ = seer_util::fs::write(self.file(hash), png, seer_util::fs::Durability::NoFsync);
    }
}

#[cfg(unix)]
fn open_no_follow(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open_no_follow(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_keyed_by_content_and_ignores_a_symlinked_folder() {
        let index = tempfile::tempdir().unwrap();
        let cache = Cache::new(index.path());
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let png = [PNG_SIGNATURE, b"rest"].concat();
        assert_eq!(cache.get(&a), None);
        cache.put(&a, &png);
        assert_eq!(cache.get(&a), Some(png.clone()));
        let names: Vec<_> = std::fs::read_dir(index.path().join("thumbnails"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            [cache.file(&a).file_name().unwrap()],
            "no temporary left"
        );
        assert_eq!(cache.get(&b), None, "another content has no thumbnail yet");

        // A `thumbnails` symlink out of the index folder is neither read nor written.
        let elsewhere = tempfile::tempdir().unwrap();
        let index2 = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), index2.path().join("thumbnails")).unwrap();
        let cache2 = Cache::new(index2.path());
        cache2.put(&a, &png);
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
        let name = cache2.file(&a).file_name().unwrap().to_owned();
        std::fs::write(elsewhere.path().join(name), &png).unwrap();
        assert_eq!(cache2.get(&a), None);
    }
}
