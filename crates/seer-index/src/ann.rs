//! The approximate index beside the database, one per model, used automatically
//! once a model has more than a threshold of vectors ([`ANN_THRESHOLD`] unless
//! the caller gives another; [`crate::Searcher`] decides which search runs).
//!
//! The database stays the source of truth: after each indexing run the graph is
//! brought up to date by difference (new row ids inserted, vanished ones removed:
//! no rebuild) and the database generation it reflects is recorded beside it. A
//! search uses the graph only when that generation is current; otherwise (a crash
//! mid-run, a missing or damaged file) it falls back to exact search, which is
//! always correct, and the next `seer index` repairs the graph.
//!
//! The generation is recorded with its random token ([`GenerationStamp`]): a
//! power cut can undo the database's last commits (`synchronous=NORMAL`) but
//! not the fsynced files here, and the counter is then reused by other content.
//! For the same reason row ids can be reused, so a graph is brought up to date
//! by difference only if the database still holds the commit of its *lineage*
//! (a token drawn after the graph's content was read, stored in both places);
//! otherwise it is built afresh.

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use seer_ann::{Hnsw, HnswParams};

use crate::error::Result;
use crate::search::{compile_glob, Hit, KeepId, SearchOptions};
use crate::store::{GenerationStamp, ModelInfo, Store};

/// Below this many vectors exact search is fast enough (measured: 7.8 ms per query
/// for 100,000 512-d vectors on 2 cores, so about 4 ms at 50,000) and needs no
/// extra structure.
pub const ANN_THRESHOLD: usize = 50_000;

fn graph_path(dir: &Path, model: &ModelInfo) -> PathBuf {
    dir.join(format!("ann-model-{}.hnsw", model.id))
}

fn generation_path(dir: &Path, model: &ModelInfo) -> PathBuf {
    dir.join(format!("ann-model-{}.generation", model.id))
}

/// The meta key of the model's graph lineage in the database.
fn lineage_key(model: &ModelInfo) -> String {
    format!("ann_lineage_{}", model.id)
}

/// What a generation file says.
#[derive(Debug, Default, PartialEq, Eq)]
struct Record {
    /// The database state the graph reflects; None while it is being changed.
    stamp: Option<GenerationStamp>,
    /// The lineage the graph's ids belong to. None for a file an older seer
    /// wrote (a bare counter), or none at all: matched by a database that has
    /// no lineage either (one that older seer wrote).
    lineage: Option<u64>,
}

/// `v2 COUNTER TOKEN LINEAGE` (hex token and lineage, `-` for none), or
/// `v2 - LINEAGE` while the graph is being changed. Anything else (the bare
/// counter an older seer wrote) claims nothing: the next sync brings the
/// graph current.
fn parse_record(text: &str) -> Record {
    let hex = |s: &str| u64::from_str_radix(s, 16).ok();
    let fields: Vec<&str> = text.split_whitespace().collect();
    match fields[..] {
        ["v2", "-", lineage] => Record {
            stamp: None,
            lineage: hex(lineage),
        },
        ["v2", counter, token, lineage] => Record {
            stamp: counter
                .parse()
                .ok()
                .zip(hex(token))
                .map(|(counter, token)| GenerationStamp { counter, token }),
            lineage: hex(lineage),
        },
        _ => Record::default(),
    }
}

fn lineage_text(lineage: Option<u64>) -> String {
    lineage.map_or_else(|| "-".to_string(), |l| format!("{l:016x}"))
}

fn read_record(dir: &Path, model: &ModelInfo) -> Record {
    std::fs::read_to_string(generation_path(dir, model))
        .map(|text| parse_record(&text))
        .unwrap_or_default()
}

/// The database state the model's graph file was recorded as reflecting.
fn recorded_generation(dir: &Path, model: &ModelInfo) -> Option<GenerationStamp> {
    read_record(dir, model).stamp
}

fn write_record(dir: &Path, model: &ModelInfo, text: String) -> Result<()> {
    let path = generation_path(dir, model);
    seer_util::fs::write(&path, text.as_bytes(), seer_util::fs::Durability::Fsync)
        .map_err(|e| crate::IndexError::io(path, e))
}

/// Records, durably, that the graph no longer claims to be current (keeping
/// its lineage): before a graph file is changed.
fn invalidate(dir: &Path, model: &ModelInfo, lineage: Option<u64>) -> Result<()> {
    write_record(dir, model, format!("v2 - {}\n", lineage_text(lineage)))
}

