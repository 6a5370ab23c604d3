//! Tests of captions in the index: the schema migration, the words index
//! following every change to files, caption runs (incremental, resumable),
//! hybrid ranking and reranking, with small fake models whose output follows
//! the colour of solid-colour test images.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use seer_engine::{
    Captioner, EngineError, GenerateOptions, Generated, ImageTextMatcher, LoadedModel, MatchScore,
    PixelInput,
};
use seer_image::DecodedImage;

use crate::captions::{caption_locked, CaptionOptions};
use crate::hybrid::SearchMode;
use crate::store::{write, FileRecord, Store};
use crate::test_index::{encoder_model, index_options, mean_rgb};
use crate::{Encoding, IndexLock, SearchOptions, Searcher, SearcherOptions};

// ------------------------------------------------------------------ fakes

/// The name of the strongest channel of a mean colour.
fn colour_name(rgb: &[f32]) -> &'static str {
    let max = rgb.iter().cloned().fold(f32::MIN, f32::max);
    // The channels near the strongest: two of them make a mixed colour
    // (a video fixture's yellow and magenta frames).
    let strong: Vec<bool> = rgb.iter().map(|&c| c > max - 0.1).collect();
    match strong.as_slice() {
        [true, true, false] => "yellow",
        [true, false, true] => "magenta",
        [false, true, true] => "cyan",
        [true, _, _] => "red",
        [_, true, _] => "green",
        _ => "blue",
    }
}

/// Captions an image "a COLOUR square"; counts the images it captioned, and
/// fails on batch `fail_at` (from 0) to stand for a run that dies.
pub(crate) struct FakeCaptioner {
    images: AtomicUsize,
    batches: AtomicUsize,
    fail_at: Option<usize>,
}

impl FakeCaptioner {
    pub(crate) fn new(fail_at: Option<usize>) -> Arc<Self> {
        Arc::new(Self {
            images: AtomicUsize::new(0),
            batches: AtomicUsize::new(0),
            fail_at,
        })
    }
}

impl PixelInput for FakeCaptioner {
    fn preprocess(&self, image: &DecodedImage) -> Vec<f32> {
        mean_rgb(image)
    }
    fn pixels_len(&self) -> usize {
        3
    }
}

impl Captioner for FakeCaptioner {
    fn caption(
        &self,
        pixels: Vec<f32>,
        n: usize,
        prompt: Option<&str>,
        _: &GenerateOptions,
    ) -> seer_engine::Result<Vec<Generated>> {
        assert_eq!(pixels.len(), n * 3, "images back to back");
        assert_eq!(prompt, None);
        let batch = self.batches.fetch_add(1, Ordering::SeqCst);
        if self.fail_at == Some(batch) {
            return Err(EngineError::Invalid("the model stopped".into()));
        }
        self.images.fetch_add(n, Ordering::SeqCst);
        Ok((0..n)
            .map(|i| Generated {
                text: format!(" a {} square ", colour_name(&pixels[i * 3..i * 3 + 3])),
                tokens: vec![],
            })
            .collect())
    }
}

/// Matches a text to an image when the text names the image's colour.
struct FakeMatcher;

impl PixelInput for FakeMatcher {
    fn preprocess(&self, image: &DecodedImage) -> Vec<f32> {
        mean_rgb(image)
    }
    fn pixels_len(&self) -> usize {
        3
    }
}

impl ImageTextMatcher for FakeMatcher {
    fn match_texts(
        &self,
        pixels: Vec<f32>,
        n: usize,
        texts: &[String],
    ) -> seer_engine::Result<Vec<MatchScore>> {
        Ok((0..n)
            .map(|i| {
                let named = texts[i].contains(colour_name(&pixels[i * 3..i * 3 + 3]));
                MatchScore {
                    itm_probability: if named { 0.9 } else { 0.1 },
                    similarity: if named { 0.5 } else { 0.0 },
                }
            })
            .collect())
    }
}

