//! Atomic writes: the new content goes to a temporary file (or folder) created
//! beside the destination, then is renamed over it, so a reader — or the next
//! run after a crash — sees the old content or the new one, never half of it.
//!
//! The temporary is created exclusively under a fresh random name (`tempfile`:
//! `O_EXCL`, so never through a symlink planted at that name, and two writers
//! never share one), named `.<dest name>.<random>.tmp` so leftovers are easy to
//! recognise, and removed again when the write fails or is dropped unfinished.
//! A crash can still leave one behind: loaders ignore such names.
//!
//! A destination that is a device, a pipe or a socket (`--out /dev/null`, a
//! named pipe another program reads) is written in place instead: renaming
//! over it would replace the device node with a regular file (as root,
//! `/dev/null` itself), and it has no earlier content to keep.
//!
//! Callers wrap the `io::Error`s with the path they report to users.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tempfile::{NamedTempFile, TempDir};

/// How hard a commit works to survive a power loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Data flushed to disk before the rename and the folder after it: once the
    /// commit returns, the new content survives a power loss (checkpoints, index
    /// metadata, outputs a later run resumes from).
    Fsync,
    /// Atomic for readers but not synced: after a power loss the old content, or
    /// an empty file, may come back (caches and other content that can be remade).
    NoFsync,
}

/// A file being written that replaces `dest` on [`AtomicFile::commit`]; dropped
/// without a commit, it leaves `dest` untouched and removes its temporary.
#[derive(Debug)]
pub struct AtomicFile {
    target: Target,
    dest: PathBuf,
    durability: Durability,
}

/// Where an [`AtomicFile`]'s bytes go before its commit.
#[derive(Debug)]
enum Target {
    /// A temporary beside the destination, renamed over it on commit.
    Temporary(NamedTempFile),
    /// The destination itself, opened for writing: a device, pipe or socket.
    InPlace(File),
}

impl AtomicFile {
    /// A new empty temporary beside `dest` (which need not exist; its folder
    /// must), or `dest` itself opened for writing when it is a device, pipe
    /// or socket (see the module comment).
    pub fn create(dest: impl AsRef<Path>, durability: Durability) -> io::Result<Self> {
        let dest = dest.as_ref();
        if is_device_pipe_or_socket(dest) {
            let file = std::fs::OpenOptions::new().write(true).open(dest)?;
            return Ok(Self {
                target: Target::InPlace(file),
                dest: dest.to_path_buf(),
                durability,
            });
        }
        let (dir, prefix) = beside(dest)?;
        let mut builder = tempfile::Builder::new();
        builder
            .prefix(&prefix)
            .rand_bytes(RANDOM_CHARS)
            .suffix(".tmp");
        // As `File::create` would: the process umask decides, not tempfile's 0600.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
        let tmp = builder.tempfile_in(dir)?;
        Ok(Self {
            target: Target::Temporary(tmp),
            dest: dest.to_path_buf(),
            durability,
        })
    }

    /// The open temporary file (or the device, pipe or socket written in place).
    pub fn file(&mut self) -> &mut File {
        match &mut self.target {
            Target::Temporary(tmp) => tmp.as_file_mut(),
            Target::InPlace(file) => file,
        }
    }

    /// Where the content goes on commit.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Syncs what was written so far to disk (nothing for a device, pipe or
    /// socket written in place). For files written as a set and put in place
    /// together: a file system that allocates late (ext4, XFS) reports a full
    /// disk only at the sync, which must come before any of them is in place.
    pub fn sync(&mut self) -> io::Result<()> {
        match &self.target {
            Target::Temporary(tmp) => tmp.as_file().sync_all(),
            Target::InPlace(_) => Ok(()),
        }
    }

    /// Renames the temporary over the destination (syncing first and after, for
    /// [`Durability::Fsync`]). On error the temporary is removed.
    /// A device, pipe or socket written in place has nothing to rename or
    /// sync: its commit only flushes.
    pub fn commit(self) -> io::Result<()> {
        let tmp = match self.target {
            Target::Temporary(tmp) => tmp,
            Target::InPlace(mut file) => return file.flush(),
        };
        if self.durability == Durability::Fsync {
            tmp.as_file().sync_all()?;
        }
        tmp.persist(&self.dest).map_err(|e| e.error)?;
        if self.durability == Durability::Fsync {
            sync_parent(&self.dest)?;
        }
        Ok(())
    }
}

