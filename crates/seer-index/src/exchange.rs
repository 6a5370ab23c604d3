//! Exchange with the clip-retrieval / autofaiss layout:
//! `img_emb/img_emb_{i}.npy` (row-aligned embeddings) and
//! `metadata/metadata_{i}.parquet` (an `image_path` column).
//!
//! Video frames travel beside it, in `frames/` (see [`frames`]).
//!
//! Sharded embedding (`seer embed --shards`) writes the same layout, one
//! output shard per input shard, plus `errors/errors_{i}.parquet` naming every
//! sample that could not be embedded, so each input key is accounted for
//! exactly once.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::reader::RowIter;
use parquet::record::RowAccessor;
use parquet::schema::parser::parse_message_type;
use seer_util::fs::Durability;

use crate::error::{IndexError, Result};
use crate::lock::IndexLock;
use crate::npy::{self, Dtype};
use crate::store::{write, FileRecord, ModelInfo, Store};
use crate::vector::Encoding;

mod frames;

/// Column names accepted for the image path on import, in order of preference.
const PATH_COLUMNS: &[&str] = &["image_path", "path", "filepath", "url"];

fn file_error(path: &Path, message: impl ToString) -> IndexError {
    IndexError::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ExchangeSummary {
    pub rows: usize,
    pub shards: usize,
    pub dim: usize,
    /// Import: rows whose image path an earlier row of the import had (the
    /// path is stored once, with the later row's vector).
    pub duplicates: usize,
    /// Video frames written or stored (`frames/`, see [`frames`]).
    pub frames: usize,
}

/// Writes the model's vectors (one shard) into `out`. A folder already
/// holding files of this layout (an earlier export, `seer embed --shards`
/// output) is refused, as shards left beside the new one would be imported as
/// if they were the index's; with `overwrite` those files (only the layout's
/// own, see [`layout_files`]) are removed first.
pub fn export(
    store: &Store,
    model: &ModelInfo,
    out: &Path,
    dtype: Dtype,
    overwrite: bool,
) -> Result<ExchangeSummary> {
    let stale = layout_files(out)?;
    if let (Some(first), false) = (stale.first(), overwrite) {
        let shown = first.strip_prefix(out).unwrap_or(first);
        return Err(file_error(
            out,
            format!(
                "already holds {} file(s) of an earlier export (first: {}), which an import of this \
                 folder would mix with the new one; choose an empty folder, or pass --overwrite to remove them first",
                stale.len(),
                shown.display()
            ),
        ));
    }
    let vectors = store.load_vectors(model)?;
    // Embeddings first: a folder left half-cleared by a failure holds metadata
    // without embeddings, which an import ignores, not embeddings of the past.
    for path in &stale {
        std::fs::remove_file(path).map_err(|e| {
            IndexError::io_doing(path, "cannot remove a file of the earlier export", e)
        })?;
    }
    let emb_dir = out.join("img_emb");
    let meta_dir = out.join("metadata");
    for dir in [&emb_dir, &meta_dir] {
        std::fs::create_dir_all(dir).map_err(|e| IndexError::io(dir, e))?;
    }
    // The frames before the files an import starts from: a failure between
    // leaves frames that no import reads without those files.
    let frames = frames::export(store, model, out, dtype)?;
    let rows: Vec<Vec<f32>> = (0..vectors.len())
        .map(|i| vectors.row(i).to_vec())
        .collect();
    write_array_and_rows(
        &emb_dir.join("img_emb_0.npy"),
        &rows,
        vectors.dim,
        dtype,
        &meta_dir.join("metadata_0.parquet"),
        |f| write_paths(f, &vectors.paths),
    )?;
    Ok(ExchangeSummary {
        rows: vectors.len(),
        shards: 1,
        dim: vectors.dim,
        duplicates: 0,
        frames,
    })
}

/// Writes `rows` as an `.npy` array at `npy_path` and their metadata at
/// `parquet_path` (by `fill`): both written and synced before either is put
/// in place, the array last, so a full disk leaves no array without its
/// metadata (which a rerun would refuse as an earlier export's).
fn write_array_and_rows(
    npy_path: &Path,
    rows: &[Vec<f32>],
    dim: usize,
    dtype: Dtype,
    parquet_path: &Path,
    fill: impl FnOnce(&mut File) -> std::result::Result<(), String>,
) -> Result<()> {
    let bytes = npy::encode(rows, dim, dtype).map_err(|e| file_error(npy_path, e))?;
    let npy = staged(npy_path, |f| {
        std::io::Write::write_all(f, &bytes).map_err(|e| e.to_string())
    })?;
    let parquet = staged(parquet_path, fill)?;
    put_in_place(parquet_path, parquet)?;
    put_in_place(npy_path, npy)
}

/// A temporary beside `path`, filled by `fill` and synced (see
/// [`seer_util::fs::AtomicFile::sync`]: the files of a shard are all written
/// before any is put in place), to be put in place by [`put_in_place`]
/// (dropped, it is removed).
fn staged(
    path: &Path,
    fill: impl FnOnce(&mut File) -> std::result::Result<(), String>,
) -> Result<seer_util::fs::AtomicFile> {
    let io = |e| IndexError::io(path, e);
    let mut f = seer_util::fs::AtomicFile::create(path, Durability::Fsync).map_err(io)?;
    fill(f.file()).map_err(|e| file_error(path, e))?;
    f.sync().map_err(io)?;
    Ok(f)
}

fn put_in_place(path: &Path, file: seer_util::fs::AtomicFile) -> Result<()> {
    file.commit().map_err(|e| IndexError::io(path, e))
}

/// A parquet writer's error as words: its I/O errors come wrapped as
/// `External: …`, which says nothing to a user.
fn parquet_words(e: parquet::errors::ParquetError) -> String {
    match e {
        parquet::errors::ParquetError::External(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

fn write_paths(file: &mut File, paths: &[String]) -> std::result::Result<(), String> {
    let paths: Vec<Option<&str>> = paths.iter().map(|p| Some(p.as_str())).collect();
    write_string_columns(file, &[StringColumn::required("image_path", paths)])
}

/// A UTF-8 column of a metadata parquet file; `None` is null (optional columns only).
struct StringColumn<'a> {
    name: &'static str,
    required: bool,
    values: Vec<Option<&'a str>>,
}

impl<'a> StringColumn<'a> {
    fn required(name: &'static str, values: Vec<Option<&'a str>>) -> Self {
        Self {
            name,
            required: true,
            values,
        }
    }

    fn optional(name: &'static str, values: Vec<Option<&'a str>>) -> Self {
        Self {
            name,
            required: false,
            values,
        }
    }
}

/// A parquet writer of the columns `fields` (a message schema's body),
/// snappy-compressed, as every file of the layout is written.
fn parquet_writer<'a>(
    file: &'a mut File,
    fields: &str,
) -> std::result::Result<SerializedFileWriter<&'a mut File>, String> {
    let schema = Arc::new(
        parse_message_type(&format!("message schema {{ {fields}}}")).map_err(parquet_words)?,
    );
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    );
    SerializedFileWriter::new(file, schema, props).map_err(parquet_words)
}