pub(crate) fn captioner_model(captioner: Arc<FakeCaptioner>) -> LoadedModel {
    let mut m = LoadedModel::encoders("fake-captioner".into(), "fake", None, None);
    m.captioner = Some(captioner);
    m
}

// ------------------------------------------------------------------ helpers

/// A solid-colour PNG (a few pixels of noise in the corner keep files with the
/// same colour distinct unless `variant` is equal).
fn write_png(path: &Path, rgb: [u8; 3], variant: u8) {
    let mut image = seer_image::image::RgbImage::from_pixel(8, 8, seer_image::image::Rgb(rgb));
    image.put_pixel(0, 0, seer_image::image::Rgb([variant, variant, variant]));
    image.save(path).unwrap();
}

const RED: [u8; 3] = [220, 20, 20];
const GREEN: [u8; 3] = [20, 220, 20];
const BLUE: [u8; 3] = [20, 20, 220];

fn caption_options(root: &Path) -> CaptionOptions {
    CaptionOptions {
        roots: vec![root.to_path_buf()],
        batch_size: 2,
        limits: Default::default(),
        generate: GenerateOptions::default(),
        ffmpeg: None,
    }
}

fn index(store: &mut Store, root: &Path) -> crate::IndexSummary {
    crate::index(
        store,
        &encoder_model(),
        &index_options(root, None),
        &mut |_| {},
    )
    .unwrap()
}

fn caption(
    store: &mut Store,
    root: &Path,
    captioner: &Arc<FakeCaptioner>,
) -> crate::Result<crate::CaptionSummary> {
    let lock = IndexLock::try_acquire(store.dir())?;
    caption_locked(
        store,
        &lock,
        &captioner_model(captioner.clone()),
        &caption_options(root),
        &mut |_| {},
    )
}

/// Stored paths of the files whose captions match `text`.
pub(crate) fn found_by_words(store: &Store, text: &str) -> Vec<String> {
    let fts = crate::words::fts_query(text).unwrap();
    let mut paths: Vec<String> = store
        .word_matches(&fts, None, |_, _| true, 100)
        .unwrap()
        .into_iter()
        .map(|m| m.path)
        .collect();
    paths.sort();
    paths
}

fn stored(path: &Path) -> String {
    crate::pathcodec::to_stored(&path.canonicalize().unwrap())
}

// ------------------------------------------------------------------ schema

/// The schema of version 1 index files, as seer wrote them before captions.
const V1_SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE models (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, dim INTEGER NOT NULL);
CREATE TABLE roots (path TEXT PRIMARY KEY);
CREATE TABLE files (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, hash BLOB, width INTEGER, height INTEGER, taken_at TEXT, error TEXT
);
CREATE TABLE walk_errors (path TEXT PRIMARY KEY, error TEXT NOT NULL);
CREATE INDEX files_hash ON files(hash);
CREATE INDEX files_size ON files(size);
CREATE TABLE embeddings (
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    model_id INTEGER NOT NULL REFERENCES models(id),
    encoding INTEGER NOT NULL, vector BLOB NOT NULL,
    PRIMARY KEY (file_id, model_id)
) WITHOUT ROWID;
INSERT INTO meta VALUES ('schema_version', '1'), ('generation', '7');
INSERT INTO models VALUES (1, 'old-model', 2);
INSERT INTO roots VALUES ('/photos');
INSERT INTO files (id, path, size, mtime_ns, hash, taken_at) VALUES
    (1, '/photos/a.jpg', 10, 20, x'0101010101010101010101010101010101010101010101010101010101010101', '2020-01-02 03:04:05'),
    (2, '/photos/b.jpg', 11, 21, NULL, NULL);
INSERT INTO embeddings VALUES (1, 1, 0, x'0000803f00000000'), (2, 1, 0, x'000000000000803f');
";

