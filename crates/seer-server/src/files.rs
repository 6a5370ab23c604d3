//! Reading an indexed file for the image routes.
//!
//! The path the index recorded says nothing about what is on disk now: the file
//! may since have been replaced by a symlink to `/etc/passwd`, a folder by a
//! symlink out of the root, or the content changed. So a file is served only if
//! the index holds it as indexed (a vector of one of the server's models, no
//! recorded failure), and the file is opened ONCE and what was opened is checked — its
//! real path, resolved from the open descriptor rather than the path text, lies
//! under one of the roots' real paths; it is a regular file; its size and mtime
//! are those the index recorded — before a byte of it is read. Nothing is opened
//! a second time, so nothing can be swapped between the check and the read.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use seer_index::pathcodec::{display_stored, to_path};
use seer_index::store::StoredFile;
use seer_index::Store;

/// Why an id's file is not served. Every case but `Index` is "not found" for
/// the client; the details (real paths) go to the server's log, not the client.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("no indexed image {0}")]
    NotIndexed(i64),
    #[error("image {0} is not inside the index's folders")]
    Outside(i64),
    #[error("image {0} is not a regular file")]
    NotRegular(i64),
    #[error("image {0} changed since it was indexed; re-index to serve it")]
    Changed(i64),
    #[error("image {id} cannot be read: {source}")]
    Unreadable { id: i64, source: io::Error },
    #[error(transparent)]
    Index(#[from] seer_index::IndexError),
}

/// An indexed file, open and checked.
pub struct IndexedFile {
    file: File,
    pub record: StoredFile,
}

impl IndexedFile {
    pub fn path(&self) -> PathBuf {
        to_path(&self.record.path)
    }

    /// The real path of the checked file, resolved from its descriptor (on
    /// Linux): what ffmpeg, which opens files itself, is given.
    pub fn real_path(&self) -> Result<PathBuf, FileError> {
        let id = self.record.id;
        real_path(&self.file, &self.path()).map_err(|source| FileError::Unreadable { id, source })
    }

    /// The checked open file, for ffmpeg to read (a video's frames) rather
    /// than a path that could name another file by then.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The checked descriptor, for reading parts of the file (video ranges).
    pub fn into_file(self) -> (File, StoredFile) {
        (self.file, self.record)
    }

    /// The whole file, from the descriptor that was checked; a file that grew or
    /// shrank since the check is refused rather than served half-read.
    pub fn read_all(self) -> Result<Vec<u8>, FileError> {
        let id = self.record.id;
        let size = self.record.size as u64;
        let mut bytes = Vec::with_capacity(self.record.size as usize);
        self.file
            .take(size.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|source| FileError::Unreadable { id, source })?;
        if bytes.len() as u64 != size {
            return Err(FileError::Changed(id));
        }
        Ok(bytes)
    }
}

/// Opens the file of index id `id` if, and only if, it may be served (see the
/// module comment). `model_ids` are the index ids of the models the server
/// searches with; a vector of any one of them makes the file indexed.
pub fn open_indexed(store: &Store, model_ids: &[i64], id: i64) -> Result<IndexedFile, FileError> {
    let mut record = None;
    for &model_id in model_ids {
        record = store
            .file_by_id(id, model_id)?
            .filter(|r| r.error.is_none() && r.embedded);
        if record.is_some() {
            break;
        }
    }
    let record = record.ok_or(FileError::NotIndexed(id))?;
    let roots: Vec<PathBuf> = store
        .roots()?
        .iter()
        .filter_map(|r| to_path(r).canonicalize().ok())
        .collect();
    let path = &to_path(&record.path);
    let unreadable = |source| FileError::Unreadable { id, source };
    // A first look at the path before opening it, so that a symlink to a device
    // or FIFO elsewhere is never even opened; the check that counts is below,
    // on what was actually opened.
    let inside = |real: &Path, how: &str| {
        if under_any(real, &roots) {
            return Ok(());
        }
        tracing::warn!(
            "image {id}: {} {how} {}, outside the index's folders",
            display_stored(&record.path),
            real.display()
        );
        Err(FileError::Outside(id))
    };
    inside(&path.canonicalize().map_err(unreadable)?, "resolves to")?;
    let file = open_for_reading(path).map_err(unreadable)?;
    inside(&real_path(&file, path).map_err(unreadable)?, "opened")?;
    let meta = file.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Err(FileError::NotRegular(id));
    }
    if meta.len() as i64 != record.size || seer_index::scan::mtime_ns(&meta) != record.mtime_ns {
        return Err(FileError::Changed(id));
    }
    Ok(IndexedFile { file, record })
}

fn under_any(real: &Path, roots: &[PathBuf]) -> bool {
    // Component-wise: `/photos2/x` is not under `/photos`.
    roots.iter().any(|root| real.starts_with(root))
}

/// Opens for reading without blocking: a FIFO put in a file's place would
/// otherwise hang the opening thread until a writer appears.
#[cfg(unix)]
fn open_for_reading(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

#[cfg(not(unix))]
fn open_for_reading(path: &Path) -> io::Result<File> {
    File::open(path)
}

/// The real path of what `file` is, asked of the kernel about the descriptor.
#[cfg(target_os = "linux")]
fn real_path(file: &File, _path: &Path) -> io::Result<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// Without a descriptor-to-path call: resolve the path again and require that it
/// names the very file that was opened (same device and inode).
#[cfg(not(target_os = "linux"))]
fn real_path(file: &File, path: &Path) -> io::Result<PathBuf> {
    let real = path.canonicalize()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let (opened, named) = (file.metadata()?, std::fs::symlink_metadata(&real)?);
        if (opened.dev(), opened.ino()) != (named.dev(), named.ino()) {
            return Err(io::Error::other(
                "the file was replaced while it was opened",
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(real)
}
