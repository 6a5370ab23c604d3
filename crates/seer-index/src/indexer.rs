//! An indexing run: plan, apply the cheap changes (moves, copies, removals) in one
//! transaction, then embed the rest through the engine's pipeline, committing
//! after every model batch so a crash loses at most the batch in flight.

use std::path::PathBuf;
use std::time::Instant;

use seer_engine::{EmbedOptions, EngineError, ImageEncoder, LoadedModel};
use seer_image::DecodeLimits;

use crate::error::{IndexError, Result};
use crate::lock::IndexLock;
use crate::pathcodec;
use crate::scan::{self, ContentLookup, Walked};
use crate::store::{write, FileRecord, Store};
use crate::vector::Encoding;
use crate::video::VideoOptions;

#[derive(Clone, Debug)]
pub struct IndexOptions {
    pub roots: Vec<PathBuf>,
    pub include_hidden: bool,
    pub encoding: Encoding,
    pub embed: EmbedOptions,
    /// Keep an approximate index for models with at least this many vectors
    /// ([`crate::ann::ANN_THRESHOLD`] is the default the CLI passes).
    pub ann_threshold: usize,
    /// How videos are indexed; None leaves them out (and takes any indexed
    /// before out of the index, as for hidden files).
    pub videos: Option<VideoOptions>,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct IndexSummary {
    pub model: String,
    /// Files embedded (new or changed).
    pub added: usize,
    /// Files skipped because nothing changed.
    pub skipped: usize,
    /// Renamed or moved files, recognised by content.
    pub moved: usize,
    /// New copies of indexed files, which reused their vector.
    pub copied: usize,
    /// Files whose timestamp changed but whose content did not.
    pub touched: usize,
    /// Files gone from disk, removed from the index.
    pub removed: usize,
    /// Files that could not be indexed in this run (including those the walk
    /// could not read).
    pub failed: usize,
    /// Files that failed before and have not changed (not retried).
    pub still_failing: usize,
    pub seconds: f64,
    /// (path as shown to people, cause): files that failed in this run and
    /// everything the walk could not enter or follow.
    pub failures: Vec<(String, String)>,
    /// The approximate index's update, when the model has one.
    pub ann: Option<crate::ann::AnnSync>,
    /// Frames sampled and embedded from the videos added in this run.
    pub video_frames: usize,
    /// Videos left for a later run because ffmpeg was not found.
    pub videos_without_ffmpeg: usize,
}

/// A file with its embedding and metadata, or why it failed.
type Outcome = (Walked, std::result::Result<(Vec<f32>, FileRecord), String>);

/// Progress events for a progress bar (of an embedding or a caption run).
pub enum Progress {
    /// Planning finished: this many files will be embedded (or captioned).
    Planned(usize),
    /// One more file was embedded (or captioned) or failed.
    Embedded,
    /// Within a video (which counts as one file): `done` of its `total`
    /// sampled frames are embedded (`total` as planned from its duration).
    VideoFrames { done: usize, total: usize },
}

struct DbLookup<'a> {
    store: &'a Store,
    model_id: i64,
    sizes: std::collections::HashSet<i64>,
}

impl ContentLookup for DbLookup<'_> {
    fn size_is_known(&self, size: i64) -> bool {
        self.sizes.contains(&size)
    }

    fn embedded_with_hash(&self, hash: &[u8; 32]) -> Option<i64> {
        self.store
            .embedded_file_with_hash(hash, self.model_id)
            .ok()
            .flatten()
    }
}

pub fn canonical_roots(roots: &[PathBuf]) -> Result<Vec<PathBuf>> {
    roots
        .iter()
        .map(|r| {
            let c = r.canonicalize().map_err(|e| IndexError::io(r, e))?;
            // Files below may have any name (see `pathcodec`), but re-indexing
            // reads the stored roots back as UTF-8 text.
            if c.to_str().is_none() {
                return Err(IndexError::File {
                    path: r.clone(),
                    message: "folder names that are not UTF-8 are not supported as index roots"
                        .into(),
                });
            }
            Ok(c)
        })
        .collect()
}

/// A path (as stored) that could not be read, and why.
type Problem = (String, String);

