//! One indexing run at a time per index: an exclusive advisory lock on
//! `<index>/index.lock`, whose content says who holds it.
//!
//! Two runs on the same index would each embed every new file (the database
//! stays consistent, but the work is done twice), so the second one is told who
//! is busy instead. The operating system drops the lock when its holder exits,
//! however it exits (even SIGKILL), so a killed run never blocks the next one;
//! the file itself stays, and its stale content is overwritten by the next holder.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{IndexError, Result};

pub const LOCK_FILE: &str = "index.lock";

/// How many times (5 ms apart) a lock held by nobody recorded is tried again
/// before it counts as busy: about half a second.
const GHOST_TRIES: u32 = 100;

/// Who holds the lock, as written into the lock file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    /// The program and its subcommand (not its arguments: they may hold a token).
    pub command: String,
    /// Seconds since the Unix epoch.
    pub started: u64,
}

impl Holder {
    fn this_process() -> Self {
        let command = std::env::args()
            .take(2)
            .enumerate()
            .map(|(i, a)| {
                if i == 0 {
                    Path::new(&a)
                        .file_name()
                        .map(|n| n.to_string_lossy().to_string())
                        .unwrap_or(a)
                } else {
                    a
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        Self {
            pid: std::process::id(),
            host: hostname(),
            command,
            started: now(),
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {}", self.pid)?;
        if !self.host.is_empty() {
            write!(f, " on {}", self.host)?;
        }
        write!(
            f,
            " ({}, started {} ago)",
            self.command,
            age(now().saturating_sub(self.started))
        )
    }
}

/// The held lock; dropping it releases it.
#[derive(Debug)]
pub struct IndexLock {
    file: File,
    /// False where the file system has no locks and the run goes on unguarded.
    held: bool,
}

impl IndexLock {
    /// Takes the lock of the index in `dir`, or fails with [`IndexError::Busy`]
    /// naming the holder.
    pub fn try_acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let mut file = open(&path)?;
        let mut tries = 0;
        let locked = loop {
            match file.try_lock() {
                Err(TryLockError::WouldBlock) => {
                    let holder = read_holder(&mut file);
                    // Nobody recorded: a holder that has just released it,
                    // whose descriptor a process this program is starting
                    // (ffmpeg) still shares until it runs its program. That
                    // lasts microseconds: try again a little before "busy".
                    if holder.is_none() && tries < GHOST_TRIES {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        continue;
                    }
                    return Err(IndexError::Busy {
                        index: dir.to_path_buf(),
                        holder,
                    });
                }
                Ok(()) => break None,
                Err(TryLockError::Error(e)) => break Some(e),
            }
        };
        match locked {
            None => Self::held(file, &path),
            // A file system without locks (some network mounts) must not stop
            // indexing altogether: go on unguarded, and say so.
            Some(e) => {
                tracing::warn!(
                    "{}: cannot lock ({e}); another run on this index would not be noticed",
                    path.display()
                );
                Ok(Self { file, held: false })
            }
        }
    }

    /// Takes the lock, waiting as long as another run holds it.
    pub fn acquire_waiting(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let file = open(&path)?;
        if let Err(e) = file.lock() {
            tracing::warn!(
                "{}: cannot lock ({e}); another run on this index would not be noticed",
                path.display()
            );
            return Ok(Self { file, held: false });
        }
        Self::held(file, &path)
    }

    /// Who holds the lock of the index in `dir` now, if anyone (without taking it).
    pub fn holder(dir: &Path) -> Option<Holder> {
        match Self::try_acquire(dir) {
            Err(IndexError::Busy { holder, .. }) => holder,
            _ => None,
        }
    }

    fn held(mut file: File, path: &Path) -> Result<Self> {
        let holder = serde_json::to_string(&Holder::this_process()).unwrap_or_default();
        let recorded = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(holder.as_bytes()));
        if let Err(e) = recorded {
            // Who holds the lock only feeds another run's "busy" message; the
            // lock itself is held. On a full disk a run that finds nothing to
            // do must still go through.
            tracing::warn!(
                "{}: cannot record who holds the lock ({e}); another run will say only that the index is busy",
                path.display()
            );
            let _ = file.set_len(0);
        }
        Ok(Self { file, held: true })
    }
}

impl Drop for IndexLock {
    fn drop(&mut self) {
        // Clear the holder first so nobody reads a finished run as the holder;
        // closing the file then releases the lock.
        if self.held {
            let _ = self.file.set_len(0);
        }
    }
}

fn open(path: &Path) -> Result<File> {
    // No truncation here: the holder's details must survive a contender's open.
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| file_error(path, e))
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

fn file_error(path: &Path, e: std::io::Error) -> IndexError {
    IndexError::io_doing(path, "cannot use the lock file", e)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn age(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

/// The machine's name (Linux), so a lock held on another host sharing the
/// folder (NFS) is recognisable; empty where unknown.
fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Writing who holds the lock can fail (a full disk) while the lock is
    /// held: the run goes on, and another one is told the index is busy.
    #[test]
    fn a_lock_whose_holder_cannot_be_recorded_is_still_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        std::fs::write(&path, b"").unwrap();
        // Read-only: the holder's write fails, as on a full disk.
        let file = File::open(&path).unwrap();
        file.try_lock().unwrap();
        let lock = IndexLock::held(file, &path).expect("held without the record");
        assert!(lock.held);
        match IndexLock::try_acquire(dir.path()) {
            Err(IndexError::Busy { holder, .. }) => assert!(holder.is_none(), "{holder:?}"),
            other => panic!("not busy: {:?}", other.map(|l| l.held)),
        }
    }

    /// A lock held with nobody recorded, released soon after (a child
    /// process sharing a run's descriptor until it starts its program: what
    /// made tests that lock twice fail beside tests that start ffmpeg), is
    /// waited for; one that stays is busy.
    #[test]
    fn a_lock_held_by_nobody_recorded_is_waited_for_briefly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        let ghost = open(&path).unwrap();
        ghost.try_lock().unwrap();
        let (taken, released) = std::sync::mpsc::channel();
        let releaser = std::thread::spawn(move || {
            taken.send(()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
            drop(ghost);
        });
        released.recv().unwrap();
        let lock = IndexLock::try_acquire(dir.path()).expect("taken once the ghost let go");
        assert!(lock.held);
        releaser.join().unwrap();
    }

    #[test]
    fn a_second_taker_is_refused_with_the_holder_until_release() {
        let dir = tempfile::tempdir().unwrap();
        let lock = IndexLock::try_acquire(dir.path()).unwrap();
        match IndexLock::try_acquire(dir.path()) {
            Err(IndexError::Busy { holder, .. }) => {
                let holder = holder.expect("the holder is named");
                assert_eq!(holder.pid, std::process::id());
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        drop(lock);
        assert!(IndexLock::holder(dir.path()).is_none());
        IndexLock::try_acquire(dir.path()).unwrap();
    }

    #[test]
    fn the_busy_message_says_who_and_what_to_do() {
        let e = IndexError::Busy {
            index: PathBuf::from("/idx"),
            holder: Some(Holder {
                pid: 1234,
                host: "box".into(),
                command: "seer index".into(),
                started: now() - 180,
            }),
        };
        assert_eq!(
            e.to_string(),
            "the index at /idx is being updated by pid 1234 on box (seer index, started 3 min ago); wait for it to finish (or pass --wait), or stop it"
        );
    }
}
