//! Video frames in the exchange layout, beside the clip-retrieval files:
//! `frames/frames_{i}.npy` (one row per sampled frame) and
//! `frames/frames_{i}.parquet` (`image_path`, the video as `metadata` names
//! it, and `time`, the frame's time in seconds). The videos' own rows stay in
//! `img_emb`/`metadata` (their frames' normalised mean), so tools that read
//! the clip-retrieval layout see one row per file as before, and an import of
//! an export gets every video back with its frames: searched at their times
//! at once, not sampled again by the next `seer index`.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::data_type::{ByteArray, ByteArrayType, DoubleType};
use parquet::record::reader::RowIter;
use parquet::record::RowAccessor;
use rusqlite::Transaction;

use super::{
    file_error, open_embeddings, open_parquet, parquet_call, parquet_words, parquet_writer,
    read_error, shard_number, unit_length, write_array_and_rows,
};
use crate::error::{IndexError, Result};
use crate::npy::{self, Dtype};
use crate::store::{write, ModelInfo, Store};
use crate::vector::Encoding;

/// The folder of the frames' files, in the layout's folder.
pub(super) const FOLDER: &str = "frames";

/// Writes `model`'s video frames into `out/frames` (one shard), as `dtype`;
/// how many. Nothing is written where the index has no video.
pub(super) fn export(store: &Store, model: &ModelInfo, out: &Path, dtype: Dtype) -> Result<usize> {
    let frames = store.load_frames(model)?;
    if frames.is_empty() {
        return Ok(0);
    }
    let dir = out.join(FOLDER);
    std::fs::create_dir_all(&dir).map_err(|e| IndexError::io(&dir, e))?;
    let rows: Vec<Vec<f32>> = (0..frames.len()).map(|i| frames.row(i).to_vec()).collect();
    let paths: Vec<&str> = frames
        .file_ids
        .iter()
        .map(|id| match frames.videos.binary_search(id) {
            Ok(video) => frames.paths[video].as_str(),
            // Every row's video is among `videos` (load_frames lists them).
            Err(_) => "",
        })
        .collect();
    write_array_and_rows(
        &dir.join("frames_0.npy"),
        &rows,
        frames.dim,
        dtype,
        &dir.join("frames_0.parquet"),
        |f| write_rows(f, &paths, &frames.times),
    )?;
    Ok(frames.len())
}

/// Writes the `image_path` and `time` columns as one row group (snappy).
fn write_rows(file: &mut File, paths: &[&str], times: &[f64]) -> std::result::Result<(), String> {
    let mut writer = parquet_writer(
        file,
        "REQUIRED BYTE_ARRAY image_path (UTF8); REQUIRED DOUBLE time; ",
    )?;
    let mut group = writer.next_row_group().map_err(parquet_words)?;
    let mut column = group
        .next_column()
        .map_err(parquet_words)?
        .ok_or("no image_path column")?;
    let values: Vec<ByteArray> = paths.iter().map(|p| ByteArray::from(*p)).collect();
    column
        .typed::<ByteArrayType>()
        .write_batch(&values, None, None)
        .map_err(parquet_words)?;
    column.close().map_err(parquet_words)?;
    let mut column = group
        .next_column()
        .map_err(parquet_words)?
        .ok_or("no time column")?;
    column
        .typed::<DoubleType>()
        .write_batch(times, None, None)
        .map_err(parquet_words)?;
    column.close().map_err(parquet_words)?;
    group.close().map_err(parquet_words)?;
    writer.close().map_err(parquet_words)?;
    Ok(())
}

/// The frame shard numbers in `dir/frames`, ascending (none without it).
pub(super) fn shards(dir: &Path) -> Result<Vec<usize>> {
    let folder = dir.join(FOLDER);
    let entries = match std::fs::read_dir(&folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(IndexError::io(&folder, e)),
    };
    let mut found: Vec<usize> = entries
        .flatten()
        .filter_map(|e| shard_number(e.file_name().to_str()?, "frames_", ".npy"))
        .collect();
    found.sort_unstable();
    Ok(found)
}

/// The model an import stores frames for, and how.
pub(super) struct StoredAs {
    pub model_id: i64,
    pub dim: usize,
    pub encoding: Encoding,
}

/// One frame shard opened for reading, both headers checked: the
/// embeddings' size and the row counts.
pub(super) struct FrameShard {
    npy_path: PathBuf,
    embeddings: npy::RowReader<std::io::BufReader<File>>,
    rows: FrameRows,
}

