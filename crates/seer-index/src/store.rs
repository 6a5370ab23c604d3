//! The index database: one SQLite file in WAL mode, the single source of truth.
//!
//! Every change is made inside a transaction, so a process killed at any moment
//! leaves the database as of its last commit (WAL recovery does the rest), and
//! readers (searches) run concurrently with a writer (indexing).
//!
//! Schema version 2 added captions (`seer index --caption-model`): a caption
//! per file and caption model, and an FTS5 index of their words. Opening a
//! version 1 file for writing migrates it in one transaction (new tables only,
//! nothing rewritten); opening one read-only reads it as an index without captions.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction};

use crate::error::{IndexError, Result};
use crate::vector::Encoding;

mod frames;
pub use frames::{FrameSet, StoredFrame};

const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    dim INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS roots (path TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    hash BLOB,
    width INTEGER,
    height INTEGER,
    taken_at TEXT,
    error TEXT
);
-- What the latest walk of each root could not read or follow (path, cause).
-- Added without a version bump: older indexes gain it when opened for writing,
-- and readers treat a missing table as no errors.
CREATE TABLE IF NOT EXISTS walk_errors (path TEXT PRIMARY KEY, error TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS files_hash ON files(hash);
CREATE INDEX IF NOT EXISTS files_size ON files(size);
CREATE TABLE IF NOT EXISTS embeddings (
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    model_id INTEGER NOT NULL REFERENCES models(id),
    encoding INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (file_id, model_id)
) WITHOUT ROWID;
";

/// Version 2: captions. A caption belongs to a file row, which stands for one
/// content (see [`write::upsert_file`]), so a changed file loses its captions
/// with its vectors (`ON DELETE CASCADE`) and is captioned again.
///
/// Caption words are searched through FTS5, over the `captions` table as
/// external content kept in step by triggers. The tokenizer is `porter
/// unicode61 remove_diacritics 2`: captioning models write English, so Porter
/// stemming lets "dogs running" find "a dog runs"; unicode61 splits on Unicode
/// word boundaries, folds case and (with `remove_diacritics 2`) accents, so
/// "cafe" finds "café". Writes use upserts, never `INSERT OR REPLACE`, whose
/// deletions would not fire the delete trigger.
const CAPTION_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS captioners (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS captions (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    captioner_id INTEGER NOT NULL REFERENCES captioners(id) ON DELETE CASCADE,
    text TEXT NOT NULL,
    UNIQUE (file_id, captioner_id)
);
CREATE VIRTUAL TABLE IF NOT EXISTS captions_fts USING fts5(
    text, content = 'captions', content_rowid = 'id',
    tokenize = 'porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS captions_inserted AFTER INSERT ON captions BEGIN
    INSERT INTO captions_fts (rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS captions_deleted AFTER DELETE ON captions BEGIN
    INSERT INTO captions_fts (captions_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TRIGGER IF NOT EXISTS captions_updated AFTER UPDATE ON captions BEGIN
    INSERT INTO captions_fts (captions_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO captions_fts (rowid, text) VALUES (new.id, new.text);
END;
";

pub const DATABASE_FILE: &str = "index.sqlite";

/// Which database state a derived structure reflects: the commit counter and
/// the random token its last bump drew (0 when an older seer made that bump).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenerationStamp {
    pub counter: u64,
    pub token: u64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ModelInfo {
    pub id: i64,
    pub name: String,
    pub dim: usize,
    pub vectors: usize,
}

/// What the index knows about one file.
#[derive(Clone, Debug)]
pub struct StoredFile {
    pub id: i64,
    pub path: String,
    pub size: i64,
    pub mtime_ns: i64,
    pub hash: Option<[u8; 32]>,
    pub error: Option<String>,
    /// Whether it has a vector of the model being indexed.
    pub embedded: bool,
}

/// A file's metadata as indexing found it.
#[derive(Clone, Debug, Default)]
pub struct FileRecord {
    pub path: String,
    pub size: i64,
    pub mtime_ns: i64,
    pub hash: Option<[u8; 32]>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub taken_at: Option<String>,
}

/// What the index stores about one file, for showing it (the page's detail view).
#[derive(Clone, Debug, serde::Serialize)]
pub struct FileMeta {
    pub id: i64,
    pub path: String,
    /// Bytes.
    pub size: i64,
    /// Modification time, seconds since the Unix epoch.
    pub modified: f64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// EXIF capture time, "YYYY-MM-DD HH:MM:SS" (camera local time), when the file has one.
    pub taken_at: Option<String>,
}

/// All vectors of one model, row-aligned with their file ids and paths.
#[derive(Clone, Debug, Default)]
pub struct VectorSet {
    pub dim: usize,
    pub ids: Vec<i64>,
    pub paths: Vec<String>,
    pub data: Vec<f32>,
}

impl VectorSet {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// A caption model the index holds captions of.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CaptionerInfo {
    pub id: i64,
    pub name: String,
    pub captions: usize,
}

/// A file's caption, and the model that wrote it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Caption {
    pub text: String,
    pub model: String,
}

/// A file a caption run considers: indexed (no recorded failure) and without a
/// caption by the caption model.
#[derive(Clone, Debug)]
pub struct Uncaptioned {
    pub id: i64,
    pub path: String,
    pub size: i64,
    pub hash: Option<[u8; 32]>,
    /// A video (it has frames, or a video's name): captioned by one frame.
    pub video: bool,
}

pub struct Store {
    conn: Connection,
    dir: PathBuf,
    /// Whether the caption tables exist (schema version 2; a version 1 file
    /// opened read-only has none, and reads as an index without captions).
    captions: bool,
}

/// The columns [`stored_file`] reads; `?1` is the model whose vector is asked about.
const STORED_FILE_COLUMNS: &str = "SELECT f.id, f.path, f.size, f.mtime_ns, f.hash, f.error,
        EXISTS (SELECT 1 FROM embeddings e WHERE e.file_id = f.id AND e.model_id = ?1)
    FROM files f";

fn stored_file(r: &rusqlite::Row) -> rusqlite::Result<StoredFile> {
    Ok(StoredFile {
        id: r.get(0)?,
        path: r.get(1)?,
        size: r.get(2)?,
        mtime_ns: r.get(3)?,
        hash: r
            .get::<_, Option<Vec<u8>>>(4)?
            .and_then(|h| h.try_into().ok()),
        error: r.get(5)?,
        embedded: r.get(6)?,
    })
}

/// The operating system's error behind the last failure on `conn`, where
/// SQLite recorded one.
fn system_errno(conn: &Connection) -> Option<i32> {
    // SAFETY: `handle` is the live connection `conn` owns, used on this thread
    // only for the duration of the call; sqlite3_system_errno reads a field of
    // it and changes nothing.
    let errno = unsafe { rusqlite::ffi::sqlite3_system_errno(conn.handle()) };
    (errno != 0).then_some(errno)
}

/// Whether a read-only open failed for want of the shared-memory file (it
/// could not be made, grown or mapped: a full or read-only disk).
fn without_shared_memory(e: &rusqlite::Error) -> bool {
    use rusqlite::ffi;
    let rusqlite::Error::SqliteFailure(e, _) = e else {
        return false;
    };
    matches!(
        e.extended_code,
        ffi::SQLITE_IOERR_SHMOPEN
            | ffi::SQLITE_IOERR_SHMSIZE
            | ffi::SQLITE_IOERR_SHMMAP
            | ffi::SQLITE_IOERR_SHMLOCK
            | ffi::SQLITE_READONLY_CANTINIT
            | ffi::SQLITE_READONLY_RECOVERY
            | ffi::SQLITE_CANTOPEN
            | ffi::SQLITE_FULL
    )
}

/// Whether the database's write-ahead log holds no commits (empty or absent):
/// then the database file alone is the whole index.
fn wal_is_empty(database: &Path) -> bool {
    let mut wal = database.as_os_str().to_owned();
    wal.push("-wal");
    match std::fs::metadata(&wal) {
        Ok(m) => m.len() == 0,
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// An SQLite URI that opens `path` read-only as immutable. Every byte but
/// unreserved ones is percent-encoded, so any file name (`?`, `#`, `%`,
/// bytes that are not UTF-8) names the file it is.
fn immutable_uri(path: &Path) -> String {
    #[cfg(unix)]
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).to_vec();
    #[cfg(not(unix))]
    let bytes = path.to_string_lossy().into_owned().into_bytes();
    let mut uri = String::from("file:");
    for b in bytes {
        if b.is_ascii_alphanumeric() || b"/._-~".contains(&b) {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?mode=ro&immutable=1");
    uri
}

/// An index path that names something other than a folder (a file given as
/// `--index` by mistake) is said to be one, rather than "no index here yet"
/// (reading) or the operating system's "File exists" (writing).
fn refuse_a_non_folder(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => Err(IndexError::File {
            path: dir.to_path_buf(),
            message: "is a file, not an index folder; give a folder for --index".into(),
        }),
        _ => Ok(()),
    }
}

impl Store {
    /// Opens (creating if needed) the index in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        refuse_a_non_folder(dir)?;
        std::fs::create_dir_all(dir)
            .map_err(|e| IndexError::io_doing(dir, "cannot create the index folder", e))?;
        let path = dir.join(DATABASE_FILE);
        let conn = Connection::open(&path)
            .map_err(|source| IndexError::database(path.clone(), source, None))?;
        let mut store = Self {
            conn,
            dir: dir.to_path_buf(),
            captions: false,
        };
        store.configure()?;
        store.migrate()?;
        store.captions = true;
        Ok(store)
    }

    /// Opens an existing index for reading only (searching while another process indexes).
    ///
    /// Every reader of a WAL database needs SQLite's shared-memory file
    /// (`index.sqlite-shm`), which SQLite makes (or grows) on the first read:
    /// on a full disk, or a read-only one, it cannot. When the log
    /// (`index.sqlite-wal`) is then empty or absent, the database file holds
    /// every commit, and it is read as immutable instead (no shared memory, no
    /// locks), so a full disk does not keep anyone from searching. No writer
    /// can be at work then: it would need that shared memory itself.
    pub fn open_read_only(dir: &Path) -> Result<Self> {
        refuse_a_non_folder(dir)?;
        let path = dir.join(DATABASE_FILE);
        if !path.is_file() {
            return Err(IndexError::NoIndexYet {
                path: dir.to_path_buf(),
                hint: "run `seer index PATH` first",
            });
        }
        let conn = match Self::read_only_connection(&path, false) {
            Ok(conn) => conn,
            Err((source, errno)) if without_shared_memory(&source) && wal_is_empty(&path) => {
                tracing::debug!(
                    "{}: no shared memory for SQLite ({source}); reading the database file as immutable",
                    path.display()
                );
                // Failing that too, the first failure is the one to report.
                Self::read_only_connection(&path, true)
                    .map_err(|_| IndexError::database(path.clone(), source, errno))?
            }
            Err((source, errno)) => return Err(IndexError::database(path, source, errno)),
        };
        let mut store = Self {
            conn,
            dir: dir.to_path_buf(),
            captions: false,
        };
        store.captions = store.check_version()? >= 2;
        Ok(store)
    }

    /// A read-only connection to `path` that has read the schema (which is when
    /// SQLite needs its shared memory); `immutable` reads the file alone. On
    /// failure, SQLite's error and the operating system's error behind it.
    fn read_only_connection(
        path: &Path,
        immutable: bool,
    ) -> std::result::Result<Connection, (rusqlite::Error, Option<i32>)> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = if immutable {
            Connection::open_with_flags(immutable_uri(path), flags | OpenFlags::SQLITE_OPEN_URI)
        } else {
            Connection::open_with_flags(path, flags)
        }
        .map_err(|e| (e, None))?;
        let probe = conn
            .busy_timeout(std::time::Duration::from_secs(10))
            .and_then(|()| {
                conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                    r.get::<_, i64>(0)
                })
            });
        match probe {
            Ok(_) => Ok(conn),
            Err(e) => {
                let errno = system_errno(&conn);
                Err((e, errno))
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn db(&self, source: rusqlite::Error) -> IndexError {
        IndexError::database(
            self.dir.join(DATABASE_FILE),
            source,
            system_errno(&self.conn),
        )
    }

    /// Turns database errors into errors naming this index's file, without
    /// borrowing the store (usable while a transaction holds it).
    pub(crate) fn error_mapper(&self) -> impl Fn(rusqlite::Error) -> IndexError {
        let path = self.dir.join(DATABASE_FILE);
        move |source| IndexError::database(path.clone(), source, None)
    }

    fn configure(&self) -> Result<()> {
        // WAL: readers never block the writer; NORMAL sync is crash-safe in WAL mode
        // (a power cut may lose the last commits, never corrupt the file).
        self.conn
            .execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
            )
            .map_err(|e| self.db(e))?;
        self.conn
            .busy_timeout(std::time::Duration::from_secs(30))
            .map_err(|e| self.db(e))
    }

    fn migrate(&self) -> Result<()> {
        // One transaction from the first table to the version: a new index
        // whose creation failed part way (a full disk) is left empty, not with
        // tables but no version, which readers could not tell from damage.
        let tx = self.conn.unchecked_transaction().map_err(|e| self.db(e))?;
        tx.execute_batch(SCHEMA).map_err(|e| self.db(e))?;
        tx.execute_batch(frames::FRAMES_SCHEMA)
            .map_err(|e| self.db(e))?;
        let version = self.meta("schema_version")?;
        match version.as_deref() {
            None => {
                // A new index: the whole schema, then its version.
                tx.execute_batch(CAPTION_SCHEMA).map_err(|e| self.db(e))?;
                tx.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?1), ('generation', '0')",
                    [SCHEMA_VERSION.to_string()],
                )
                .map_err(|e| self.db(e))?;
                tx.commit().map_err(|e| self.db(e))
            }
            Some("1") => {
                // Version 1 -> 2: the caption tables are added and the version
                // raised in one transaction, so a crash leaves either version
                // whole; files, vectors and roots are not touched.
                tx.execute_batch(CAPTION_SCHEMA).map_err(|e| self.db(e))?;
                tx.execute(
                    "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
                    [SCHEMA_VERSION.to_string()],
                )
                .map_err(|e| self.db(e))?;
                tx.commit().map_err(|e| self.db(e))?;
                tracing::info!(
                    "{}: index upgraded to schema version {SCHEMA_VERSION} (captions)",
                    self.dir.display()
                );
                Ok(())
            }
            Some(_) => {
                self.check_version()?;
                // Tables a newer seer of this version added (walk_errors).
                tx.commit().map_err(|e| self.db(e))
            }
        }
    }

    /// The schema version, checked to be one this seer reads (1 or 2).
    fn check_version(&self) -> Result<i64> {
        // No meta table, or no version in it: a file whose creation never
        // finished (a disk that was full), which holds nothing.
        let has_meta: bool = self
            .conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta')",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.db(e))?;
        let version = match has_meta {
            true => self.meta("schema_version")?,
            false => None,
        };
        let Some(version) = version else {
            return Err(IndexError::NoIndexYet {
                path: self.dir.clone(),
                hint: "an earlier `seer index` did not finish creating it; run `seer index PATH`",
            });
        };
        match version.parse::<i64>() {
            Ok(v @ 1..=SCHEMA_VERSION) => Ok(v),
            _ => Err(IndexError::File {
                path: self.dir.clone(),
                message: format!(
                    "index schema version {version}, this seer reads versions 1 to {SCHEMA_VERSION}; use a newer seer"
                ),
            }),
        }
    }

    pub fn transaction(&mut self) -> Result<Transaction<'_>> {
        let path = self.dir.join(DATABASE_FILE);
        self.conn
            .transaction()
            .map_err(|source| IndexError::database(path, source, None))
    }

    /// A counter bumped by every committed change. Derived structures record
    /// [`Store::generation_stamp`] instead: the counter alone can repeat.
    pub fn generation(&self) -> Result<u64> {
        Ok(self.generation_stamp()?.counter)
    }

    /// The generation with the token its bump drew, read together (one
    /// statement: one snapshot). Derived structures (the ANN files) record it
    /// to tell whether they reflect the database as it is.
    pub fn generation_stamp(&self) -> Result<GenerationStamp> {
        let (counter, token): (String, Option<String>) = self
            .conn
            .query_row(
                "SELECT g.value, (SELECT value FROM meta WHERE key = 'generation_token')
                 FROM meta g WHERE g.key = 'generation'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| self.db(e))?;
        Ok(GenerationStamp {
            counter: counter.parse().unwrap_or(0),
            // None: no bump since an older seer wrote the index.
            token: token
                .and_then(|t| t.parse::<i64>().ok())
                .map_or(0, |t| t as u64),
        })
    }

    /// Stores a new random value under the meta `key` (its own commit) and
    /// returns it.
    pub(crate) fn new_token(&self, key: &str) -> Result<u64> {
        let token: i64 = self
            .conn
            .query_row("SELECT random()", [], |r| r.get(0))
            .map_err(|e| self.db(e))?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                params![key, token.to_string()],
            )
            .map_err(|e| self.db(e))?;
        Ok(token as u64)
    }

    /// Makes every commit so far durable, without writing (a read-only store
    /// can): with `synchronous=NORMAL` commits reach the log unsynced, so the
    /// database file, its log and their folder are fsynced.
    pub(crate) fn sync_to_disk(&self) -> Result<()> {
        let db = self.dir.join(DATABASE_FILE);
        let wal = self.dir.join(format!("{DATABASE_FILE}-wal"));
        for path in [&db, &wal] {
            // Read access is enough to fsync on Unix; elsewhere it takes write.
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(cfg!(not(unix)))
                .open(path);
            match file.and_then(|f| f.sync_all()) {
                Ok(()) => {}
                // No log: everything is in the database file.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && path == &wal => {}
                Err(e) => return Err(IndexError::io(path.clone(), e)),
            }
        }
        seer_util::fs::sync_parent(&db).map_err(|e| IndexError::io(db, e))
    }

    /// The u64 stored under the meta `key` by [`Store::new_token`], if any.
    pub(crate) fn token(&self, key: &str) -> Result<Option<u64>> {
        Ok(self
            .meta(key)?
            .and_then(|t| t.parse::<i64>().ok())
            .map(|t| t as u64))
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.db(e))
    }

    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                params![key, value],
            )
            .map(|_| ())
            .map_err(|e| self.db(e))
    }

    pub fn models(&self) -> Result<Vec<ModelInfo>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT m.id, m.name, m.dim, (SELECT COUNT(*) FROM embeddings e WHERE e.model_id = m.id)
                 FROM models m ORDER BY m.id",
            )
            .map_err(|e| self.db(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ModelInfo {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    dim: r.get::<_, i64>(2)? as usize,
                    vectors: r.get::<_, i64>(3)? as usize,
                })
            })
            .map_err(|e| self.db(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.db(e))
    }

    /// The model a query should use: `requested` if given (and present), else the
    /// only model in the index.
    pub fn choose_model(&self, requested: Option<&str>) -> Result<ModelInfo> {
        let models: Vec<ModelInfo> = self
            .models()?
            .into_iter()
            .filter(|m| m.vectors > 0)
            .collect();
        let names = || {
            models
                .iter()
                .map(|m| m.name.clone())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match requested {
            Some(name) => models
                .iter()
                .find(|m| m.name == name)
                .cloned()
                .ok_or_else(|| IndexError::ModelMismatch {
                    index: self.dir.clone(),
                    model: name.to_string(),
                    available: if models.is_empty() {
                        "none".into()
                    } else {
                        names()
                    },
                }),
            None => match models.len() {
                0 => Err(IndexError::File {
                    path: self.dir.clone(),
                    message: "the index holds no vectors yet (run `seer index PATH`)".into(),
                }),
                1 => Ok(models[0].clone()),
                _ => Err(IndexError::AmbiguousModel(self.dir.clone(), names())),
            },
        }
    }

    pub fn roots(&self) -> Result<Vec<String>> {
        self.column("SELECT path FROM roots ORDER BY path")
    }

    /// The values of a one-column query, collected.
    fn column<T: rusqlite::types::FromSql, C: FromIterator<T>>(&self, sql: &str) -> Result<C> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| self.db(e))?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(|e| self.db(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.db(e))
    }

    /// The first two columns of every row of `sql`.
    fn pairs<A, B, C>(&self, sql: &str) -> Result<C>
    where
        A: rusqlite::types::FromSql,
        B: rusqlite::types::FromSql,
        C: FromIterator<(A, B)>,
    {
        let mut stmt = self.conn.prepare(sql).map_err(|e| self.db(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.db(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.db(e))
    }

    /// Files at or below `roots`, with whether each has a vector of `model_id`.
    pub fn files_under(&self, roots: &[String], model_id: i64) -> Result<Vec<StoredFile>> {
        let mut out = Vec::new();
        let mut stmt = self
            .conn
            .prepare(&format!(
                "{STORED_FILE_COLUMNS} WHERE f.path = ?2 OR substr(f.path, 1, length(?3)) = ?3"
            ))
            .map_err(|e| self.db(e))?;
        for root in roots {
            let prefix = format!("{}/", root.trim_end_matches('/'));
            let rows = stmt
                .query_map(params![model_id, root, prefix], stored_file)
                .map_err(|e| self.db(e))?;
            for row in rows {
                out.push(row.map_err(|e| self.db(e))?);
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out.dedup_by_key(|f| f.id);
        Ok(out)
    }

    /// The file with row id `id`, with whether it has a vector of `model_id`
    /// (the server addresses files by id and checks this record before it reads
    /// anything from disk).
    pub fn file_by_id(&self, id: i64, model_id: i64) -> Result<Option<StoredFile>> {
        self.conn
            .query_row(
                &format!("{STORED_FILE_COLUMNS} WHERE f.id = ?2"),
                params![model_id, id],
                stored_file,
            )
            .optional()
            .map_err(|e| self.db(e))
    }

    /// A file with this content that has a vector of `model_id` (to reuse it).
    pub fn embedded_file_with_hash(&self, hash: &[u8; 32], model_id: i64) -> Result<Option<i64>> {
        self.conn
            .query_row(
                "SELECT f.id FROM files f JOIN embeddings e ON e.file_id = f.id AND e.model_id = ?2
                 WHERE f.hash = ?1 LIMIT 1",
                params![hash.as_slice(), model_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.db(e))
    }

    /// Every stored file size (to find candidates for moves and copies cheaply:
    /// only a file whose size matches needs hashing).
    pub fn sizes(&self) -> Result<std::collections::HashSet<i64>> {
        self.column("SELECT DISTINCT size FROM files")
    }

    pub fn load_vectors(&self, model: &ModelInfo) -> Result<VectorSet> {
        let mut set = VectorSet {
            dim: model.dim,
            ..Default::default()
        };
        let mut stmt = self
            .conn
            .prepare(
                "SELECT f.id, f.path, e.encoding, e.vector FROM embeddings e JOIN files f ON f.id = e.file_id
                 WHERE e.model_id = ?1 ORDER BY f.id",
            )
            .map_err(|e| self.db(e))?;
        let mut rows = stmt.query([model.id]).map_err(|e| self.db(e))?;
        while let Some(row) = rows.next().map_err(|e| self.db(e))? {
            let id: i64 = row.get(0).map_err(|e| self.db(e))?;
            let path: String = row.get(1).map_err(|e| self.db(e))?;
            let encoding = Encoding::from_code(row.get(2).map_err(|e| self.db(e))?);
            let blob = row
                .get_ref(3)
                .map_err(|e| self.db(e))?
                .as_blob()
                .map_err(|e| self.db(e.into()))?;
            match encoding.and_then(|enc| enc.decode_into(blob, model.dim, &mut set.data)) {
                Some(()) => {
                    set.ids.push(id);
                    set.paths.push(path);
                }
                None => tracing::warn!("{path}: stored vector is damaged; re-index to repair it"),
            }
        }
        Ok(set)
    }

    /// Calls `each` with the model's vectors, `rows` at a time in file id
    /// order: their ids and their values, row after row (damaged ones left
    /// out with a warning, as [`Store::load_vectors`] does). Only one chunk is
    /// decoded at a time, where `load_vectors` holds every vector as f32.
    pub fn for_each_vector_chunk(
        &self,
        model: &ModelInfo,
        rows: usize,
        mut each: impl FnMut(&[i64], &[f32]) -> Result<()>,
    ) -> Result<()> {
        let rows = rows.max(1);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT e.file_id, e.encoding, e.vector FROM embeddings e
                 WHERE e.model_id = ?1 ORDER BY e.file_id",
            )
            .map_err(|e| self.db(e))?;
        let mut found = stmt.query([model.id]).map_err(|e| self.db(e))?;
        let (mut ids, mut data) = (
            Vec::with_capacity(rows),
            Vec::with_capacity(rows * model.dim),
        );
        while let Some(row) = found.next().map_err(|e| self.db(e))? {
            let id: i64 = row.get(0).map_err(|e| self.db(e))?;
            let encoding = Encoding::from_code(row.get(1).map_err(|e| self.db(e))?);
            let blob = row
                .get_ref(2)
                .map_err(|e| self.db(e))?
                .as_blob()
                .map_err(|e| self.db(e.into()))?;
            match encoding.and_then(|enc| enc.decode_into(blob, model.dim, &mut data)) {
                Some(()) => ids.push(id),
                None => {
                    tracing::warn!("file {id}: stored vector is damaged; re-index to repair it")
                }
            }
            if ids.len() == rows {
                each(&ids, &data)?;
                ids.clear();
                data.clear();
            }
        }
        if !ids.is_empty() {
            each(&ids, &data)?;
        }
        Ok(())
    }

    /// Row ids and paths of a model's files, ordered by id (what approximate search
    /// needs to name its hits; far cheaper than decoding every vector).
    pub fn ids_and_paths(&self, model: &ModelInfo) -> Result<(Vec<i64>, Vec<String>)> {
        let mut stmt = self
            .conn
            .prepare("SELECT f.id, f.path FROM embeddings e JOIN files f ON f.id = e.file_id WHERE e.model_id = ?1 ORDER BY f.id")
            .map_err(|e| self.db(e))?;
        let mut ids = Vec::new();
        let mut paths = Vec::new();
        let mut rows = stmt.query([model.id]).map_err(|e| self.db(e))?;
        while let Some(row) = rows.next().map_err(|e| self.db(e))? {
            ids.push(row.get(0).map_err(|e| self.db(e))?);
            paths.push(row.get(1).map_err(|e| self.db(e))?);
        }
        Ok((ids, paths))
    }

    /// The row id of the file stored at `path`.
    pub fn id_of(&self, path: &str) -> Result<Option<i64>> {
        self.conn
            .query_row("SELECT id FROM files WHERE path = ?1", [path], |r| r.get(0))
            .optional()
            .map_err(|e| self.db(e))
    }

    /// The path of one file, by row id.
    pub fn path_of(&self, id: i64) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT path FROM files WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(|e| self.db(e))
    }

    /// The stored metadata of one file, by row id.
    pub fn file_meta(&self, id: i64) -> Result<Option<FileMeta>> {
        self.conn
            .query_row(
                "SELECT id, path, size, mtime_ns, width, height, taken_at FROM files WHERE id = ?1",
                [id],
                |r| {
                    Ok(FileMeta {
                        id: r.get(0)?,
                        path: r.get(1)?,
                        size: r.get(2)?,
                        modified: r.get::<_, i64>(3)? as f64 / 1e9,
                        width: r.get(4)?,
                        height: r.get(5)?,
                        taken_at: r.get(6)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.db(e))
    }

    /// EXIF capture times of the files that have one, by row id (for date filters).
    pub fn capture_times(&self) -> Result<std::collections::HashMap<i64, String>> {
        self.pairs("SELECT id, taken_at FROM files WHERE taken_at IS NOT NULL")
    }

    /// The stored vector of one indexed file (for "more like this").
    pub fn vector_of(&self, path: &str, model: &ModelInfo) -> Result<Option<Vec<f32>>> {
        let row: Option<(i64, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT e.encoding, e.vector FROM embeddings e JOIN files f ON f.id = e.file_id
                 WHERE f.path = ?1 AND e.model_id = ?2",
                params![path, model.id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.db(e))?;
        Ok(row.and_then(|(code, blob)| {
            let mut v = Vec::with_capacity(model.dim);
            Encoding::from_code(code)?.decode_into(&blob, model.dim, &mut v)?;
            Some(v)
        }))
    }

    /// Why the file stored at `path` could not be indexed, when it failed.
    pub fn failure_of(&self, path: &str) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT error FROM files WHERE path = ?1 AND error IS NOT NULL",
                [path],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.db(e))
    }

    pub fn failures(&self) -> Result<Vec<(String, String)>> {
        self.pairs("SELECT path, error FROM files WHERE error IS NOT NULL ORDER BY path")
    }

    /// What the latest walks could not read or follow: (stored path, cause).
    pub fn walk_errors(&self) -> Result<Vec<(String, String)>> {
        let exists: bool = self
            .conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'walk_errors')",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.db(e))?;
        if !exists {
            return Ok(Vec::new()); // an index written before walk errors were kept
        }
        self.pairs("SELECT path, error FROM walk_errors ORDER BY path")
    }

    pub fn file_count(&self) -> Result<usize> {
        self.conn
            .query_row("SELECT COUNT(*) FROM files", [], |r| r.get::<_, i64>(0))
            .map(|n| n as usize)
            .map_err(|e| self.db(e))
    }

    /// The caption models the index holds captions of, with their counts (none
    /// in an index without the caption tables).
    pub fn captioners(&self) -> Result<Vec<CaptionerInfo>> {
        if !self.captions {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn
            .prepare(
                "SELECT m.id, m.name, (SELECT COUNT(*) FROM captions c WHERE c.captioner_id = m.id)
                 FROM captioners m ORDER BY m.id",
            )
            .map_err(|e| self.db(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(CaptionerInfo {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    captions: r.get::<_, i64>(2)? as usize,
                })
            })
            .map_err(|e| self.db(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.db(e))
    }

    /// Whether any file has a caption (searches then rank caption words too).
    pub fn has_captions(&self) -> Result<bool> {
        if !self.captions {
            return Ok(false);
        }
        self.conn
            .query_row("SELECT EXISTS (SELECT 1 FROM captions)", [], |r| r.get(0))
            .map_err(|e| self.db(e))
    }

    /// A file's caption: by the most recently added caption model that wrote
    /// one for it.
    pub fn caption_of(&self, file_id: i64) -> Result<Option<Caption>> {
        if !self.captions {
            return Ok(None);
        }
        self.conn
            .query_row(
                "SELECT c.text, m.name FROM captions c JOIN captioners m ON m.id = c.captioner_id
                 WHERE c.file_id = ?1 ORDER BY c.captioner_id DESC LIMIT 1",
                [file_id],
                |r| {
                    Ok(Caption {
                        text: r.get(0)?,
                        model: r.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.db(e))
    }

    /// The caption `captioner_id` wrote for another file with this content, if
    /// any (a copy is not captioned twice).
    pub fn caption_by_hash(&self, hash: &[u8; 32], captioner_id: i64) -> Result<Option<String>> {
        if !self.captions {
            return Ok(None);
        }
        self.conn
            .query_row(
                "SELECT c.text FROM captions c JOIN files f ON f.id = c.file_id
                 WHERE f.hash = ?1 AND c.captioner_id = ?2 LIMIT 1",
                params![hash.as_slice(), captioner_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.db(e))
    }

    /// Files at or below `roots` that are indexed (no recorded failure) and
    /// have no caption by `captioner_id`, in path order; and how many there
    /// are that have one. Videos are not captioned (their frames are not
    /// photos a caption model was trained on, and a caption per frame is work
    /// left for later).
    pub fn caption_work_under(
        &self,
        roots: &[String],
        captioner_id: i64,
    ) -> Result<(Vec<Uncaptioned>, usize)> {
        let mut todo = Vec::new();
        let mut done = 0;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT f.id, f.path, f.size, f.hash,
                        EXISTS (SELECT 1 FROM captions c WHERE c.file_id = f.id AND c.captioner_id = ?1),
                        EXISTS (SELECT 1 FROM frames fr WHERE fr.file_id = f.id)
                 FROM files f
                 WHERE f.error IS NULL AND (f.path = ?2 OR substr(f.path, 1, length(?3)) = ?3)",
            )
            .map_err(|e| self.db(e))?;
        let mut seen = std::collections::HashSet::new();
        for root in roots {
            let prefix = format!("{}/", root.trim_end_matches('/'));
            let mut rows = stmt
                .query(params![captioner_id, root, prefix])
                .map_err(|e| self.db(e))?;
            while let Some(row) = rows.next().map_err(|e| self.db(e))? {
                let read = || -> rusqlite::Result<(Uncaptioned, bool)> {
                    Ok((
                        Uncaptioned {
                            id: row.get(0)?,
                            path: row.get(1)?,
                            size: row.get(2)?,
                            hash: row
                                .get::<_, Option<Vec<u8>>>(3)?
                                .and_then(|h| h.try_into().ok()),
                            video: row.get::<_, bool>(5)? || {
                                let path: String = row.get(1)?;
                                seer_video::has_video_extension(&crate::pathcodec::to_path(&path))
                            },
                        },
                        row.get(4)?,
                    ))
                };
                let (file, captioned) = read().map_err(|e| self.db(e))?;
                if !seen.insert(file.id) {
                    continue; // nested roots
                }
                match captioned {
                    true => done += 1,
                    false => todo.push(file),
                }
            }
        }
        todo.sort_by(|a, b| a.path.cmp(&b.path));
        Ok((todo, done))
    }

    /// Files whose captions match the FTS5 query `fts` (see
    /// [`crate::words::fts_query`]), best first by BM25, one row per file (its
    /// best caption when several models captioned it). Only files with a vector
    /// of `model_id` when given, and that `accept` (id, stored path) takes; at
    /// most `limit`.
    pub fn word_matches(
        &self,
        fts: &str,
        model_id: Option<i64>,
        mut accept: impl FnMut(i64, &str) -> bool,
        limit: usize,
    ) -> Result<Vec<crate::words::WordMatch>> {
        if !self.captions || limit == 0 {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn
            .prepare(
                "SELECT f.id, f.path, bm25(captions_fts) AS score
                 FROM captions_fts JOIN captions c ON c.id = captions_fts.rowid
                      JOIN files f ON f.id = c.file_id
                 WHERE captions_fts MATCH ?1 AND f.error IS NULL
                   AND (?2 IS NULL OR EXISTS (SELECT 1 FROM embeddings e WHERE e.file_id = f.id AND e.model_id = ?2))
                 ORDER BY score, f.id",
            )
            .map_err(|e| self.db(e))?;
        let mut rows = stmt.query(params![fts, model_id]).map_err(|e| self.db(e))?;
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        while let Some(row) = rows.next().map_err(|e| self.db(e))? {
            let id: i64 = row.get(0).map_err(|e| self.db(e))?;
            let path: String = row.get(1).map_err(|e| self.db(e))?;
            let score: f64 = row.get(2).map_err(|e| self.db(e))?;
            if !seen.insert(id) || !accept(id, &path) {
                continue;
            }
            // FTS5's bm25() is negated so that ascending order is best first.
            out.push(crate::words::WordMatch {
                id,
                path,
                bm25: (-score) as f32,
            });
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// How many of `model`'s vectors are stored in an encoding other than
    /// `encoding` (a run's `--encoding` applies to what it embeds only).
    pub fn vectors_not_in(&self, model: &ModelInfo, encoding: Encoding) -> Result<usize> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM embeddings WHERE model_id = ?1 AND encoding != ?2",
                params![model.id, encoding.code()],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as usize)
            .map_err(|e| self.db(e))
    }

    /// The stored vector of file `id` (for files a search found by their words,
    /// when the vectors are not in memory).
    pub fn vector_of_id(&self, id: i64, model: &ModelInfo) -> Result<Option<Vec<f32>>> {
        let row: Option<(i64, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT encoding, vector FROM embeddings WHERE file_id = ?1 AND model_id = ?2",
                params![id, model.id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.db(e))?;
        Ok(row.and_then(|(code, blob)| {
            let mut v = Vec::with_capacity(model.dim);
            Encoding::from_code(code)?.decode_into(&blob, model.dim, &mut v)?;
            Some(v)
        }))
    }

    /// FTS5's check that the words index matches the captions (a writable
    /// store: the check is an FTS5 command).
    pub fn words_integrity_check(&self) -> Result<()> {
        if !self.captions {
            return Ok(());
        }
        self.conn
            .execute(
                "INSERT INTO captions_fts (captions_fts, rank) VALUES ('integrity-check', 1)",
                [],
            )
            .map(|_| ())
            .map_err(|e| self.db(e))
    }

    #[cfg(test)]
    pub(crate) fn conn_for_tests(&self) -> &Connection {
        &self.conn
    }

    /// SQLite's own consistency check (used by the crash tests).
    pub fn integrity_check(&self) -> Result<String> {
        self.conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(|e| self.db(e))
    }
}

/// Writes inside one transaction. Kept free of `Store` so the indexer can hold a
/// transaction while reading nothing else.
pub mod write {
    pub use super::frames::{clear_frames, forget_videos, put_frame, put_frames};
    use super::*;

    pub fn model_id(tx: &Transaction, name: &str, dim: usize) -> rusqlite::Result<i64> {
        if let Some((id, stored_dim)) = tx
            .query_row("SELECT id, dim FROM models WHERE name = ?1", [name], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })
            .optional()?
        {
            if stored_dim as usize != dim {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    format!("model '{name}' was indexed with {stored_dim}-d vectors, now {dim}-d")
                        .into(),
                ));
            }
            return Ok(id);
        }
        tx.execute(
            "INSERT INTO models (name, dim) VALUES (?1, ?2)",
            params![name, dim as i64],
        )?;
        Ok(tx.last_insert_rowid())
    }

    /// The id of the file at stored path `path`, if the index has it.
    pub fn id_of_path(tx: &Transaction, path: &str) -> rusqlite::Result<Option<i64>> {
        tx.query_row("SELECT id FROM files WHERE path = ?1", [path], |r| r.get(0))
            .optional()
    }

    /// Removes `root` from the index's folders (its files are the caller's).
    pub fn remove_root(tx: &Transaction, root: &str) -> rusqlite::Result<()> {
        tx.execute("DELETE FROM roots WHERE path = ?1", [root])
            .map(|_| ())
    }

    pub fn add_root(tx: &Transaction, root: &str) -> rusqlite::Result<()> {
        tx.execute("INSERT OR IGNORE INTO roots (path) VALUES (?1)", [root])
            .map(|_| ())
    }

    /// Counts a commit, and draws its token. With `synchronous=NORMAL` a power
    /// cut may undo the last commits while the ANN files (fsynced) keep the
    /// generation they recorded; the next commit then reuses that counter
    /// with other content, and only the random token tells them apart.
    pub fn bump_generation(tx: &Transaction) -> rusqlite::Result<()> {
        tx.execute(
            "UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'generation'",
            [],
        )?;
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('generation_token', CAST(random() AS TEXT))",
            [],
        )
        .map(|_| ())
    }

    /// Inserts or updates a file's row (keyed by path), clearing any earlier
    /// failure. When its content changed the old row is deleted (with every
    /// model's vectors) and a new one inserted: a row id always stands for one
    /// content, which keeps derived structures (the ANN graph) exact by id.
    pub fn upsert_file(tx: &Transaction, f: &FileRecord) -> rusqlite::Result<i64> {
        let existing: Option<(i64, Option<Vec<u8>>)> = tx
            .query_row(
                "SELECT id, hash FROM files WHERE path = ?1",
                [&f.path],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let hash = f.hash.map(|h| h.to_vec());
        if let Some((id, old_hash)) = existing {
            // No hash (an import that did not read the file) means "unknown", not "changed".
            if old_hash == hash || hash.is_none() {
                tx.execute(
                    "UPDATE files SET size = ?2, mtime_ns = ?3, width = COALESCE(?4, width), height = COALESCE(?5, height),
                     taken_at = COALESCE(?6, taken_at), error = NULL WHERE id = ?1",
                    params![id, f.size, f.mtime_ns, f.width, f.height, f.taken_at],
                )?;
                return Ok(id);
            }
            tx.execute("DELETE FROM files WHERE id = ?1", [id])?;
        }
        tx.execute(
            "INSERT INTO files (path, size, mtime_ns, hash, width, height, taken_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![f.path, f.size, f.mtime_ns, hash, f.width, f.height, f.taken_at],
        )?;
        Ok(tx.last_insert_rowid())
    }

    pub fn put_embedding(
        tx: &Transaction,
        file_id: i64,
        model_id: i64,
        encoding: Encoding,
        vector: &[f32],
    ) -> rusqlite::Result<()> {
        tx.execute(
            "INSERT OR REPLACE INTO embeddings (file_id, model_id, encoding, vector) VALUES (?1, ?2, ?3, ?4)",
            params![file_id, model_id, encoding.code(), encoding.encode(vector)],
        )
        .map(|_| ())
    }

    /// Copies what the content determines from one file to another with the
    /// same content: every model's vectors, every caption, and the pixel size
    /// and EXIF capture time (a copy's detail view and date filters are its
    /// source's).
    pub fn copy_content(tx: &Transaction, from: i64, to: i64) -> rusqlite::Result<()> {
        tx.execute(
            "UPDATE files SET (width, height, taken_at) =
               (SELECT width, height, taken_at FROM files WHERE id = ?1)
             WHERE id = ?2",
            params![from, to],
        )?;
        tx.execute(
            "INSERT OR REPLACE INTO embeddings (file_id, model_id, encoding, vector)
             SELECT ?2, model_id, encoding, vector FROM embeddings WHERE file_id = ?1",
            params![from, to],
        )?;
        frames::copy_frames(tx, from, to)?;
        tx.execute(
            "INSERT INTO captions (file_id, captioner_id, text)
             SELECT ?2, captioner_id, text FROM captions WHERE file_id = ?1
             ON CONFLICT (file_id, captioner_id) DO UPDATE SET text = excluded.text",
            params![from, to],
        )
        .map(|_| ())
    }

    /// The row id of caption model `name`, added when new.
    pub fn captioner_id(tx: &Transaction, name: &str) -> rusqlite::Result<i64> {
        tx.execute(
            "INSERT INTO captioners (name) VALUES (?1) ON CONFLICT (name) DO NOTHING",
            [name],
        )?;
        tx.query_row("SELECT id FROM captioners WHERE name = ?1", [name], |r| {
            r.get(0)
        })
    }

    /// Sets a file's caption by one caption model (an upsert, so the words
    /// index follows through its update trigger).
    pub fn put_caption(
        tx: &Transaction,
        file_id: i64,
        captioner_id: i64,
        text: &str,
    ) -> rusqlite::Result<()> {
        tx.execute(
            "INSERT INTO captions (file_id, captioner_id, text) VALUES (?1, ?2, ?3)
             ON CONFLICT (file_id, captioner_id) DO UPDATE SET text = excluded.text",
            params![file_id, captioner_id, text],
        )
        .map(|_| ())
    }

    /// Records why a file could not be indexed; it is retried when it changes.
    pub fn record_failure(
        tx: &Transaction,
        path: &str,
        size: i64,
        mtime_ns: i64,
        error: &str,
    ) -> rusqlite::Result<()> {
        tx.execute(
            "INSERT INTO files (path, size, mtime_ns, error) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, error = excluded.error, hash = NULL",
            params![path, size, mtime_ns, error],
        )?;
        // A file that cannot be read has no content: nothing describes it.
        tx.execute(
            "DELETE FROM embeddings WHERE file_id = (SELECT id FROM files WHERE path = ?1)",
            [path],
        )?;
        tx.execute(
            "DELETE FROM frames WHERE file_id = (SELECT id FROM files WHERE path = ?1)",
            [path],
        )?;
        tx.execute(
            "DELETE FROM captions WHERE file_id = (SELECT id FROM files WHERE path = ?1)",
            [path],
        )
        .map(|_| ())
    }

    pub fn move_file(
        tx: &Transaction,
        id: i64,
        path: &str,
        size: i64,
        mtime_ns: i64,
    ) -> rusqlite::Result<()> {
        tx.execute(
            "UPDATE files SET path = ?2, size = ?3, mtime_ns = ?4 WHERE id = ?1",
            params![id, path, size, mtime_ns],
        )
        .map(|_| ())
    }

    pub fn touch(tx: &Transaction, id: i64, mtime_ns: i64) -> rusqlite::Result<()> {
        tx.execute(
            "UPDATE files SET mtime_ns = ?2 WHERE id = ?1",
            params![id, mtime_ns],
        )
        .map(|_| ())
    }

    /// Replaces the walk errors at or below `roots` (stored paths) with `errors`.
    pub fn replace_walk_errors(
        tx: &Transaction,
        roots: &[String],
        errors: &[(String, String)],
    ) -> rusqlite::Result<()> {
        for root in roots {
            let prefix = format!("{}/", root.trim_end_matches('/'));
            tx.execute(
                "DELETE FROM walk_errors WHERE path = ?1 OR substr(path, 1, length(?2)) = ?2",
                params![root, prefix],
            )?;
        }
        for (path, error) in errors {
            tx.execute(
                "INSERT OR REPLACE INTO walk_errors (path, error) VALUES (?1, ?2)",
                params![path, error],
            )?;
        }
        Ok(())
    }

    /// Removes the record of a path, if there is one (a file found gone);
    /// whether there was one.
    pub fn remove_path(tx: &Transaction, path: &str) -> rusqlite::Result<bool> {
        tx.execute("DELETE FROM files WHERE path = ?1", [path])
            .map(|n| n > 0)
    }

    pub fn remove_file(tx: &Transaction, id: i64) -> rusqlite::Result<()> {
        tx.execute("DELETE FROM files WHERE id = ?1", [id])
            .map(|_| ())
    }
}