#[test]
fn a_version_1_index_is_read_as_is_and_migrated_keeping_its_data() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn =
            rusqlite::Connection::open(dir.path().join(crate::store::DATABASE_FILE)).unwrap();
        conn.execute_batch(V1_SCHEMA).unwrap();
    }
    // Read-only (search, serve): an index without captions.
    let old = Store::open_read_only(dir.path()).unwrap();
    assert!(!old.has_captions().unwrap());
    assert!(old.captioners().unwrap().is_empty());
    assert_eq!(old.caption_of(1).unwrap(), None);
    assert!(old
        .word_matches("\"dog\"", None, |_, _| true, 10)
        .unwrap()
        .is_empty());
    drop(old);

    // Opened for writing: upgraded, with every file, vector and setting kept.
    let mut store = Store::open(dir.path()).unwrap();
    assert_eq!(store.meta("schema_version").unwrap().as_deref(), Some("2"));
    assert_eq!(store.generation().unwrap(), 7);
    assert_eq!(store.roots().unwrap(), ["/photos"]);
    let model = store.choose_model(None).unwrap();
    assert_eq!((model.name.as_str(), model.vectors), ("old-model", 2));
    let vectors = store.load_vectors(&model).unwrap();
    assert_eq!(vectors.data, [1.0, 0.0, 0.0, 1.0]);
    assert_eq!(
        store.file_meta(1).unwrap().unwrap().taken_at.as_deref(),
        Some("2020-01-02 03:04:05")
    );
    // Captions work in the upgraded file.
    let tx = store.transaction().unwrap();
    let c = write::captioner_id(&tx, "blip").unwrap();
    write::put_caption(&tx, 1, c, "a dog on a beach").unwrap();
    tx.commit().unwrap();
    assert_eq!(found_by_words(&store, "dogs"), ["/photos/a.jpg"]);
    store.words_integrity_check().unwrap();
    drop(store);
    // A second open finds version 2 and changes nothing.
    let again = Store::open(dir.path()).unwrap();
    assert_eq!(
        again.caption_of(1).unwrap().unwrap().text,
        "a dog on a beach"
    );

    // A newer index is refused, read-only or not, with what to do.
    again
        .conn_for_tests()
        .execute(
            "UPDATE meta SET value = '3' WHERE key = 'schema_version'",
            [],
        )
        .unwrap();
    drop(again);
    for e in [
        Store::open(dir.path()).err().unwrap(),
        Store::open_read_only(dir.path()).err().unwrap(),
    ] {
        let e = e.to_string();
        assert!(
            e.contains("schema version 3") && e.contains("newer seer"),
            "{e}"
        );
    }
}