impl FrameShard {
    pub(super) fn open(
        dir: &Path,
        shard: usize,
        model_name: &str,
        model_dim: usize,
        chunk_bytes: usize,
    ) -> Result<Self> {
        let npy_path = dir.join(format!("{FOLDER}/frames_{shard}.npy"));
        let meta_path = dir.join(format!("{FOLDER}/frames_{shard}.parquet"));
        let embeddings = open_embeddings(&npy_path, model_name, model_dim, chunk_bytes)?;
        let rows = FrameRows::open(&meta_path)?;
        let count = embeddings.header().rows;
        if rows.len != count {
            return Err(file_error(
                &meta_path,
                format!(
                    "{} frames but {count} embeddings in {}",
                    rows.len,
                    npy_path.display()
                ),
            ));
        }
        Ok(Self {
            npy_path,
            embeddings,
            rows,
        })
    }

    /// Stores the shard's frames in `tx`, each of a video this import stored
    /// (`imported`, file ids): a frame of another path is refused by row, as
    /// is a time that is no time. A video's earlier frames (of this model)
    /// are replaced the first time it is met (`cleared`). How many frames.
    pub(super) fn store(
        mut self,
        tx: &Transaction,
        model: &StoredAs,
        imported: &HashSet<i64>,
        cleared: &mut HashSet<i64>,
        db_error: &impl Fn(rusqlite::Error) -> IndexError,
    ) -> Result<usize> {
        let mut row = 0;
        // Rows come grouped by video: its id is looked up once a run.
        let mut last: Option<(String, i64)> = None;
        while let Some(chunk) = self
            .embeddings
            .next_chunk()
            .map_err(|e| read_error(&self.npy_path, e))?
        {
            for vector in chunk.chunks_exact(model.dim) {
                let (path, time) = self.rows.next()?;
                let bad = |why: String| file_error(&self.rows.path, format!("row {row}: {why}"));
                if !(time.is_finite() && time >= 0.0) {
                    return Err(bad(format!("time {time} is not a time in seconds")));
                }
                let id = match &last {
                    Some((known, id)) if *known == path => *id,
                    _ => {
                        let id = write::id_of_path(tx, &path)
                            .map_err(db_error)?
                            .filter(|id| imported.contains(id))
                            .ok_or_else(|| {
                                bad(format!(
                                    "a frame of {path}, which no row of img_emb/metadata names"
                                ))
                            })?;
                        last = Some((path, id));
                        id
                    }
                };
                let vector = unit_length(vector)
                    .map_err(|why| file_error(&self.npy_path, format!("row {row} {why}")))?;
                if cleared.insert(id) {
                    write::clear_frames(tx, id, model.model_id).map_err(db_error)?;
                }
                write::put_frame(tx, id, model.model_id, model.encoding, time, &vector)
                    .map_err(db_error)?;
                row += 1;
            }
        }
        Ok(row)
    }
}

/// The (path, time) rows of one frames parquet file, a batch at a time.
struct FrameRows {
    path: PathBuf,
    len: usize,
    columns: (usize, usize),
    rows: RowIter<'static>,
    read: usize,
    ready: std::collections::VecDeque<(String, f64)>,
}

/// Rows read from a frames parquet file at a time.
const BATCH: usize = 1024;

impl FrameRows {
    fn open(path: &Path) -> Result<Self> {
        let (reader, names, len) = open_parquet(path)?;
        let column = |name: &str| {
            names.iter().position(|n| n == name).ok_or_else(|| {
                file_error(
                    path,
                    format!("no {name} column (found {})", names.join(", ")),
                )
            })
        };
        let columns = (column("image_path")?, column("time")?);
        Ok(Self {
            path: path.to_path_buf(),
            len,
            columns,
            rows: RowIter::from_file_into(Box::new(reader)),
            read: 0,
            ready: Default::default(),
        })
    }

    fn next(&mut self) -> Result<(String, f64)> {
        if self.ready.is_empty() {
            let (rows, (path_at, time_at), start) = (&mut self.rows, self.columns, self.read);
            let batch = parquet_call(|| {
                let mut batch = Vec::with_capacity(BATCH);
                for row in rows.by_ref().take(BATCH) {
                    let at = start + batch.len();
                    let row = row.map_err(|e| e.to_string())?;
                    let path = row
                        .get_string(path_at)
                        .map_err(|e| format!("row {at}: {e}"))?
                        .clone();
                    let time = row
                        .get_double(time_at)
                        .map_err(|e| format!("row {at}: {e}"))?;
                    batch.push((path, time));
                }
                Ok::<_, String>(batch)
            })
            .and_then(|batch| batch)
            .map_err(|e| file_error(&self.path, e))?;
            self.read += batch.len();
            self.ready.extend(batch);
        }
        self.ready.pop_front().ok_or_else(|| {
            file_error(
                &self.path,
                format!("{} rows, not {} as its footer says", self.read, self.len),
            )
        })
    }
}