/// Removes the generation file, durably (the folder is synced): the graph
/// goes too.
fn remove_record(dir: &Path, model: &ModelInfo) -> Result<()> {
    let path = generation_path(dir, model);
    match std::fs::remove_file(&path) {
        Ok(()) => seer_util::fs::sync_parent(&path).map_err(|e| crate::IndexError::io(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(crate::IndexError::io(path, e)),
    }
}

/// Records that the graph file reflects `stamp`, in `lineage`: once the graph
/// is durably in place, never before.
fn record_generation(
    dir: &Path,
    model: &ModelInfo,
    stamp: GenerationStamp,
    lineage: Option<u64>,
) -> Result<()> {
    let GenerationStamp { counter, token } = stamp;
    let lineage = lineage_text(lineage);
    write_record(dir, model, format!("v2 {counter} {token:016x} {lineage}\n"))
}

/// A new lineage for the model's graph, committed to the database: after the
/// graph's content was read (a power cut that undoes any of that content
/// undoes this commit too), before any file names it.
fn new_lineage(store: &Store, model: &ModelInfo) -> Result<Option<u64>> {
    store.new_token(&lineage_key(model)).map(Some)
}

/// Removes the temporaries a killed save of the model's graph or generation
/// left beside them (`.ann-model-N.hnsw.XXXXXX.tmp`: as large as the graph).
/// Only while holding the index lock: nobody else is writing them then.
fn remove_temporaries(dir: &Path, model: &ModelInfo) {
    let prefixes = [
        format!(".ann-model-{}.hnsw.", model.id),
        format!(".ann-model-{}.generation.", model.id),
    ];
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if name.ends_with(".tmp") && prefixes.iter().any(|p| name.starts_with(p.as_str())) {
            if let Err(e) = std::fs::remove_file(entry.path()) {
                tracing::warn!(path = %entry.path().display(), error = %e, "could not remove a leftover temporary");
            }
        }
    }
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct AnnSync {
    pub inserted: usize,
    pub removed: usize,
    pub total: usize,
}

/// Vectors decoded at a time to bring a graph up to date: the graph keeps its
/// own f16 copy, so holding every vector as f32 beside it (2 GB for a million
/// 512-d vectors) would double an import's peak memory.
const SYNC_CHUNK_ROWS: usize = 65_536;

/// Brings the model's graph up to date with the database (or drops it when the
/// model is below the threshold). Returns None when no graph is kept.
pub fn sync(store: &Store, model: &ModelInfo, threshold: usize) -> Result<Option<AnnSync>> {
    sync_in_chunks(store, model, threshold, SYNC_CHUNK_ROWS)
}

/// [`sync`], decoding `chunk_rows` vectors at a time.
pub(crate) fn sync_in_chunks(
    store: &Store,
    model: &ModelInfo,
    threshold: usize,
    chunk_rows: usize,
) -> Result<Option<AnnSync>> {
    let path = graph_path(store.dir(), model);
    let generation = store.generation_stamp()?;
    if model.vectors < threshold {
        let _ = std::fs::remove_file(generation_path(store.dir(), model));
        return Ok(None);
    }
    let record = read_record(store.dir(), model);
    // A run that committed nothing leaves the graph current: skip decoding every
    // vector (seconds at a million).
    if record.stamp == Some(generation) && path.is_file() {
        return Ok(Some(AnnSync {
            inserted: 0,
            removed: 0,
            total: model.vectors,
        }));
    }
    // Outside its lineage the graph's row ids may name other content now
    // (the database lost commits and reused them): start afresh.
    let graph = match record.lineage == store.token(&lineage_key(model))? {
        true => Hnsw::load(&path).ok().filter(|g| g.dim() == model.dim),
        false => {
            tracing::info!(
                "the approximate index of model {} does not match the database; building it again",
                model.name
            );
            None
        }
    };
    let mut graph = graph.unwrap_or_else(|| Hnsw::new(model.dim, HnswParams::default()));
    remove_temporaries(store.dir(), model);
    let (in_db, _) = store.ids_and_paths(model)?;
    let in_db: HashSet<u64> = in_db.into_iter().map(|id| id as u64).collect();
    let stale: Vec<u64> = graph.ids().filter(|id| !in_db.contains(id)).collect();
    drop(in_db);
    for id in &stale {
        graph.remove(*id);
    }
    let dim = model.dim;
    let mut inserted = 0;
    store.for_each_vector_chunk(model, chunk_rows, |ids, data| {
        let new: Vec<(u64, &[f32])> = ids
            .iter()
            .zip(data.chunks_exact(dim))
            .filter(|(&id, _)| !graph.contains(id as u64))
            .map(|(&id, v)| (id as u64, v))
            .collect();
        inserted += new.len();
        Ok(graph.insert_batch(&new)?)
    })?;
    let new = inserted;
    let lineage = new_lineage(store, model)?;
    // Invalidate first, durably: a crash while saving must not leave a graph
    // that claims to be current. (The save itself leaves the previous graph or
    // the new one: a delta whose append is cut short is ignored on load, a
    // whole base is renamed into place; both of the new lineage.)
    invalidate(store.dir(), model, lineage)?;
    graph.save(&path)?;
    record_generation(store.dir(), model, generation, lineage)?;
    Ok(Some(AnnSync {
        inserted: new,
        removed: stale.len(),
        total: graph.len(),
    }))
}

/// Builds the model's graph again from the stored vectors, whatever is on
/// disk. [`sync`] only inserts and removes by difference, so the links of a
/// graph built by an older construction (seer before the best-first upper
/// layers, say) stay as they were; this gives the whole graph today's. Below
/// the threshold the graph is dropped.
///
/// The new graph is built in memory beside the old file, which searches keep
/// using meanwhile, and replaces it only once complete (see
/// [`Hnsw::save_whole`]): a rebuild that is killed or fails leaves the old
/// graph in place and in use. The caller holds the index lock.
pub fn rebuild(store: &Store, model: &ModelInfo, threshold: usize) -> Result<Option<AnnSync>> {
    rebuild_in_chunks(store, model, threshold, SYNC_CHUNK_ROWS)
}

/// [`rebuild`], decoding `chunk_rows` vectors at a time.
pub(crate) fn rebuild_in_chunks(
    store: &Store,
    model: &ModelInfo,
    threshold: usize,
    chunk_rows: usize,
) -> Result<Option<AnnSync>> {
    let dir = store.dir();
    remove_temporaries(dir, model);
    let path = graph_path(dir, model);
    if model.vectors < threshold {
        // The generation first: a crash in between must not leave a graph
        // that claims to be current.
        remove_record(dir, model)?;
        for file in [path.clone(), seer_ann::log_path(&path)] {
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(crate::IndexError::io(file, e)),
            }
        }
        return Ok(None);
    }
    // Before the vectors are read: should the database change meanwhile (a
    // writer without the lock), the graph is recorded as older than it is,
    // which only makes searches exact.
    let generation = store.generation_stamp()?;
    let mut graph = Hnsw::new(model.dim, HnswParams::default());
    let dim = model.dim;
    store.for_each_vector_chunk(model, chunk_rows, |ids, data| {
        let rows: Vec<(u64, &[f32])> = ids
            .iter()
            .zip(data.chunks_exact(dim))
            .map(|(&id, v)| (id as u64, v))
            .collect();
        Ok(graph.insert_batch(&rows)?)
    })?;
    // The store may be read only, so no new lineage: instead every commit
    // so far (the graph's content, the lineage's) is made durable, so no
    // power cut can undo them and the database's lineage holds for this
    // graph too. The old graph, recorded as reflecting this same generation,
    // stays current until the rename; one recorded for another generation is
    // invalidated first, so the new graph never inherits its claim.
    store.sync_to_disk()?;
    let lineage = store.token(&lineage_key(model))?;
    match recorded_generation(dir, model) == Some(generation) {
        true => record_generation(dir, model, generation, lineage)?,
        false => invalidate(dir, model, lineage)?,
    }
    graph.save_whole(&path)?;
    record_generation(dir, model, generation, lineage)?;
    Ok(Some(AnnSync {
        inserted: graph.len(),
        removed: 0,
        total: graph.len(),
    }))
}

/// Where a model's approximate-search graph stands (what `seer status` shows).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GraphState {
    /// No graph: the model is below the threshold (exact search), or none was
    /// built yet.
    None,
    /// The graph reflects the database: searches use it.
    Current,
    /// A graph exists but the database changed since (searches fall back to
    /// exact search until the next `seer index` or `seer import`).
    OutOfDate,
}