/// `roots` as [`canonical_roots`] gives them, except roots indexed before
/// that cannot be read now (an unplugged drive, a folder moved away): those
/// come back apart, as their stored names and the cause, for the caller to
/// skip and report. Their photos stay in the index, and the other roots are
/// brought up to date: one missing folder must not stop the rest. A root
/// not indexed before must exist (a mistyped folder is an error).
pub(crate) fn reachable_roots(
    store: &Store,
    roots: &[PathBuf],
) -> Result<(Vec<PathBuf>, Vec<Problem>)> {
    let stored = store.roots()?;
    let (mut reachable, mut gone) = (Vec::new(), Vec::new());
    for root in roots {
        match canonical_roots(std::slice::from_ref(root)) {
            Ok(mut c) => reachable.append(&mut c),
            Err(IndexError::Io { source, .. }) => {
                let known = std::path::absolute(root)
                    .map(|a| pathcodec::to_stored(&a))
                    .ok()
                    .filter(|a| stored.contains(a));
                match known {
                    Some(name) => gone.push((
                        name,
                        format!("cannot read the folder ({source}); its photos stay in the index"),
                    )),
                    None => return Err(IndexError::io(root, source)),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok((reachable, gone))
}

/// An indexing run. It takes the index's lock first (see [`crate::lock`]), and
/// fails with [`IndexError::Busy`] while another run holds it.
pub fn index(
    store: &mut Store,
    model: &LoadedModel,
    options: &IndexOptions,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<IndexSummary> {
    let lock = IndexLock::try_acquire(store.dir())?;
    index_locked(store, &lock, model, options, on_progress)
}

/// An indexing run by a caller that already holds the index's lock (e.g. after
/// waiting for it). The approximate index is brought up to date before the
/// lock can be released, so two runs never write it at once.
pub fn index_locked(
    store: &mut Store,
    _lock: &IndexLock,
    model: &LoadedModel,
    options: &IndexOptions,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<IndexSummary> {
    let start = Instant::now();
    let (roots, gone) = reachable_roots(store, &options.roots)?;
    let root_strings: Vec<String> = roots.iter().map(|r| pathcodec::to_stored(r)).collect();
    let encoder = model.image()?;
    let dim = encoder.embed_dim();
    let model_id = {
        let db_error = store.error_mapper();
        let tx = store.transaction()?;
        let id = write::model_id(&tx, &model.id, dim).map_err(&db_error)?;
        for root in &root_strings {
            write::add_root(&tx, root).map_err(&db_error)?;
        }
        tx.commit().map_err(&db_error)?;
        id
    };

    let (walked, mut walk_problems) =
        scan::walk(&roots, options.include_hidden, options.videos.is_some());
    let gone_roots: Vec<String> = gone.iter().map(|(root, _)| root.clone()).collect();
    walk_problems.extend(gone);
    // A problem the last walk met too is still failing, not failed again
    // (as for files whose decoding failed before): exit code 1 only for news.
    let known_problems: std::collections::HashSet<(String, String)> =
        store.walk_errors()?.into_iter().collect();
    let repeated = walk_problems
        .iter()
        .filter(|p| known_problems.contains(*p))
        .count();
    {
        // This walk's problems replace the last ones under these roots, so
        // `seer status` lists exactly what the latest walk could not read.
        let db_error = store.error_mapper();
        let tx = store.transaction()?;
        let walked_roots = [root_strings.as_slice(), gone_roots.as_slice()].concat();
        write::replace_walk_errors(&tx, &walked_roots, &walk_problems).map_err(&db_error)?;
        tx.commit().map_err(&db_error)?;
    }
    let new_problems: Vec<(String, String)> = walk_problems
        .into_iter()
        .filter(|p| !known_problems.contains(p))
        .collect();
    let mut stored = store.files_under(&root_strings, model_id)?;
    if options.videos.is_some() {
        // A video with a vector but no frames (imported by `seer import`, or
        // written by a seer without videos) is sampled again.
        for file in stored.iter_mut().filter(|f| f.embedded) {
            if seer_video::has_video_extension(&pathcodec::to_path(&file.path))
                && !store.has_frames(file.id, model_id)?
            {
                file.embedded = false;
            }
        }
    }
    let lookup = DbLookup {
        store,
        model_id,
        sizes: store.sizes()?,
    };
    let plan = scan::plan(&walked, &stored, &lookup, &|p| {
        scan::hash_file(&pathcodec::to_path(p)).ok()
    });
    drop(lookup);

    let mut summary = IndexSummary {
        model: model.id.clone(),
        skipped: plan.unchanged,
        still_failing: plan.unchanged_failures + repeated,
        moved: plan.moves.len(),
        copied: plan.copies.len(),
        touched: plan.touches.len(),
        removed: plan.removals.len(),
        // Files (and roots) the walk could not read failed too.
        failed: new_problems.len(),
        failures: new_problems
            .into_iter()
            .map(|(path, cause)| (pathcodec::display_stored(&path), cause))
            .collect(),
        ..Default::default()
    };
    apply_cheap_changes(store, &plan)?;
    on_progress(Progress::Planned(plan.embed.len()));

    let (videos, files): (Vec<Walked>, Vec<Walked>) = plan
        .embed
        .iter()
        .map(|e| e.file.clone())
        .partition(|f| seer_video::has_video_extension(&pathcodec::to_path(&f.path)));
    let mut batch: Vec<Outcome> = Vec::new();
    let mut write_error = None;
    let batch_size = options.embed.batch_size.max(1);
    let limits = options.embed.limits;
    encoder.embed_prepared(
        &files,
        &options.embed,
        |f| prepare(encoder, f, &roots, &limits),
        |i, result| {
            on_progress(Progress::Embedded);
            batch.push((files[i].clone(), result.map_err(|e| e.to_string())));
            if batch.len() >= batch_size && write_error.is_none() {
                if let Err(e) =
                    commit_batch(store, model_id, options.encoding, &mut batch, &mut summary)
                {
                    write_error = Some(e);
                }
            }
        },
    )?;
    if let Some(e) = write_error {
        return Err(e);
    }
    commit_batch(store, model_id, options.encoding, &mut batch, &mut summary)?;
    if let Some(video_options) = &options.videos {
        crate::video::index_videos(
            store,
            encoder,
            model_id,
            options.encoding,
            video_options,
            batch_size,
            options.embed.normalize,
            &videos,
            &roots,
            &mut summary,
            on_progress,
        )?;
    }
    if let Some(info) = store.models()?.into_iter().find(|m| m.id == model_id) {
        summary.ann = crate::ann::sync(store, &info, options.ann_threshold)?;
    }
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}

fn apply_cheap_changes(store: &mut Store, plan: &scan::Plan) -> Result<()> {
    if plan.moves.is_empty()
        && plan.copies.is_empty()
        && plan.touches.is_empty()
        && plan.removals.is_empty()
    {
        return Ok(());
    }
    let tx = store.transaction()?;
    let result = (|| -> rusqlite::Result<()> {
        // Removals first: a moved-onto path may have belonged to a removed file.
        for (id, _) in &plan.removals {
            write::remove_file(&tx, *id)?;
        }
        for (id, to) in &plan.moves {
            write::move_file(&tx, *id, &to.path, to.size, to.mtime_ns)?;
        }
        for (id, mtime) in &plan.touches {
            write::touch(&tx, *id, *mtime)?;
        }
        for (source, to, hash) in &plan.copies {
            let record = FileRecord {
                path: to.path.clone(),
                size: to.size,
                mtime_ns: to.mtime_ns,
                hash: Some(*hash),
                ..Default::default()
            };
            let id = write::upsert_file(&tx, &record)?;
            write::copy_content(&tx, *source, id)?;
        }
        write::bump_generation(&tx)
    })();
    result.and_then(|()| tx.commit()).map_err(|e| store.db(e))
}

fn commit_batch(
    store: &mut Store,
    model_id: i64,
    encoding: Encoding,
    batch: &mut Vec<Outcome>,
    summary: &mut IndexSummary,
) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let tx = store.transaction()?;
    let mut gone = 0;
    let result = (|| -> rusqlite::Result<()> {
        for (file, outcome) in batch.iter() {
            match outcome {
                Ok((vector, record)) => {
                    let id = write::upsert_file(&tx, record)?;
                    write::put_embedding(&tx, id, model_id, encoding, vector)?;
                }
                Err(message) if is_vanished(file, message) => {
                    gone += usize::from(write::remove_path(&tx, &file.path)?);
                }
                Err(message) => {
                    write::record_failure(&tx, &file.path, file.size, file.mtime_ns, message)?
                }
            }
        }
        write::bump_generation(&tx)
    })();
    result.and_then(|()| tx.commit()).map_err(|e| store.db(e))?;
    // Files gone since the walk: removed if they were indexed, else as if
    // the walk had not seen them.
    summary.removed += gone;
    for (file, outcome) in batch.drain(..) {
        match outcome {
            Ok(_) => summary.added += 1,
            Err(message) if is_vanished(&file, &message) => {}
            Err(message) => {
                summary.failed += 1;
                // The cause alone, as `status` lists it: decode errors start
                // with the file's name, which the pair holds already.
                let cause = without_name(&message, &pathcodec::to_path(&file.path));
                summary
                    .failures
                    .push((pathcodec::display_stored(&file.path), cause));
            }
        }
    }
    Ok(())
}

/// A failure's cause without the file's name in front (errors name their
/// file; failures are stored and shown beside the name).
pub(crate) fn without_name(message: &str, path: &std::path::Path) -> String {
    let name = format!("{}: ", path.display());
    message.strip_prefix(&name).unwrap_or(message).to_string()
}

/// Whether a file's failure is that it no longer exists ([`scan::VANISHED`]).
fn is_vanished(file: &Walked, message: &str) -> bool {
    let name = format!("{}: ", pathcodec::display_stored(&file.path));
    message.strip_prefix(&name).unwrap_or(message) == scan::VANISHED
}

/// Reads a file once: hashes it, decodes it, notes its size and capture time, and
/// preprocesses it for the model.
fn prepare(
    encoder: &dyn ImageEncoder,
    file: &Walked,
    roots: &[PathBuf],
    limits: &DecodeLimits,
) -> seer_engine::Result<(Vec<f32>, FileRecord)> {
    let shown = pathcodec::display_stored(&file.path);
    let fail = |message: String| EngineError::File {
        path: PathBuf::from(&shown),
        message,
    };
    if file.size as u64 > limits.max_file_bytes {
        return Err(fail(format!(
            "file is larger than the {} byte limit",
            limits.max_file_bytes
        )));
    }
    let path = pathcodec::to_path(&file.path);
    let vanished = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    // The walk checked this, but the file may have been replaced by a symlink since.
    if !scan::within(&path, roots) {
        if std::fs::symlink_metadata(&path).is_err_and(|e| vanished(&e)) {
            return Err(fail(scan::VANISHED.into()));
        }
        return Err(fail(scan::OUTSIDE_ROOTS.into()));
    }
    let io = |source| EngineError::Io {
        path: PathBuf::from(&shown),
        source,
    };
    // Opened without waiting and checked again: the path may have become a
    // FIFO (whose open would block forever), a folder, or a larger file
    // since the walk listed it.
    let (opened, metadata) = scan::open_regular(&path).map_err(|e| {
        if vanished(&e) {
            fail(scan::VANISHED.into())
        } else {
            io(e)
        }
    })?;
    if metadata.len() > limits.max_file_bytes {
        return Err(fail(format!(
            "file is larger than the {} byte limit",
            limits.max_file_bytes
        )));
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    std::io::Read::read_to_end(
        &mut std::io::Read::take(opened, limits.max_file_bytes.saturating_add(1)),
        &mut bytes,
    )
    .map_err(io)?;
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(fail(format!(
            "file is larger than the {} byte limit",
            limits.max_file_bytes
        )));
    }
    let hash = *blake3::hash(&bytes).as_bytes();
    let decoded = seer_image::decode_bytes_full(&bytes, &shown, limits)?;
    // The size and mtime of what was read (the file may have been replaced
    // since the walk): a later change shows as a change to the next run.
    let (size, mtime_ns) = (metadata.len() as i64, scan::mtime_ns(&metadata));
    let record = FileRecord {
        path: file.path.clone(),
        size,
        mtime_ns,
        hash: Some(hash),
        width: Some(decoded.width()),
        height: Some(decoded.height()),
        taken_at: capture_time(&bytes),
    };
    Ok((encoder.preprocess(&decoded), record))
}

/// EXIF DateTimeOriginal (or DateTime) as "YYYY-MM-DD HH:MM:SS", when present.
pub(crate) fn capture_time(bytes: &[u8]) -> Option<String> {
    let exif = exif::Reader::new()
        .read_from_container(&mut std::io::Cursor::new(bytes))
        .ok()?;
    [exif::Tag::DateTimeOriginal, exif::Tag::DateTime]
        .iter()
        .find_map(|tag| {
            let field = exif.get_field(*tag, exif::In::PRIMARY)?;
            match &field.value {
                exif::Value::Ascii(v) => {
                    let dt = exif::DateTime::from_ascii(v.first()?).ok()?;
                    Some(format!(
                        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                        dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second
                    ))
                }
                _ => None,
            }
        })
}