/// Writes equally long string columns as one row group (snappy).
fn write_string_columns(
    file: &mut File,
    columns: &[StringColumn],
) -> std::result::Result<(), String> {
    let fields: String = columns
        .iter()
        .map(|c| {
            let repetition = if c.required { "REQUIRED" } else { "OPTIONAL" };
            format!("{repetition} BYTE_ARRAY {} (UTF8); ", c.name)
        })
        .collect();
    let mut writer = parquet_writer(file, &fields)?;
    let mut group = writer.next_row_group().map_err(parquet_words)?;
    for c in columns {
        let mut column = group
            .next_column()
            .map_err(parquet_words)?
            .ok_or("the schema has fewer columns than given")?;
        let values: Vec<ByteArray> = c
            .values
            .iter()
            .flatten()
            .map(|v| ByteArray::from(*v))
            .collect();
        if c.required && values.len() != c.values.len() {
            return Err(format!("a null in required column {}", c.name));
        }
        // Definition levels: 1 where a value is present, 0 for null.
        let levels: Vec<i16> = c.values.iter().map(|v| i16::from(v.is_some())).collect();
        column
            .typed::<ByteArrayType>()
            .write_batch(&values, (!c.required).then_some(&levels[..]), None)
            .map_err(parquet_words)?;
        column.close().map_err(parquet_words)?;
    }
    group.close().map_err(parquet_words)?;
    writer.close().map_err(parquet_words)?;
    Ok(())
}