#[test]
fn the_words_index_follows_moves_copies_changes_and_failures() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let record = |path: &str, hash: u8| FileRecord {
        path: path.into(),
        size: 1,
        mtime_ns: 1,
        hash: Some([hash; 32]),
        ..Default::default()
    };
    let tx = store.transaction().unwrap();
    let model = write::model_id(&tx, "m", 2).unwrap();
    let blip = write::captioner_id(&tx, "blip").unwrap();
    let other = write::captioner_id(&tx, "other").unwrap();
    assert_eq!(
        write::captioner_id(&tx, "blip").unwrap(),
        blip,
        "ids are stable"
    );
    let a = write::upsert_file(&tx, &record("/p/a.jpg", 1)).unwrap();
    let b = write::upsert_file(&tx, &record("/p/b.jpg", 2)).unwrap();
    for id in [a, b] {
        write::put_embedding(&tx, id, model, Encoding::F32, &[1.0, 0.0]).unwrap();
    }
    write::put_caption(&tx, a, blip, "a brown dog running on the sand").unwrap();
    write::put_caption(&tx, b, blip, "two cats asleep").unwrap();
    write::put_caption(&tx, b, other, "kittens sleeping").unwrap();
    tx.commit().unwrap();
    assert!(store.has_captions().unwrap());
    // Stemmed: "dogs run" finds "dog running"; the latest caption model's
    // caption is the file's caption; a file matched by two captions comes once.
    assert_eq!(found_by_words(&store, "Dogs run"), ["/p/a.jpg"]);
    assert_eq!(found_by_words(&store, "cat kitten"), ["/p/b.jpg"]);
    assert_eq!(store.caption_of(b).unwrap().unwrap().model, "other");
    let counts: Vec<(String, usize)> = store
        .captioners()
        .unwrap()
        .into_iter()
        .map(|c| (c.name, c.captions))
        .collect();
    assert_eq!(counts, [("blip".to_string(), 2), ("other".to_string(), 1)]);

    let tx = store.transaction().unwrap();
    // A new caption replaces the old one's words.
    write::put_caption(&tx, a, blip, "a black horse").unwrap();
    // A move keeps the row and its caption; a copy takes it.
    write::move_file(&tx, a, "/p/moved.jpg", 1, 1).unwrap();
    let copy = write::upsert_file(&tx, &record("/p/copy.jpg", 1)).unwrap();
    write::copy_content(&tx, a, copy).unwrap();
    tx.commit().unwrap();
    assert!(found_by_words(&store, "dog").is_empty());
    assert_eq!(
        found_by_words(&store, "horses"),
        ["/p/copy.jpg", "/p/moved.jpg"]
    );
    assert_eq!(
        store.caption_by_hash(&[1; 32], blip).unwrap().as_deref(),
        Some("a black horse")
    );

    let tx = store.transaction().unwrap();
    // Changed content: a new row without the old captions.
    write::upsert_file(&tx, &record("/p/moved.jpg", 9)).unwrap();
    // A file that fails loses its captions with its vectors.
    write::record_failure(&tx, "/p/copy.jpg", 1, 2, "not an image").unwrap();
    // A removed file takes its captions along.
    write::remove_file(&tx, b).unwrap();
    tx.commit().unwrap();
    assert!(found_by_words(&store, "horse").is_empty());
    assert!(found_by_words(&store, "cats kittens").is_empty());
    assert!(!store.has_captions().unwrap());
    store.words_integrity_check().unwrap();
}

// ------------------------------------------------------------------ caption runs

#[test]
fn a_caption_run_captions_what_is_missing_and_a_rerun_nothing() {
    let photos = tempfile::tempdir().unwrap();
    let root = photos.path();
    write_png(&root.join("red.png"), RED, 1);
    write_png(&root.join("green.png"), GREEN, 2);
    write_png(&root.join("blue.png"), BLUE, 3);
    // Two files with the same content, new in the same run: captioned once.
    write_png(&root.join("twin1.png"), RED, 4);
    write_png(&root.join("twin2.png"), RED, 4);
    let idx = tempfile::tempdir().unwrap();
    let mut store = Store::open(idx.path()).unwrap();
    assert_eq!(index(&mut store, root).added, 5);

    let captioner = FakeCaptioner::new(None);
    let s = caption(&mut store, root, &captioner).unwrap();
    assert_eq!(
        (
            s.caption_model.as_str(),
            s.captioned,
            s.reused,
            s.unchanged,
            s.failed
        ),
        ("fake-captioner", 5, 0, 0, 0),
        "{s:?}"
    );
    assert_eq!(captioner.images.load(Ordering::SeqCst), 4, "the twins once");
    let id = store
        .id_of(&stored(&root.join("red.png")))
        .unwrap()
        .unwrap();
    let c = store.caption_of(id).unwrap().unwrap();
    // Stored trimmed, with the model that wrote it.
    assert_eq!(
        (c.text.as_str(), c.model.as_str()),
        ("a red square", "fake-captioner")
    );
    assert_eq!(
        found_by_words(&store, "red"),
        [
            stored(&root.join("red.png")),
            stored(&root.join("twin1.png")),
            stored(&root.join("twin2.png"))
        ]
    );

    // Nothing new: nothing captioned.
    let s = caption(&mut store, root, &captioner).unwrap();
    assert_eq!((s.captioned, s.unchanged), (0, 5), "{s:?}");
    assert_eq!(captioner.images.load(Ordering::SeqCst), 4);

    // A copy (through the index run) and a moved file keep their caption; a
    // new file and a changed one are captioned.
    std::fs::copy(root.join("green.png"), root.join("green-copy.png")).unwrap();
    std::fs::rename(root.join("blue.png"), root.join("blue-moved.png")).unwrap();
    write_png(&root.join("new.png"), BLUE, 5);
    write_png(&root.join("red.png"), GREEN, 6);
    let summary = index(&mut store, root);
    assert_eq!(
        (summary.copied, summary.moved, summary.added),
        (1, 1, 2),
        "{summary:?}"
    );
    let s = caption(&mut store, root, &captioner).unwrap();
    assert_eq!((s.captioned, s.unchanged), (2, 5), "{s:?}");
    assert_eq!(captioner.images.load(Ordering::SeqCst), 6);
    let id = store
        .id_of(&stored(&root.join("red.png")))
        .unwrap()
        .unwrap();
    assert_eq!(
        store.caption_of(id).unwrap().unwrap().text,
        "a green square"
    );
    store.words_integrity_check().unwrap();
}