/// Whether `path` exists and is neither a regular file nor a folder (through
/// symlinks): a device, a pipe or a socket, which [`AtomicFile`] writes in
/// place and beside which nothing should be created.
pub fn is_device_pipe_or_socket(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file().write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file().write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file().flush()
    }
}

/// Replaces `dest` with `bytes` atomically.
pub fn write(dest: impl AsRef<Path>, bytes: &[u8], durability: Durability) -> io::Result<()> {
    let mut f = AtomicFile::create(dest, durability)?;
    f.write_all(bytes)?;
    f.commit()
}

/// A folder being filled that replaces the folder `dest` on
/// [`AtomicDir::commit`]; dropped without a commit, it is removed with its content.
#[derive(Debug)]
pub struct AtomicDir {
    tmp: TempDir,
    dest: PathBuf,
    durability: Durability,
}

impl AtomicDir {
    /// A new empty temporary folder beside `dest` (whose parent must exist).
    pub fn create(dest: impl AsRef<Path>, durability: Durability) -> io::Result<Self> {
        let dest = dest.as_ref();
        let (dir, prefix) = beside(dest)?;
        let tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .rand_bytes(RANDOM_CHARS)
            .suffix(".tmp")
            .tempdir_in(dir)?;
        Ok(Self {
            tmp,
            dest: dest.to_path_buf(),
            durability,
        })
    }

    /// The temporary folder to fill.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Removes whatever is at `dest` and renames the temporary folder there. With
    /// [`Durability::Fsync`] the files directly inside it are synced first and the
    /// parent folder after. A folder cannot be renamed over a non-empty one, so a
    /// crash between the removal and the rename leaves no `dest` at all (but never
    /// a partial one). On error the temporary folder is removed.
    pub fn commit(self) -> io::Result<()> {
        if self.durability == Durability::Fsync {
            for entry in std::fs::read_dir(self.tmp.path())? {
                let entry = entry?;
                if entry.file_type()?.is_file() {
                    File::open(entry.path())?.sync_all()?;
                }
            }
            sync_dir(self.tmp.path())?;
        }
        match std::fs::symlink_metadata(&self.dest) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&self.dest)?,
            Ok(_) => std::fs::remove_file(&self.dest)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::rename(self.tmp.path(), &self.dest)?;
        // Renamed away: nothing left for the guard to clean up.
        let _ = self.tmp.keep();
        if self.durability == Durability::Fsync {
            sync_parent(&self.dest)?;
        }
        Ok(())
    }
}

/// Random characters in a temporary's name (`.<dest name>.<random>.tmp`).
const RANDOM_CHARS: usize = 6;

/// The destination a temporary of [`AtomicFile`] or [`AtomicDir`] named
/// `path` was to become, read back from its name; `None` for any other name.
/// Here, beside [`beside`], so the name is made and read in one place.
pub fn destination_of_temporary(path: &Path) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let name = path.file_name()?.as_bytes();
    let inner = name.strip_prefix(b".")?.strip_suffix(b".tmp")?;
    let (dest, random) = inner.split_at(inner.len().checked_sub(RANDOM_CHARS + 1)?);
    let random = random.strip_prefix(b".")?;
    if dest.is_empty() || !random.iter().all(u8::is_ascii_alphanumeric) {
        return None;
    }
    Some(path.with_file_name(std::ffi::OsStr::from_bytes(dest)))
}

/// The folder a temporary for `dest` goes in, and its name prefix `.<name>.`.
fn beside(dest: &Path) -> io::Result<(&Path, OsString)> {
    let name = dest.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file name", dest.display()),
        )
    })?;
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    Ok((dir, prefix))
}