/// One embedded sample of an input shard: its metadata row.
#[derive(Clone, Debug)]
pub struct ShardRow {
    /// The webdataset key.
    pub key: String,
    /// Where the image came from, `SHARD/MEMBER` (what `seer import` stores).
    pub image_path: String,
    pub caption: Option<String>,
}

/// One sample of an input shard that could not be embedded, or the shard's
/// own failure (unreadable, truncated: `key` is then empty).
#[derive(Clone, Debug)]
pub struct ShardFailure {
    pub key: String,
    /// `SHARD:KEY`, or the shard alone.
    pub origin: String,
    pub error: String,
}

fn shard_paths(out: &Path, number: usize) -> [std::path::PathBuf; 3] {
    [
        out.join(format!("img_emb/img_emb_{number}.npy")),
        out.join(format!("errors/errors_{number}.parquet")),
        out.join(format!("metadata/metadata_{number}.parquet")),
    ]
}

/// Marks a finished shard without embedded rows, which has no embeddings or
/// metadata file: embedding-reader (what autofaiss and clip-retrieval read
/// these folders with) fails on a folder holding a 0-row `.npy`.
fn empty_marker(out: &Path, number: usize) -> std::path::PathBuf {
    out.join(format!("errors/empty_{number}"))
}

/// Whether output shard `number` in `out` was written completely by
/// [`write_shard`]: its three files exist (each appears whole, by rename), or,
/// for a shard without embedded rows, its errors file and the empty marker.
pub fn shard_complete(out: &Path, number: usize) -> bool {
    let [npy, errors, meta] = shard_paths(out, number);
    errors.is_file() && (npy.is_file() && meta.is_file() || empty_marker(out, number).is_file())
}

/// The files of this layout in `out`, as [`export`] and [`write_shard`] name
/// them (`img_emb/img_emb_N.npy`, `metadata/metadata_N.parquet`,
/// `errors/errors_N.parquet`, `errors/empty_N`, `frames/frames_N.npy` and
/// `.parquet`), embeddings first; other files are not the layout's and are
/// left alone.
pub fn layout_files(out: &Path) -> Result<Vec<std::path::PathBuf>> {
    const KINDS: [(&str, &str, &str); 6] = [
        ("img_emb", "img_emb_", ".npy"),
        ("metadata", "metadata_", ".parquet"),
        ("errors", "errors_", ".parquet"),
        ("errors", "empty_", ""),
        (frames::FOLDER, "frames_", ".npy"),
        (frames::FOLDER, "frames_", ".parquet"),
    ];
    let mut found = Vec::new();
    for (sub, prefix, suffix) in KINDS {
        let dir = out.join(sub);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(IndexError::io(&dir, e)),
        };
        let mut names: Vec<std::path::PathBuf> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| IndexError::io(&dir, e))?;
            let name = entry.file_name();
            // The numbers an import reads (`shards`), so every shard it would
            // read is found.
            if name
                .to_str()
                .and_then(|n| shard_number(n, prefix, suffix))
                .is_some()
            {
                names.push(entry.path());
            }
        }
        names.sort();
        found.extend(names);
    }
    Ok(found)
}