#[test]
fn a_caption_run_that_dies_keeps_its_batches_and_the_next_finishes() {
    let photos = tempfile::tempdir().unwrap();
    let root = photos.path();
    for i in 0..7u8 {
        write_png(
            &root.join(format!("{i}.png")),
            [i * 30, 100, 200 - i * 20],
            i,
        );
    }
    let idx = tempfile::tempdir().unwrap();
    let mut store = Store::open(idx.path()).unwrap();
    index(&mut store, root);
    // Batches of 2: the third batch fails, after two were committed.
    let dying = FakeCaptioner::new(Some(2));
    let e = caption(&mut store, root, &dying).unwrap_err();
    assert!(e.to_string().contains("the model stopped"), "{e}");
    let held = store.captioners().unwrap();
    assert_eq!(held[0].captions, 4);
    let captioner = FakeCaptioner::new(None);
    let s = caption(&mut store, root, &captioner).unwrap();
    assert_eq!((s.captioned, s.unchanged), (3, 4), "{s:?}");
    assert_eq!(captioner.images.load(Ordering::SeqCst), 3);
    assert_eq!(store.captioners().unwrap()[0].captions, 7);
}

#[test]
fn files_that_cannot_be_captioned_are_reported_and_retried() {
    let photos = tempfile::tempdir().unwrap();
    let root = photos.path();
    write_png(&root.join("ok.png"), RED, 1);
    write_png(&root.join("changed.png"), GREEN, 2);
    write_png(&root.join("gone.png"), BLUE, 3);
    let idx = tempfile::tempdir().unwrap();
    let mut store = Store::open(idx.path()).unwrap();
    index(&mut store, root);
    // Changed since indexing (not re-indexed), and deleted since.
    write_png(&root.join("changed.png"), GREEN, 99);
    std::fs::remove_file(root.join("gone.png")).unwrap();
    let captioner = FakeCaptioner::new(None);
    let s = caption(&mut store, root, &captioner).unwrap();
    assert_eq!((s.captioned, s.failed), (1, 2), "{s:?}");
    let causes: Vec<String> = s
        .failures
        .iter()
        .map(|(p, c)| format!("{p}: {c}"))
        .collect();
    assert!(
        causes[0].contains("changed.png") && causes[0].contains("changed since it was indexed"),
        "{causes:?}"
    );
    assert!(causes[1].contains("gone.png"), "{causes:?}");
    // Tried again: the changed file after the next index run.
    index(&mut store, root);
    let s = caption(&mut store, root, &captioner).unwrap();
    assert_eq!((s.captioned, s.failed, s.unchanged), (1, 0, 1), "{s:?}");
}

