use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(
        "{}: index database error: {source}",
        crate::pathcodec::display_path(path)
    )]
    Database {
        path: PathBuf,
        source: rusqlite::Error,
    },

    /// The device holding the index refused to store more: SQLite could not
    /// grow the database, its log or its shared-memory file. Said in words
    /// rather than as SQLite's code ("disk I/O error: Error code 4874"), so a
    /// user sees that freeing space is the cure.
    #[error("{}: {}: {what}", crate::pathcodec::display_path(path), no_room_cause(*.errno))]
    NoSpace {
        path: PathBuf,
        /// The operating system's error, where SQLite recorded one.
        errno: Option<i32>,
        /// What could not be done, and what it means for the index.
        what: &'static str,
        /// Boxed: the variant would make every `Result` of this crate larger.
        source: Box<rusqlite::Error>,
    },

    #[error("{}: {message}", crate::pathcodec::display_path(path))]
    File { path: PathBuf, message: String },

    /// The folder holds no index (yet): nothing was indexed there, or the
    /// first run did not get as far as creating it. Its own variant so that
    /// callers can tell "nothing here" from a damaged index (the server
    /// answers it as a state, not as a failure).
    #[error("{}: no index here yet ({hint})", crate::pathcodec::display_path(path))]
    NoIndexYet { path: PathBuf, hint: &'static str },

    /// A file operation failed: `doing` (if any) says which, then the I/O error.
    #[error("{}: {}{source}", crate::pathcodec::display_path(path), .doing.map(|d| format!("{d}: ")).unwrap_or_default())]
    Io {
        path: PathBuf,
        doing: Option<&'static str>,
        #[source]
        source: std::io::Error,
    },

    #[error("the index at {} has no vectors for model '{model}' (it has: {available}); index with that model first, or pass --model with one of those", crate::pathcodec::display_path(index))]
    ModelMismatch {
        index: PathBuf,
        model: String,
        available: String,
    },

    #[error("the index at {} holds vectors of several models ({}); choose one with --model", crate::pathcodec::display_path(.0), .1)]
    AmbiguousModel(PathBuf, String),

    #[error("{0}")]
    Invalid(String),

    #[error("the index at {} is being updated by {}; wait for it to finish (or pass --wait), or stop it", crate::pathcodec::display_path(index), holder.as_ref().map_or_else(|| "another process".to_string(), |h| h.to_string()))]
    Busy {
        index: PathBuf,
        holder: Option<crate::lock::Holder>,
    },

    #[error("{}: holds {found}-d vectors, but model '{model}' makes {expected}-d vectors; import them with the model that made them", crate::pathcodec::display_path(path))]
    DimensionMismatch {
        path: PathBuf,
        model: String,
        expected: usize,
        found: usize,
    },

    /// The caller asked a long operation to stop (see `dupes::Watch::stop`).
    #[error("interrupted")]
    Interrupted,

    #[error(transparent)]
    Engine(#[from] seer_engine::EngineError),

    #[error(transparent)]
    Ann(#[from] seer_ann::AnnError),
}

pub type Result<T> = std::result::Result<T, IndexError>;

impl IndexError {
    /// A database error on the file `path`; `errno` is the operating system's
    /// error behind it, where SQLite recorded one (`sqlite3_system_errno`).
    pub(crate) fn database(path: PathBuf, source: rusqlite::Error, errno: Option<i32>) -> Self {
        match out_of_space(&source, errno) {
            Some(what) => IndexError::NoSpace {
                path,
                errno: errno.filter(|n| NO_ROOM.contains(n)),
                what,
                source: Box::new(source),
            },
            None => IndexError::Database { path, source },
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        IndexError::Io {
            path: path.into(),
            doing: None,
            source,
        }
    }

    /// An I/O error while `doing` something ("cannot create the index folder").
    pub(crate) fn io_doing(
        path: impl Into<PathBuf>,
        doing: &'static str,
        source: std::io::Error,
    ) -> Self {
        IndexError::Io {
            path: path.into(),
            doing: Some(doing),
            source,
        }
    }
}

/// Operating system errors that mean the device (or the user's quota, or the
/// process's file size limit) has no room for more.
const NO_ROOM: [i32; 3] = [
    28,  // ENOSPC
    27,  // EFBIG: RLIMIT_FSIZE, or a file system's largest file
    122, // EDQUOT (Linux)
];

/// The operating system's words for a full disk: its own message when SQLite
/// recorded the error number, else ENOSPC's.
fn no_room_cause(errno: Option<i32>) -> String {
    match errno {
        Some(n) => std::io::Error::from_raw_os_error(n).to_string(),
        None => "No space left on device".into(),
    }
}

/// When `source` says the disk is full: what failed. SQLite reports a full
/// disk as SQLITE_FULL when the database or its log cannot grow, but as an
/// I/O error (`SQLITE_IOERR_SHMSIZE`, ...) when its shared-memory file
/// cannot: only the errno tells those apart from other I/O errors.
fn out_of_space(source: &rusqlite::Error, errno: Option<i32>) -> Option<&'static str> {
    let rusqlite::Error::SqliteFailure(e, _) = source else {
        return None;
    };
    match e.code {
        rusqlite::ErrorCode::DiskFull => Some(
            "the index database could not grow (what was stored before is kept; free some space and run again)",
        ),
        rusqlite::ErrorCode::SystemIoFailure
        | rusqlite::ErrorCode::CannotOpen
        | rusqlite::ErrorCode::ReadOnly
            if errno.is_some_and(|n| NO_ROOM.contains(&n)) =>
        {
            Some(
                "SQLite could not write the index database or the files it keeps beside it \
                 (-wal, -shm); free some space and run again",
            )
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn io_errors_keep_their_source_and_read_as_before() {
        let cause = || std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let e = IndexError::io("/idx/x", cause());
        assert_eq!(e.to_string(), "/idx/x: denied");
        let e = IndexError::io_doing("/idx/.lock", "cannot use the lock file", cause());
        assert_eq!(
            e.to_string(),
            "/idx/.lock: cannot use the lock file: denied"
        );
        let source = e.source().expect("the io::Error is the source");
        assert_eq!(
            source.downcast_ref::<std::io::Error>().map(|e| e.kind()),
            Some(std::io::ErrorKind::PermissionDenied)
        );
    }
}