/// Fsyncs the folder holding `path`, which makes a rename into it durable.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => sync_dir(d),
        _ => sync_dir(Path::new(".")),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    // Only Unix can open and fsync a folder; elsewhere the rename is as durable
    // as the platform makes it.
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A named pipe is written through, not replaced by a regular file (nor
    /// would `/dev/null` be, which cannot be tested safely: as root a failure
    /// would replace the machine's own).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_pipe_is_written_in_place() {
        use std::io::Read;
        use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // O_NONBLOCK: the reader opens at once, so the writer's open does not
        // wait, and a read finds what was written or nothing, never blocks.
        const O_NONBLOCK: i32 = 0o4000;
        let mut reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        for durability in [Durability::Fsync, Durability::NoFsync] {
            let mut f = AtomicFile::create(&fifo, durability).unwrap();
            f.write_all(b"through").unwrap();
            f.commit().unwrap();
            let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
            assert!(kind.is_fifo(), "{kind:?}");
            let mut got = [0u8; 7];
            reader.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"through");
        }
        assert_eq!(names(dir.path()), ["pipe"]);
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_file_is_invisible_until_committed_then_replaces_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.bin");
        std::fs::write(&dest, b"old").unwrap();
        for durability in [Durability::Fsync, Durability::NoFsync] {
            let mut f = AtomicFile::create(&dest, durability).unwrap();
            f.write_all(b"new content").unwrap();
            assert_eq!(std::fs::read(&dest).unwrap(), b"old", "not yet committed");
            let tmp_name = names(dir.path())
                .into_iter()
                .find(|n| n != "out.bin")
                .unwrap();
            assert!(tmp_name.starts_with(".out.bin.") && tmp_name.ends_with(".tmp"));
            f.commit().unwrap();
            assert_eq!(std::fs::read(&dest).unwrap(), b"new content");
            assert_eq!(names(dir.path()), ["out.bin"], "no temporary left");
            std::fs::write(&dest, b"old").unwrap();
        }
        write(&dest, b"whole", Durability::Fsync).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"whole");
        assert_eq!(names(dir.path()), ["out.bin"]);
    }

    #[test]
    fn a_failed_or_abandoned_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("keep.txt");
        std::fs::write(&dest, b"old").unwrap();

        // Dropped unfinished (the filler returned an error before commit).
        let fill = |f: &mut AtomicFile| -> io::Result<()> {
            f.write_all(b"partial")?;
            Err(io::Error::other("encoder failed"))
        };
        let mut f = AtomicFile::create(&dest, Durability::Fsync).unwrap();
        assert!(fill(&mut f).is_err());
        drop(f);
        assert_eq!(std::fs::read(&dest).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["keep.txt"]);

        // The rename itself fails: a non-empty folder is in the way.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("inside"), b"x").unwrap();
        assert!(write(&blocked, b"data", Durability::NoFsync).is_err());
        assert_eq!(names(dir.path()), ["blocked", "keep.txt"]);

        // No folder to put the temporary in.
        assert!(write(dir.path().join("missing/x"), b"data", Durability::NoFsync).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_committed_file_has_the_permissions_file_create_gives() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        File::create(&plain).unwrap();
        let atomic = dir.path().join("atomic");
        write(&atomic, b"x", Durability::NoFsync).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&atomic), mode(&plain));
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_at_the_destination_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("victim");
        std::fs::write(&target, b"untouched").unwrap();
        let dest = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &dest).unwrap();
        write(&dest, b"new", Durability::NoFsync).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"untouched");
        assert!(!std::fs::symlink_metadata(&dest).unwrap().is_symlink());
        assert_eq!(std::fs::read(&dest).unwrap(), b"new");
    }

    #[test]
    fn a_folder_replaces_the_old_one_whole_or_not_at_all() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("model");
        std::fs::create_dir(&dest).unwrap();
        std::fs::write(dest.join("stale.bin"), b"old").unwrap();

        let abandoned = AtomicDir::create(&dest, Durability::Fsync).unwrap();
        std::fs::write(abandoned.path().join("half"), b"x").unwrap();
        drop(abandoned);
        assert_eq!(names(root.path()), ["model"]);
        assert_eq!(names(&dest), ["stale.bin"]);

        let fresh = AtomicDir::create(&dest, Durability::Fsync).unwrap();
        assert!(fresh
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".model."));
        std::fs::write(fresh.path().join("config.json"), b"{}").unwrap();
        fresh.commit().unwrap();
        assert_eq!(names(root.path()), ["model"]);
        assert_eq!(names(&dest), ["config.json"]);

        // A missing destination is created.
        let other = root.path().join("other");
        let d = AtomicDir::create(&other, Durability::NoFsync).unwrap();
        d.commit().unwrap();
        assert!(other.is_dir());
    }
}
