//! Video frames: a video is one file row, whose `embeddings` vector is the
//! normalised mean of its frames (what duplicates, exports and "more like
//! this" use, and the mark that it is indexed), and whose sampled frames keep
//! their own vectors here, with their times. Search ranks a video by its best
//! frame and reports that frame's time ([`crate::Searcher`]).
//!
//! The table is added without a schema version bump, as `walk_errors` was: an
//! index opened for writing gains it, a reader of an older index finds none,
//! and an older seer reading a newer index sees videos as files with one
//! vector (their mean), which still ranks them sensibly.

use rusqlite::{params, OptionalExtension, Transaction};

use super::{ModelInfo, Store};
use crate::error::Result;
use crate::vector::Encoding;

pub(super) const FRAMES_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS frames (
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    model_id INTEGER NOT NULL REFERENCES models(id),
    time_ms INTEGER NOT NULL,
    encoding INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (file_id, model_id, time_ms)
) WITHOUT ROWID;
";

/// One model's frames of every video, ordered by file id then time: row `i`
/// is frame `times[i]` (seconds) of the video `file_ids[i]`.
#[derive(Clone, Debug, Default)]
pub struct FrameSet {
    pub dim: usize,
    pub file_ids: Vec<i64>,
    pub times: Vec<f64>,
    pub data: Vec<f32>,
    /// The videos (distinct file ids, ascending) and their paths.
    pub videos: Vec<i64>,
    pub paths: Vec<String>,
}

impl FrameSet {
    pub fn len(&self) -> usize {
        self.file_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.file_ids.is_empty()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Whether file `id` is a video with frames here.
    pub fn is_video(&self, id: i64) -> bool {
        self.videos.binary_search(&id).is_ok()
    }

    /// The rows of video `id`'s frames (empty when it has none).
    pub fn rows_of(&self, id: i64) -> std::ops::Range<usize> {
        let start = self.file_ids.partition_point(|&f| f < id);
        let end = self.file_ids.partition_point(|&f| f <= id);
        start..end
    }

    /// Each video's best frame for `query`: (video index into `videos`,
    /// cosine, time), one per video, in `videos` order.
    pub fn best_frames(&self, query: &[f32]) -> Vec<(usize, f32, f64)> {
        let mut best: Vec<(usize, f32, f64)> = Vec::with_capacity(self.videos.len());
        let mut video = 0;
        for i in 0..self.len() {
            while self.videos[video] != self.file_ids[i] {
                video += 1;
            }
            let score = seer_ann::simd::dot_f32(self.row(i), query);
            match best.last_mut() {
                Some(b) if b.0 == video => {
                    if score > b.1 {
                        *b = (video, score, self.times[i]);
                    }
                }
                _ => best.push((video, score, self.times[i])),
            }
        }
        best
    }
}

/// A video's sampled frame: its time in seconds and its vector.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredFrame {
    pub time: f64,
    pub vector: Vec<f32>,
}