/// Writes output shard `number` into `out`: the embeddings (`rows[i]` is
/// `vectors[i]`, each `dim` long) as `dtype`, the failures, then the metadata.
/// Each file is written to a temporary name and renamed, metadata last, so a
/// shard killed part way is never [`shard_complete`], and a retried or
/// duplicated writer replaces files with the same content. A shard without
/// rows gets the failures file and then an empty marker instead (see
/// [`empty_marker`]).
pub fn write_shard(
    out: &Path,
    number: usize,
    rows: &[ShardRow],
    vectors: &[Vec<f32>],
    dim: usize,
    dtype: Dtype,
    failures: &[ShardFailure],
) -> Result<()> {
    let [npy_path, errors_path, meta_path] = shard_paths(out, number);
    if rows.len() != vectors.len() {
        return Err(file_error(
            &npy_path,
            format!(
                "{} metadata rows for {} embeddings",
                rows.len(),
                vectors.len()
            ),
        ));
    }
    for path in [&npy_path, &errors_path, &meta_path] {
        let dir = path.parent().expect("shard files live in a folder");
        std::fs::create_dir_all(dir).map_err(|e| IndexError::io(dir, e))?;
    }
    // Every file of the shard written and synced before any is put in place
    // (a full disk then leaves none of them), its embeddings last: they are
    // what makes it a shard to a reader, so none is ever without metadata.
    let npy = if rows.is_empty() {
        None
    } else {
        let bytes = npy::encode(vectors, dim, dtype).map_err(|e| file_error(&npy_path, e))?;
        Some(staged(&npy_path, |f| {
            std::io::Write::write_all(f, &bytes).map_err(|e| e.to_string())
        })?)
    };
    let errors = staged(&errors_path, |f| {
        write_string_columns(
            f,
            &[
                StringColumn::required(
                    "key",
                    failures.iter().map(|e| Some(e.key.as_str())).collect(),
                ),
                StringColumn::required(
                    "origin",
                    failures.iter().map(|e| Some(e.origin.as_str())).collect(),
                ),
                StringColumn::required(
                    "error",
                    failures.iter().map(|e| Some(e.error.as_str())).collect(),
                ),
            ],
        )
    })?;
    let Some(npy) = npy else {
        let marker_path = empty_marker(out, number);
        let marker = staged(&marker_path, |_| Ok(()))?;
        put_in_place(&errors_path, errors)?;
        return put_in_place(&marker_path, marker);
    };
    let meta = staged(&meta_path, |f| {
        write_string_columns(
            f,
            &[
                StringColumn::required(
                    "image_path",
                    rows.iter().map(|r| Some(r.image_path.as_str())).collect(),
                ),
                StringColumn::required("key", rows.iter().map(|r| Some(r.key.as_str())).collect()),
                StringColumn::optional(
                    "caption",
                    rows.iter().map(|r| r.caption.as_deref()).collect(),
                ),
            ],
        )
    })?;
    put_in_place(&errors_path, errors)?;
    put_in_place(&meta_path, meta)?;
    put_in_place(&npy_path, npy)
}

/// The image paths of one metadata shard, read [`PATH_BATCH`] rows at a time.
struct PathRows {
    path: std::path::PathBuf,
    /// Rows in the file, as its footer says.
    len: usize,
    column: usize,
    rows: RowIter<'static>,
    /// Rows read so far.
    read: usize,
    /// Paths read and not handed out yet.
    ready: std::collections::VecDeque<String>,
}

/// Paths read from the parquet reader at a time.
const PATH_BATCH: usize = 1024;

/// Runs `read`, a call into the parquet reader, turning a panic into an
/// error message. parquet 60 panics on some damaged files instead of
/// returning an error (a corrupt page: "Decoder for dict should have been
/// set"; a row group it cannot open: "Row group is required to advance"), and
/// a damaged shard must be refused by name, the import rolled back, not the
/// process aborted. The panic hook is silenced meanwhile so no backtrace
/// reaches the user; import runs on one thread, so no other panic is hidden.
fn parquet_call<T>(read: impl FnOnce() -> T) -> std::result::Result<T, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(read));
    std::panic::set_hook(hook);
    result.map_err(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|m| m.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        format!("damaged: the parquet reader failed ({message})")
    })
}