#[test]
fn a_model_without_a_captioning_head_is_refused_by_name() {
    let idx = tempfile::tempdir().unwrap();
    let mut store = Store::open(idx.path()).unwrap();
    let lock = IndexLock::try_acquire(idx.path()).unwrap();
    let e = caption_locked(
        &mut store,
        &lock,
        &encoder_model(),
        &caption_options(idx.path()),
        &mut |_| {},
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("fake-encoder") && e.contains("writes no captions"),
        "{e}"
    );
}

// ------------------------------------------------------------------ search

/// An index of red, green and blue photos (and a red one whose caption says
/// "crimson"), captioned by the fakes.
fn captioned_index() -> (tempfile::TempDir, tempfile::TempDir, Store) {
    let photos = tempfile::tempdir().unwrap();
    let root = photos.path();
    for (name, rgb, v) in [
        ("a/red.png", RED, 1),
        ("a/green.png", GREEN, 2),
        ("b/blue.png", BLUE, 3),
        ("b/crimson.png", [200, 30, 60], 4),
    ] {
        std::fs::create_dir_all(root.join(name).parent().unwrap()).unwrap();
        write_png(&root.join(name), rgb, v);
    }
    let idx = tempfile::tempdir().unwrap();
    let mut store = Store::open(idx.path()).unwrap();
    index(&mut store, root);
    caption(&mut store, root, &FakeCaptioner::new(None)).unwrap();
    let id = store
        .id_of(&stored(&root.join("b/crimson.png")))
        .unwrap()
        .unwrap();
    let tx = store.transaction().unwrap();
    let c = write::captioner_id(&tx, "fake-captioner").unwrap();
    write::put_caption(&tx, id, c, "a crimson tile").unwrap();
    tx.commit().unwrap();
    (photos, idx, store)
}

fn name(path: &str) -> &str {
    path.rsplit('/').next().unwrap()
}

#[test]
fn hybrid_search_fuses_the_words_and_the_vector_rankings() {
    let (_photos, _idx, store) = captioned_index();
    let model = store.choose_model(None).unwrap();
    // The query vector points at blue; the words say "crimson".
    let query = [0.0, 0.0, 1.0];
    let fts = crate::words::fts_query("a crimson thing").unwrap();
    for (threshold, resident) in [(usize::MAX, false), (1, false), (1, true)] {
        crate::ann::sync(&store, &model, threshold.min(1000)).unwrap();
        let searcher = Searcher::open(
            &store,
            model.clone(),
            SearcherOptions {
                ann_threshold: threshold,
                resident,
            },
        )
        .unwrap();
        let options = SearchOptions {
            k: 10,
            ..Default::default()
        };
        let found = searcher
            .rank_hybrid(&store, &query, &fts, &options, None)
            .unwrap();
        let names: Vec<&str> = found.iter().map(|f| name(&f.path)).collect();
        // crimson: 1/61 (words) + its vector rank; blue: 1/61 alone.
        assert_eq!(names[..2], ["crimson.png", "blue.png"], "{found:?}");
        assert_eq!(found.len(), 4);
        let crimson = &found[0];
        assert_eq!(crimson.matched(), ["vector", "words"]);
        assert!(crimson.bm25.unwrap() > 0.0 && crimson.fused.unwrap() > 1.0 / 61.0);
        assert_eq!(found[1].matched(), ["vector"]);
        // Every hit has its cosine, from the vectors in memory or the database.
        let want = seer_ann::simd::dot_f32(&query, &crate::test_index::unit(&[200.0, 30.0, 60.0]));
        assert!(
            (crimson.similarity.unwrap() - want).abs() < 0.05,
            "{crimson:?}"
        );

        // A minimum similarity leaves out what is far from the vector, even
        // when its words match; a path glob applies to the words too.
        let strict = SearchOptions {
            min_score: Some(0.5),
            ..options.clone()
        };
        let found = searcher
            .rank_hybrid(&store, &query, &fts, &strict, None)
            .unwrap();
        assert_eq!(
            found.iter().map(|f| name(&f.path)).collect::<Vec<_>>(),
            ["blue.png"]
        );
        let in_a = SearchOptions {
            path_glob: Some("a/*".into()),
            ..options.clone()
        };
        let found = searcher
            .rank_hybrid(&store, &query, &fts, &in_a, None)
            .unwrap();
        assert!(
            found
                .iter()
                .all(|f| f.path.contains("/a/") && f.words_rank.is_none()),
            "{found:?}"
        );
        let crimson_id = store.id_of(&crimson.path).unwrap().unwrap();
        let keep = |id: i64| id != crimson_id;
        let found = searcher
            .rank_hybrid(&store, &query, &fts, &options, Some(&keep))
            .unwrap();
        assert!(found.iter().all(|f| f.id != crimson_id));
    }
}