/// The state of `model`'s graph, from the files beside the database (the
/// graph itself is not read).
pub fn graph_state(store: &Store, model: &ModelInfo) -> Result<GraphState> {
    if !graph_path(store.dir(), model).is_file() {
        return Ok(GraphState::None);
    }
    Ok(
        match recorded_generation(store.dir(), model) == Some(store.generation_stamp()?) {
            true => GraphState::Current,
            false => GraphState::OutOfDate,
        },
    )
}

/// The model's graph if it reflects database state `generation`.
pub(crate) fn load_current(
    store: &Store,
    model: &ModelInfo,
    generation: GenerationStamp,
) -> Option<Hnsw> {
    if recorded_generation(store.dir(), model) != Some(generation) {
        tracing::info!("the approximate index is out of date; searching exactly (run `seer index` to refresh it)");
        return None;
    }
    Hnsw::load(&graph_path(store.dir(), model)).ok()
}

/// Approximate ranking with the paths supplied by the caller: `all_paths` (ids
/// ascending, row-aligned paths) is asked for only when a path filter needs it;
/// `path_of` names each hit.
pub fn rank_graph<'a>(
    graph: &Hnsw,
    query: &[f32],
    options: &SearchOptions,
    all_paths: impl FnOnce() -> Result<(Cow<'a, [i64]>, Cow<'a, [String]>)>,
    path_of: impl Fn(i64) -> Result<Option<String>>,
) -> Result<Vec<Hit>> {
    rank_graph_where(graph, query, options, all_paths, path_of, None)
}

