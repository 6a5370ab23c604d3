//! The index database: one SQLite file in WAL mode, the single source of truth.
//!
//! Every change is made inside a transaction, so a process killed at any moment
//! leaves the database as of its last commit (WAL recovery does the rest), and
//! readers (searches) run concurrently with a writer (indexing).

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction};

use crate::error::{IndexError, Result};
use crate::vector::Encoding;

const SCHEMA_VERSION: i64 = 1;

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

pub const DATABASE_FILE: &str = "index.sqlite";

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

pub struct Store {
    conn: Connection,
    dir: PathBuf,
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

impl Store {
    /// Opens (creating if needed) the index in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| IndexError::io_doing(dir, "cannot create the index folder", e))?;
        let path = dir.join(DATABASE_FILE);
        let conn = Connection::open(&path).map_err(|source| IndexError::Database {
            path: path.clone(),
            source,
        })?;
        let store = Self {
            conn,
            dir: dir.to_path_buf(),
        };
        store.configure()?;
        store.migrate()?;
        Ok(store)
    }

    /// Opens an existing index for reading only (searching while another process indexes).
    pub fn open_read_only(dir: &Path) -> Result<Self> {
        let path = dir.join(DATABASE_FILE);
        if !path.is_file() {
            return Err(IndexError::File {
                path: dir.to_path_buf(),
                message: "no index here yet (run `seer index PATH` first)".into(),
            });
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| IndexError::Database {
            path: path.clone(),
            source,
        })?;
        let store = Self {
            conn,
            dir: dir.to_path_buf(),
        };
        store
            .conn
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| store.db(e))?;
        store.check_version()?;
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn db(&self, source: rusqlite::Error) -> IndexError {
        IndexError::Database {
            path: self.dir.join(DATABASE_FILE),
            source,
        }
    }

    /// Turns database errors into errors naming this index's file, without
    /// borrowing the store (usable while a transaction holds it).
    pub(crate) fn error_mapper(&self) -> impl Fn(rusqlite::Error) -> IndexError {
        let path = self.dir.join(DATABASE_FILE);
        move |source| IndexError::Database {
            path: path.clone(),
            source,
        }
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
        self.conn.execute_batch(SCHEMA).map_err(|e| self.db(e))?;
        let version: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.db(e))?;
        match version {
            None => {
                self.conn
                    .execute(
                        "INSERT INTO meta (key, value) VALUES ('schema_version', ?1), ('generation', '0')",
                        [SCHEMA_VERSION.to_string()],
                    )
                    .map_err(|e| self.db(e))?;
                Ok(())
            }
            Some(_) => self.check_version(),
        }
    }

    fn check_version(&self) -> Result<()> {
        let version: String = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.db(e))?;
        if version != SCHEMA_VERSION.to_string() {
            return Err(IndexError::File {
                path: self.dir.clone(),
                message: format!(
                    "index schema version {version}, this seer reads version {SCHEMA_VERSION}"
                ),
            });
        }
        Ok(())
    }

    pub fn transaction(&mut self) -> Result<Transaction<'_>> {
        let path = self.dir.join(DATABASE_FILE);
        self.conn
            .transaction()
            .map_err(|source| IndexError::Database { path, source })
    }

    /// A counter bumped by every committed change; derived structures (the ANN
    /// file) record the generation they reflect, so staleness is detectable.
    pub fn generation(&self) -> Result<u64> {
        let g: String = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'generation'", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.db(e))?;
        Ok(g.parse().unwrap_or(0))
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

    pub fn add_root(tx: &Transaction, root: &str) -> rusqlite::Result<()> {
        tx.execute("INSERT OR IGNORE INTO roots (path) VALUES (?1)", [root])
            .map(|_| ())
    }

    pub fn bump_generation(tx: &Transaction) -> rusqlite::Result<()> {
        tx.execute(
            "UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'generation'",
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

    /// Copies every model's vectors from one file to another with the same content.
    pub fn copy_embeddings(tx: &Transaction, from: i64, to: i64) -> rusqlite::Result<()> {
        tx.execute(
            "INSERT OR REPLACE INTO embeddings (file_id, model_id, encoding, vector)
             SELECT ?2, model_id, encoding, vector FROM embeddings WHERE file_id = ?1",
            params![from, to],
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
        tx.execute(
            "DELETE FROM embeddings WHERE file_id = (SELECT id FROM files WHERE path = ?1)",
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

    pub fn remove_file(tx: &Transaction, id: i64) -> rusqlite::Result<()> {
        tx.execute("DELETE FROM files WHERE id = ?1", [id])
            .map(|_| ())
    }
}