#[test]
fn words_search_ranks_by_bm25_without_vectors() {
    let (_photos, _idx, store) = captioned_index();
    let fts = crate::words::fts_query("red squares").unwrap();
    let options = SearchOptions {
        k: 10,
        ..Default::default()
    };
    let found = crate::hybrid::rank_words(&store, &fts, None, &options, None).unwrap();
    assert_eq!(
        found.iter().map(|f| name(&f.path)).collect::<Vec<_>>(),
        ["red.png", "green.png", "blue.png"]
    );
    assert!(
        found[0].bm25 > found[1].bm25,
        "both words beat one: {found:?}"
    );
    assert!(found
        .iter()
        .all(|f| f.similarity.is_none() && f.matched() == ["words"]));
    // Only files with a vector of the model asked for.
    let model = store.choose_model(None).unwrap();
    let other = crate::ModelInfo {
        id: model.id + 1,
        ..model.clone()
    };
    assert_eq!(
        crate::hybrid::rank_words(&store, &fts, Some(&model), &options, None)
            .unwrap()
            .len(),
        3
    );
    assert!(
        crate::hybrid::rank_words(&store, &fts, Some(&other), &options, None)
            .unwrap()
            .is_empty()
    );
    // Auto mode fuses only with captions and words.
    assert_eq!(
        SearchMode::Auto
            .resolve(
                Some(&fts),
                false,
                store.has_captions().unwrap(),
                store.dir()
            )
            .unwrap(),
        SearchMode::Hybrid
    );
}

#[test]
fn reranking_reads_indexed_files_in_the_roots_and_orders_by_itm() {
    let (photos, _idx, _store) = captioned_index();
    let roots: Vec<PathBuf> = vec![photos.path().canonicalize().unwrap()];
    let paths: Vec<String> = ["a/green.png", "a/red.png", "b/blue.png"]
        .iter()
        .map(|p| stored(&photos.path().join(p)))
        .chain(["/etc/hostname".to_string()])
        .collect();
    let scores = crate::rerank::score_files(
        &FakeMatcher,
        "a red square",
        &paths,
        &roots,
        &Default::default(),
        2,
    )
    .unwrap();
    let p: Vec<Option<f32>> = scores
        .iter()
        .map(|s| s.as_ref().ok().map(|m| m.itm_probability))
        .collect();
    assert_eq!(p, [Some(0.1), Some(0.9), Some(0.1), None]);
    let outside = scores[3].as_ref().unwrap_err();
    assert!(outside.contains("outside the indexed folders"), "{outside}");
    let order: Vec<&str> = crate::rerank::apply(paths.iter().map(|p| name(p)).collect(), &p);
    assert_eq!(order, ["red.png", "green.png", "blue.png", "hostname"]);
}