/// [`rank_graph`] returning only files that `keep` (when given) accepts.
pub fn rank_graph_where<'a>(
    graph: &Hnsw,
    query: &[f32],
    options: &SearchOptions,
    all_paths: impl FnOnce() -> Result<(Cow<'a, [i64]>, Cow<'a, [String]>)>,
    path_of: impl Fn(i64) -> Result<Option<String>>,
    keep: Option<KeepId<'_>>,
) -> Result<Vec<Hit>> {
    let ef = Some(options.k.max(graph.params().ef_search));
    let hits = match (compile_glob(options.path_glob.as_deref())?, keep) {
        (None, None) => graph.search(query, options.k, ef),
        (None, Some(keep)) => {
            graph.search_filtered(query, options.k, ef, &|id: u64| keep(id as i64))
        }
        (Some(glob), keep) => {
            let (ids, paths) = all_paths()?;
            let keep = |id: u64| {
                ids.binary_search(&(id as i64))
                    .is_ok_and(|row| glob.is_match(&paths[row]))
                    && keep.is_none_or(|k| k(id as i64))
            };
            graph.search_filtered(query, options.k, ef, &keep)
        }
    };
    let mut out = Vec::with_capacity(hits.len());
    for (id, score) in hits {
        let score = crate::search::clamp_cosine(score);
        if options.min_score.is_some_and(|m| score < m) {
            continue;
        }
        if let Some(path) = path_of(id as i64)? {
            out.push(Hit {
                path,
                score,
                id: id as i64,
                time: None,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::rank_exact_where;
    use crate::store::write;
    use crate::test_index::store_with_vectors;
    use crate::VectorSet;

    /// The rebuild deleted the graph and its generation before building: one
    /// that failed part way (here a stored vector it cannot read) left no
    /// graph, and every search exact, until the next run.
    #[test]
    fn a_rebuild_that_fails_part_way_leaves_the_old_graph_current() {
        let dir = tempfile::tempdir().unwrap();
        let (store, model) = store_with_vectors(dir.path());
        sync_in_chunks(&store, &model, 10, 7).unwrap().unwrap();
        let graph = std::fs::read(graph_path(dir.path(), &model)).unwrap();
        let generation = store.generation_stamp().unwrap();
        assert_eq!(graph_state(&store, &model).unwrap(), GraphState::Current);

        // Text where a vector's bytes belong, after the first chunks.
        let db = rusqlite::Connection::open(dir.path().join("index.sqlite")).unwrap();
        db.execute(
            "UPDATE embeddings SET vector = 'not a vector' WHERE file_id = 30",
            [],
        )
        .unwrap();
        drop(db);
        assert!(rebuild_in_chunks(&store, &model, 10, 7).is_err());

        assert_eq!(store.generation_stamp().unwrap(), generation);
        assert_eq!(
            std::fs::read(graph_path(dir.path(), &model)).unwrap(),
            graph
        );
        assert_eq!(graph_state(&store, &model).unwrap(), GraphState::Current);
        assert!(load_current(&store, &model, generation).is_some());
    }

    /// A rebuild replaces the graph file whole (a new file, its delta log
    /// gone) and records it as current; temporaries a killed save left go.
    #[test]
    fn a_rebuild_swaps_in_a_whole_new_graph_and_records_it_current() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, model) = store_with_vectors(dir.path());
        sync_in_chunks(&store, &model, 10, 7).unwrap().unwrap();
        // One file fewer: the next sync appends the change to the log.
        let tx = store.transaction().unwrap();
        write::remove_path(&tx, "/p/3.jpg").unwrap();
        write::bump_generation(&tx).unwrap();
        tx.commit().unwrap();
        let model = store.choose_model(Some("m")).unwrap();
        let synced = sync_in_chunks(&store, &model, 10, 7).unwrap().unwrap();
        assert_eq!((synced.removed, synced.total), (1, 39));
        let path = graph_path(dir.path(), &model);
        assert!(seer_ann::log_path(&path).is_file());
        let left = dir
            .path()
            .join(format!(".ann-model-{}.hnsw.a1b2c3.tmp", model.id));
        std::fs::write(&left, b"half a graph").unwrap();
        #[cfg(unix)]
        let before = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());

        let built = rebuild_in_chunks(&store, &model, 10, 7).unwrap().unwrap();
        assert_eq!((built.inserted, built.removed, built.total), (39, 0, 39));
        #[cfg(unix)]
        assert_ne!(
            std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap()),
            before
        );
        assert!(!seer_ann::log_path(&path).exists());
        assert!(!left.exists());
        assert_eq!(graph_state(&store, &model).unwrap(), GraphState::Current);
        let graph = load_current(&store, &model, store.generation_stamp().unwrap()).unwrap();
        assert_eq!(graph.len(), 39);

        // Below the threshold, the graph and its record are dropped.
        assert!(rebuild_in_chunks(&store, &model, 1000, 7)
            .unwrap()
            .is_none());
        assert_eq!(graph_state(&store, &model).unwrap(), GraphState::None);
        assert!(!generation_path(dir.path(), &model).exists());
    }

    /// 60 unit vectors in 8-d, ids 1..=60, every third path a PNG.
    fn vectors() -> VectorSet {
        let dim = 8;
        let mut set = VectorSet {
            dim,
            ..Default::default()
        };
        for i in 0..60u32 {
            let v: Vec<f32> = (0..dim)
                .map(|d| ((i * 31 + d as u32 * 17) % 23) as f32 - 11.0)
                .collect();
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            set.data.extend(v.iter().map(|x| x / n));
            set.ids.push(i as i64 + 1);
            let ext = if i % 3 == 0 { "png" } else { "jpg" };
            set.paths.push(format!("/photos/{i}.{ext}"));
        }
        set
    }

    #[test]
    fn the_graph_and_exact_search_apply_the_same_keep_filter() {
        let set = vectors();
        let mut graph = Hnsw::new(set.dim, HnswParams::default());
        for row in 0..set.len() {
            graph.insert(set.ids[row] as u64, set.row(row)).unwrap();
        }
        let query = set.row(0).to_vec();
        // The query photo itself (id 1) left out, and only even ids.
        let keep = |id: i64| id != 1 && id % 2 == 0;
        for glob in [None, Some("*.png".to_string())] {
            let options = SearchOptions {
                k: 10,
                min_score: None,
                path_glob: glob.clone(),
            };
            let exact = rank_exact_where(&set, &query, &options, Some(&keep)).unwrap();
            let approx = rank_graph_where(
                &graph,
                &query,
                &options,
                || Ok((Cow::Borrowed(&set.ids[..]), Cow::Borrowed(&set.paths[..]))),
                |id| Ok(Some(set.paths[id as usize - 1].clone())),
                Some(&keep),
            )
            .unwrap();
            let ids = |hits: &[Hit]| hits.iter().map(|h| h.id).collect::<Vec<_>>();
            assert!(!exact.is_empty(), "{glob:?}");
            assert!(exact.iter().all(|h| keep(h.id)), "{glob:?}");
            assert!(
                glob.is_none() || exact.iter().all(|h| h.path.ends_with(".png")),
                "{glob:?}"
            );
            assert_eq!(ids(&approx), ids(&exact), "{glob:?}");
        }
    }
}