/// A parquet file opened for reading rows: its reader, its top-level column
/// names and its row count (as its footer says).
fn open_parquet(path: &Path) -> Result<(SerializedFileReader<File>, Vec<String>, usize)> {
    let file = File::open(path).map_err(|e| IndexError::io(path, e))?;
    let reader = parquet_call(|| SerializedFileReader::new(file))
        .map_err(|e| file_error(path, e))?
        .map_err(|e| file_error(path, e))?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let names: Vec<String> = schema
        .root_schema()
        .get_fields()
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    let len = usize::try_from(reader.metadata().file_metadata().num_rows())
        .map_err(|_| file_error(path, "a negative row count"))?;
    Ok((reader, names, len))
}

impl PathRows {
    /// Opens `path` and finds its image path column (see [`PATH_COLUMNS`]).
    fn open(path: &Path) -> Result<Self> {
        let (reader, names, len) = open_parquet(path)?;
        let column = PATH_COLUMNS
            .iter()
            .find_map(|c| names.iter().position(|n| n == c))
            .ok_or_else(|| {
                file_error(
                    path,
                    format!(
                        "no image path column (looked for {}; found {})",
                        PATH_COLUMNS.join(", "),
                        names.join(", ")
                    ),
                )
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            len,
            column,
            rows: RowIter::from_file_into(Box::new(reader)),
            read: 0,
            ready: Default::default(),
        })
    }

    /// The next row's image path.
    fn next_path(&mut self) -> Result<String> {
        if self.ready.is_empty() {
            self.read_batch()?;
        }
        self.ready.pop_front().ok_or_else(|| {
            file_error(
                &self.path,
                format!("{} rows, not {} as its footer says", self.read, self.len),
            )
        })
    }

    /// Reads up to [`PATH_BATCH`] more paths into `ready`.
    fn read_batch(&mut self) -> Result<()> {
        let (rows, column, start) = (&mut self.rows, self.column, self.read);
        let batch = parquet_call(|| {
            let mut batch = Vec::with_capacity(PATH_BATCH);
            for row in rows.by_ref().take(PATH_BATCH) {
                let at = start + batch.len();
                let path = row
                    .map_err(|e| e.to_string())?
                    .get_string(column)
                    .map_err(|e| format!("row {at}: {e}"))?
                    .clone();
                batch.push(path);
            }
            Ok::<_, String>(batch)
        })
        .and_then(|batch| batch)
        .map_err(|e| file_error(&self.path, e))?;
        self.read += batch.len();
        self.ready.extend(batch);
        Ok(())
    }
}

/// The shard numbers present in `dir`, from `img_emb_{i}.npy` names, ascending.
/// The shard number `N` of a file named `{prefix}N{suffix}`, written as the
/// layout writes it (`img_emb_1.npy`; not `img_emb_01.npy` or `img_emb_+1.npy`,
/// which `parse` would also read as 1, importing shard 1 twice).
fn shard_number(name: &str, prefix: &str, suffix: &str) -> Option<usize> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    let n: usize = digits.parse().ok()?;
    (n.to_string() == digits).then_some(n)
}

fn shards(dir: &Path) -> Result<Vec<usize>> {
    let emb_dir = dir.join("img_emb");
    let entries = std::fs::read_dir(&emb_dir).map_err(|e| IndexError::io(&emb_dir, e))?;
    let mut found: Vec<usize> = entries
        .flatten()
        .filter_map(|e| shard_number(e.file_name().to_str()?, "img_emb_", ".npy"))
        .collect();
    found.sort_unstable();
    if found.is_empty() {
        return Err(file_error(&emb_dir, "no img_emb_N.npy files"));
    }
    Ok(found)
}