// ------------------------------------------------------------------ files changing under a run

/// Files that change between the walk that lists them and the read: the
/// change is made when the run reports its plan, after the walk and before
/// any file is read, so each race is taken the same way every time.
mod files_changing_under_a_run {
    use super::*;

    fn index_with(
        store: &mut Store,
        root: &Path,
        mut after_the_walk: impl FnMut(),
    ) -> crate::IndexSummary {
        crate::index(
            store,
            &encoder_model(),
            &index_options(root, None),
            &mut |p| {
                if let crate::Progress::Planned(_) = p {
                    after_the_walk()
                }
            },
        )
        .unwrap()
    }

    #[cfg(unix)]
    #[test]
    fn a_file_that_became_a_fifo_fails_without_waiting_for_a_writer() {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("photos");
        std::fs::create_dir(&root).unwrap();
        write_png(&root.join("red.png"), RED, 1);
        write_png(&root.join("pipe.png"), GREEN, 2);
        let fifo = root.join("pipe.png");
        let mut store = Store::open(dir.path()).unwrap();
        let mut writer = None;
        let summary = index_with(&mut store, &root, || {
            std::fs::remove_file(&fifo).unwrap();
            let made = std::process::Command::new("mkfifo").arg(&fifo).status();
            assert!(made.unwrap().success(), "mkfifo");
            // A writer that feeds the FIFO whoever opens it for reading: a run
            // that opened it as a file would read these bytes (and, without
            // this writer, wait forever).
            let path = fifo.clone();
            writer = Some(std::thread::spawn(move || {
                if let Ok(mut w) = std::fs::OpenOptions::new().write(true).open(&path) {
                    let _ = std::io::Write::write_all(&mut w, b"not an image");
                }
            }));
        });
        // Release the writer (it waits for a reader), whatever the run did.
        let reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        writer.unwrap().join().unwrap();
        drop(reader);
        assert_eq!((summary.added, summary.failed), (1, 1), "{summary:?}");
        let (path, cause) = &summary.failures[0];
        assert!(path.ends_with("pipe.png"), "{path}");
        assert!(cause.contains("no longer a regular file"), "{cause}");
        // Stored as a failure, and the next run (which lists no FIFO) drops it.
        assert_eq!(store.failures().unwrap().len(), 1);
        let again = index(&mut store, &root);
        assert_eq!(
            (again.added, again.removed, again.failed),
            (0, 1, 0),
            "{again:?}"
        );
        assert!(store.failures().unwrap().is_empty());
    }

    #[test]
    fn a_file_deleted_or_moved_after_the_walk_is_not_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("photos");
        std::fs::create_dir_all(root.join("album")).unwrap();
        write_png(&root.join("red.png"), RED, 1);
        write_png(&root.join("gone.png"), GREEN, 2);
        write_png(&root.join("album/blue.png"), BLUE, 3);
        let mut store = Store::open(dir.path()).unwrap();
        // Indexed once, then changed so that the next run embeds them again.
        index(&mut store, &root);
        write_png(&root.join("gone.png"), GREEN, 4);
        write_png(&root.join("album/blue.png"), BLUE, 5);
        let summary = index_with(&mut store, &root, || {
            std::fs::remove_file(root.join("gone.png")).unwrap();
            std::fs::rename(root.join("album"), root.join("renamed")).unwrap();
        });
        assert_eq!(summary.failed, 0, "{:?}", summary.failures);
        assert!(store.failures().unwrap().is_empty());
        // Their records are gone with them, vectors and all.
        assert_eq!(summary.removed, 2, "{summary:?}");
        assert_eq!(store.file_count().unwrap(), 1);
        // The next run finds the moved file where it went.
        let again = index(&mut store, &root);
        assert_eq!((again.added, again.failed), (1, 0), "{again:?}");
        assert_eq!(store.file_count().unwrap(), 2);
    }
}