impl Store {
    /// Whether the index has the frames table (an index last written by a
    /// seer without video support has not).
    fn has_frames_table(&self) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'frames')",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.db(e))
    }

    /// Every frame of `model`, damaged vectors left out with a warning.
    pub fn load_frames(&self, model: &ModelInfo) -> Result<FrameSet> {
        let mut set = FrameSet {
            dim: model.dim,
            ..Default::default()
        };
        if !self.has_frames_table()? {
            return Ok(set);
        }
        let mut stmt = self
            .conn
            .prepare(
                "SELECT fr.file_id, f.path, fr.time_ms, fr.encoding, fr.vector
                 FROM frames fr JOIN files f ON f.id = fr.file_id
                 WHERE fr.model_id = ?1 ORDER BY fr.file_id, fr.time_ms",
            )
            .map_err(|e| self.db(e))?;
        let mut rows = stmt.query([model.id]).map_err(|e| self.db(e))?;
        while let Some(row) = rows.next().map_err(|e| self.db(e))? {
            let id: i64 = row.get(0).map_err(|e| self.db(e))?;
            let time_ms: i64 = row.get(2).map_err(|e| self.db(e))?;
            let encoding = Encoding::from_code(row.get(3).map_err(|e| self.db(e))?);
            let blob = row
                .get_ref(4)
                .map_err(|e| self.db(e))?
                .as_blob()
                .map_err(|e| self.db(e.into()))?;
            if encoding
                .and_then(|enc| enc.decode_into(blob, model.dim, &mut set.data))
                .is_none()
            {
                let path: String = row.get(1).map_err(|e| self.db(e))?;
                tracing::warn!(
                    "{path}: the stored vector of its frame at {:.3} s is damaged; re-index to repair it",
                    time_ms as f64 / 1000.0
                );
                continue;
            }
            if set.videos.last() != Some(&id) {
                set.videos.push(id);
                set.paths.push(row.get(1).map_err(|e| self.db(e))?);
            }
            set.file_ids.push(id);
            set.times.push(time_ms as f64 / 1000.0);
        }
        Ok(set)
    }

    /// The frames of one video, in time order (empty when it is not a video).
    pub fn frames_of(&self, file_id: i64, model: &ModelInfo) -> Result<Vec<StoredFrame>> {
        if !self.has_frames_table()? {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn
            .prepare(
                "SELECT time_ms, encoding, vector FROM frames
                 WHERE file_id = ?1 AND model_id = ?2 ORDER BY time_ms",
            )
            .map_err(|e| self.db(e))?;
        let mut rows = stmt
            .query(params![file_id, model.id])
            .map_err(|e| self.db(e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.db(e))? {
            let time_ms: i64 = row.get(0).map_err(|e| self.db(e))?;
            let encoding = Encoding::from_code(row.get(1).map_err(|e| self.db(e))?);
            let blob: Vec<u8> = row.get(2).map_err(|e| self.db(e))?;
            let mut vector = Vec::with_capacity(model.dim);
            if encoding
                .and_then(|enc| enc.decode_into(&blob, model.dim, &mut vector))
                .is_some()
            {
                out.push(StoredFrame {
                    time: time_ms as f64 / 1000.0,
                    vector,
                });
            }
        }
        Ok(out)
    }

    /// The time (seconds) of the video's frame most like the whole video:
    /// the one nearest its mean vector (the earliest of equals), by the
    /// first model with frames of it. What a caption of the video describes;
    /// None when it has no frames (a video imported with its vector only).
    pub fn representative_frame(&self, file_id: i64) -> Result<Option<f64>> {
        for model in self.models()? {
            let frames = self.frames_of(file_id, &model)?;
            let Some(mean) = self.vector_of_id(file_id, &model)? else {
                continue;
            };
            let mut best: Option<(f32, f64)> = None;
            for frame in &frames {
                let score = seer_ann::simd::dot_f32(&frame.vector, &mean);
                if best.is_none_or(|(top, _)| score > top) {
                    best = Some((score, frame.time));
                }
            }
            if let Some((_, time)) = best {
                return Ok(Some(time));
            }
        }
        Ok(None)
    }

    /// The times (seconds) of one video's frames, in order (empty when it
    /// is not a video): what a detail view lists, without the vectors.
    pub fn frame_times(&self, file_id: i64, model: &ModelInfo) -> Result<Vec<f64>> {
        if !self.has_frames_table()? {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn
            .prepare(
                "SELECT time_ms FROM frames WHERE file_id = ?1 AND model_id = ?2 ORDER BY time_ms",
            )
            .map_err(|e| self.db(e))?;
        let times = stmt
            .query_map(params![file_id, model.id], |r| r.get::<_, i64>(0))
            .map_err(|e| self.db(e))?
            .map(|t| t.map(|ms| ms as f64 / 1000.0))
            .collect::<rusqlite::Result<Vec<f64>>>()
            .map_err(|e| self.db(e))?;
        Ok(times)
    }

    /// Whether file `file_id` has frames of model `model_id`.
    pub fn has_frames(&self, file_id: i64, model_id: i64) -> Result<bool> {
        if !self.has_frames_table()? {
            return Ok(false);
        }
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM frames WHERE file_id = ?1 AND model_id = ?2)",
                params![file_id, model_id],
                |r| r.get(0),
            )
            .map_err(|e| self.db(e))
    }

    /// How many videos and frames `model` has.
    pub fn video_counts(&self, model: &ModelInfo) -> Result<(usize, usize)> {
        if !self.has_frames_table()? {
            return Ok((0, 0));
        }
        self.conn
            .query_row(
                "SELECT COUNT(DISTINCT file_id), COUNT(*) FROM frames WHERE model_id = ?1",
                [model.id],
                |r| Ok((r.get::<_, i64>(0)? as usize, r.get::<_, i64>(1)? as usize)),
            )
            .optional()
            .map(|c| c.unwrap_or((0, 0)))
            .map_err(|e| self.db(e))
    }
}