/// Imports embeddings made by `model_name`, whose vectors have `model_dim`
/// dimensions, from the clip-retrieval layout in `dir`. All or nothing: every
/// shard is written in one transaction, committed only when all of them were
/// read and checked (sizes, row counts, values), so a refused shard leaves the
/// index as it was. Shards are streamed, embeddings a few MB at a time
/// ([`npy::CHUNK_BYTES`]) and paths a row at a time, so memory does not grow
/// with a shard's size (SQLite spills a large transaction to its write-ahead
/// log). Vectors are stored at unit length, as an indexing run stores them:
/// search and dupes score by plain dot product. Files that exist on disk get their size and mtime, so a later
/// `seer index` of their folder treats them as unchanged instead of embedding
/// them again. Holds the index's lock (an import is a bulk update, like an
/// indexing run), and keeps the approximate index for a model with at least
/// `ann_threshold` vectors.
pub fn import(
    store: &mut Store,
    model_name: &str,
    model_dim: usize,
    dir: &Path,
    encoding: Encoding,
    ann_threshold: usize,
) -> Result<ExchangeSummary> {
    import_in_chunks(
        store,
        model_name,
        model_dim,
        dir,
        encoding,
        ann_threshold,
        npy::CHUNK_BYTES,
    )
}

/// [`import`], reading each shard's embeddings `chunk_bytes` at a time (at
/// least one row), and its paths a row at a time: memory holds one chunk,
/// however large a shard is ([`import`] reads [`npy::CHUNK_BYTES`]).
pub fn import_in_chunks(
    store: &mut Store,
    model_name: &str,
    model_dim: usize,
    dir: &Path,
    encoding: Encoding,
    ann_threshold: usize,
    chunk_bytes: usize,
) -> Result<ExchangeSummary> {
    if model_dim == 0 {
        return Err(IndexError::Invalid(format!(
            "model '{model_name}' makes 0-d vectors; nothing can be imported for it"
        )));
    }
    let _lock = IndexLock::try_acquire(store.dir())?;
    let shards = shards(dir)?;
    // Every shard's headers first: a mismatched or truncated last shard is
    // refused before hours of storing the ones before it (then rolled back).
    for &shard in &shards {
        open_shard(dir, shard, model_name, model_dim, chunk_bytes)?;
    }
    let frame_shards = frames::shards(dir)?;
    for &shard in &frame_shards {
        frames::FrameShard::open(dir, shard, model_name, model_dim, chunk_bytes)?;
    }
    let mut summary = ExchangeSummary {
        dim: model_dim,
        ..Default::default()
    };
    let db_error = store.error_mapper();
    // Dropped on any early return: rolled back, nothing of this import stays.
    let tx = store.transaction()?;
    let model_id = write::model_id(&tx, model_name, model_dim).map_err(&db_error)?;
    // The files this import stored, to count rows that name one again.
    let mut stored = std::collections::HashSet::new();
    for shard in shards {
        let (npy_path, mut embeddings, mut paths) =
            open_shard(dir, shard, model_name, model_dim, chunk_bytes)?;
        let rows = embeddings.header().rows;
        let mut row = 0;
        while let Some(chunk) = embeddings
            .next_chunk()
            .map_err(|e| read_error(&npy_path, e))?
        {
            for vector in chunk.chunks_exact(model_dim) {
                let path = paths.next_path()?;
                let vector = unit_length(vector)
                    .map_err(|why| file_error(&npy_path, format!("row {row} {why}")))?;
                let record = on_disk_record(&path);
                let id = write::upsert_file(&tx, &record).map_err(&db_error)?;
                if !stored.insert(id) {
                    summary.duplicates += 1;
                }
                write::put_embedding(&tx, id, model_id, encoding, &vector).map_err(&db_error)?;
                row += 1;
            }
        }
        summary.rows += rows;
        summary.shards += 1;
    }
    // Frames of the videos just stored (a video's earlier frames of this
    // model are replaced by the import's).
    let mut cleared = std::collections::HashSet::new();
    let stored_as = frames::StoredAs {
        model_id,
        dim: model_dim,
        encoding,
    };
    for shard in frame_shards {
        let shard = frames::FrameShard::open(dir, shard, model_name, model_dim, chunk_bytes)?;
        summary.frames += shard.store(&tx, &stored_as, &stored, &mut cleared, &db_error)?;
    }
    write::bump_generation(&tx).map_err(&db_error)?;
    tx.commit().map_err(&db_error)?;
    // Keep the approximate index in step, as an indexing run does.
    if let Some(model) = store.models()?.into_iter().find(|m| m.name == model_name) {
        crate::ann::sync(store, &model, ann_threshold)?;
    }
    Ok(summary)
}

/// Opens shard `shard` of the layout in `dir`: its embeddings' path and
/// reader, and its paths. Both headers are checked before any row is read:
/// the embeddings' dtype, shape and length, the vectors' size, and that the
/// row counts agree.
fn open_shard(
    dir: &Path,
    shard: usize,
    model_name: &str,
    model_dim: usize,
    chunk_bytes: usize,
) -> Result<(PathBuf, npy::RowReader<BufReader<File>>, PathRows)> {
    let npy_path = dir.join(format!("img_emb/img_emb_{shard}.npy"));
    let meta_path = dir.join(format!("metadata/metadata_{shard}.parquet"));
    let embeddings = open_embeddings(&npy_path, model_name, model_dim, chunk_bytes)?;
    let rows = embeddings.header().rows;
    let paths = PathRows::open(&meta_path)?;
    if paths.len != rows {
        return Err(file_error(
            &meta_path,
            format!(
                "{} paths but {} embeddings in {}",
                paths.len,
                rows,
                npy_path.display()
            ),
        ));
    }
    Ok((npy_path, embeddings, paths))
}

/// Opens one embeddings shard to be read `chunk_bytes` at a time, its header
/// and length checked, refusing vectors of another size than `model_dim`.
fn open_embeddings(
    npy_path: &Path,
    model_name: &str,
    model_dim: usize,
    chunk_bytes: usize,
) -> Result<npy::RowReader<BufReader<File>>> {
    let file = File::open(npy_path).map_err(|e| IndexError::io(npy_path, e))?;
    let len = file
        .metadata()
        .map_err(|e| IndexError::io(npy_path, e))?
        .len();
    let reader = npy::RowReader::new(BufReader::new(file), len, chunk_bytes)
        .map_err(|e| read_error(npy_path, e))?;
    let dim = reader.header().cols;
    if dim != model_dim {
        return Err(IndexError::DimensionMismatch {
            path: npy_path.to_path_buf(),
            model: model_name.to_string(),
            expected: model_dim,
            found: dim,
        });
    }
    Ok(reader)
}

fn read_error(path: &Path, e: npy::ReadError) -> IndexError {
    match e {
        npy::ReadError::Io(e) => IndexError::io(path, e),
        npy::ReadError::Invalid(message) => file_error(path, message),
    }
}

/// `vector` scaled to unit length, or why it cannot be: a vector with a
/// non-finite value, or of length zero, has no direction to compare.
fn unit_length(vector: &[f32]) -> std::result::Result<Vec<f32>, &'static str> {
    if vector.iter().any(|v| !v.is_finite()) {
        return Err("holds non-finite values");
    }
    // In f64, so large finite values cannot overflow the sum of squares.
    let norm = vector
        .iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        .sqrt();
    if !(norm > 0.0 && norm.is_finite()) {
        return Err("is all zeros (a zero vector has no direction to compare)");
    }
    Ok(vector
        .iter()
        .map(|&v| (f64::from(v) / norm) as f32)
        .collect())
}