/// A frame time as stored: whole milliseconds.
fn time_ms(seconds: f64) -> i64 {
    (seconds * 1000.0).round() as i64
}

/// Replaces the frames of `file_id` for `model_id` with `frames` (time in
/// seconds, vector).
pub fn put_frames(
    tx: &Transaction,
    file_id: i64,
    model_id: i64,
    encoding: Encoding,
    frames: &[(f64, Vec<f32>)],
) -> rusqlite::Result<()> {
    tx.execute(
        "DELETE FROM frames WHERE file_id = ?1 AND model_id = ?2",
        params![file_id, model_id],
    )?;
    let mut insert = tx.prepare_cached(
        "INSERT OR REPLACE INTO frames (file_id, model_id, time_ms, encoding, vector)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (time, vector) in frames {
        insert.execute(params![
            file_id,
            model_id,
            time_ms(*time),
            encoding.code(),
            encoding.encode(vector)
        ])?;
    }
    Ok(())
}

/// Adds one frame of `file_id` for `model_id` (an import's row; see
/// [`clear_frames`]).
pub fn put_frame(
    tx: &Transaction,
    file_id: i64,
    model_id: i64,
    encoding: Encoding,
    time: f64,
    vector: &[f32],
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO frames (file_id, model_id, time_ms, encoding, vector)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        file_id,
        model_id,
        time_ms(time),
        encoding.code(),
        encoding.encode(vector)
    ])
    .map(|_| ())
}

/// Removes the frames of `file_id` for `model_id`.
pub fn clear_frames(tx: &Transaction, file_id: i64, model_id: i64) -> rusqlite::Result<()> {
    tx.execute(
        "DELETE FROM frames WHERE file_id = ?1 AND model_id = ?2",
        params![file_id, model_id],
    )
    .map(|_| ())
}

/// Takes every video's vectors and frames out (of every model), so the next
/// run samples them again; how many videos.
pub fn forget_videos(tx: &Transaction) -> rusqlite::Result<usize> {
    tx.execute(
        "DELETE FROM embeddings WHERE file_id IN (SELECT DISTINCT file_id FROM frames)",
        [],
    )?;
    tx.execute(
        "DELETE FROM captions WHERE file_id IN (SELECT DISTINCT file_id FROM frames)",
        [],
    )?;
    let videos: i64 = tx.query_row("SELECT COUNT(DISTINCT file_id) FROM frames", [], |r| {
        r.get(0)
    })?;
    tx.execute("DELETE FROM frames", [])?;
    Ok(videos as usize)
}

/// Copies a video's frames to a copy of it (same content).
pub fn copy_frames(tx: &Transaction, from: i64, to: i64) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO frames (file_id, model_id, time_ms, encoding, vector)
         SELECT ?2, model_id, time_ms, encoding, vector FROM frames WHERE file_id = ?1",
        params![from, to],
    )
    .map(|_| ())
}