fn on_disk_record(path: &str) -> FileRecord {
    let meta = std::fs::metadata(crate::pathcodec::to_path(path)).ok();
    FileRecord {
        path: path.to_string(),
        size: meta.as_ref().map(|m| m.len() as i64).unwrap_or(0),
        mtime_ns: meta
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parquet_writers_io_error_is_said_in_the_systems_words() {
        let full = std::io::Error::from_raw_os_error(28);
        let said = parquet_words(parquet::errors::ParquetError::External(Box::new(full)));
        assert_eq!(said, "No space left on device (os error 28)");
        let other = parquet::errors::ParquetError::General("bad schema".into());
        assert!(parquet_words(other).contains("bad schema"));
    }
}

/// Mutation fuzzing of the import's metadata reader ([`PathRows`]: parquet
/// footer, schema, pages) on files this module writes, each input under
/// `catch_unwind` on top of [`parquet_call`]'s own. The embeddings half of an
/// import is `npy`'s harness. Findings under `/tmp/fuzz-data/parquet/`. Run
/// (about 1-2 minutes in release):
/// `cargo test --release -q -p seer-index -- --ignored fuzz_`
#[cfg(test)]
mod fuzz {
    use super::*;
    use seer_testkit::fuzz_mutator::*;

    const SEED: u64 = 0x9A4_0E7;
    const ITERATIONS: usize = 20_000;

    fn seeds(dir: &Path) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let paths: Vec<String> = (0..40).map(|i| format!("/photos/img_{i:03}.jpg")).collect();
        let captions: Vec<Option<&str>> = (0..40)
            .map(|i| (i % 3 != 0).then_some("a cat on a mat"))
            .collect();
        let one = dir.join("seed.parquet");
        for n in [0usize, 1, 3, 40] {
            let mut file = File::create(&one).unwrap();
            if n == 3 {
                let p: Vec<Option<&str>> = paths[..n].iter().map(|p| Some(p.as_str())).collect();
                write_string_columns(
                    &mut file,
                    &[
                        StringColumn::required("image_path", p),
                        StringColumn::optional("caption", captions[..n].to_vec()),
                    ],
                )
                .unwrap();
            } else {
                write_paths(&mut file, &paths[..n]).unwrap();
            }
            drop(file);
            out.push(std::fs::read(&one).unwrap());
        }
        out
    }

    /// Parquet's footer: the 4-byte metadata length before the closing
    /// `PAR1`, and thrift varints just before it.
    fn mutate_footer(buf: &mut [u8], rng: &mut Rng) {
        let n = buf.len();
        if n < 12 {
            return;
        }
        if rng.chance(2) {
            put_int(buf, n - 8, 4, interesting_u32(rng), false);
        } else {
            let meta =
                u32::from_le_bytes([buf[n - 8], buf[n - 7], buf[n - 6], buf[n - 5]]) as usize;
            let start = n.saturating_sub(8 + meta);
            let at = start + rng.below(meta.min(n - 8 - start).max(1));
            buf[at] = [0, 0xFF, 0x7F, 0x80, 0x15, 0x19, 0x1C][rng.below(7)];
        }
    }

    #[test]
    #[ignore = "fuzz harness: cargo test --release -p seer-index -- --ignored fuzz_"]
    fn fuzz_parquet_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let seeds = seeds(dir.path());
        let target = dir.path().join("metadata_0.parquet");
        let mut rng = Rng::new(SEED);
        let mut found = Findings::new("parquet");
        quiet_panics(|| {
            for iter in 0..ITERATIONS {
                let mut input = seeds[rng.below(seeds.len())].clone();
                let other = &seeds[rng.below(seeds.len())];
                if rng.chance(3) {
                    mutate_footer(&mut input, &mut rng);
                }
                for _ in 0..1 + rng.below(3) {
                    mutate_once(&mut input, other, &mut rng);
                }
                std::fs::write(&target, &input).unwrap();
                found.run(iter, &input, || {
                    let mut rows = PathRows::open(&target)?;
                    for _ in 0..rows.len {
                        rows.next_path()?;
                    }
                    Ok::<_, IndexError>(())
                });
            }
        });
        found.finish("parquet", ITERATIONS);
    }
}
