//! Tests of videos in the index: frames stored with their times, searches
//! that find a video by its best frame and say when, and every change a
//! video file can go through (copied, changed, removed, damaged, videos
//! turned off, ffmpeg missing). The model is a fake whose vector is the
//! frame's mean colour, over `fixtures/video/colors.mkv`, whose every second
//! is one solid colour. These tests need ffmpeg (CI installs it).

use std::path::{Path, PathBuf};

use crate::test_index::{encoder_model, index_options, unit};
use crate::{IndexSummary, SearchOptions, Searcher, SearcherOptions, Store, VideoOptions};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/video")
        .join(name)
}

fn ffmpeg() -> seer_video::Ffmpeg {
    seer_video::Ffmpeg::find(None)
        .expect("these tests need ffmpeg and ffprobe on PATH (apt install ffmpeg)")
}

fn videos(ffmpeg: Option<seer_video::Ffmpeg>) -> Option<VideoOptions> {
    Some(VideoOptions {
        ffmpeg,
        sampling: seer_video::Sampling::default(),
    })
}

fn index(store: &mut Store, root: &Path, videos: Option<VideoOptions>) -> IndexSummary {
    crate::index(
        store,
        &encoder_model(),
        &index_options(root, videos),
        &mut |_| {},
    )
    .unwrap()
}

/// A folder `media` in a new temporary folder, holding copies of the
/// fixture videos `videos` (under their own names), and an empty index beside.
fn media(videos: &[&str]) -> (tempfile::TempDir, PathBuf, Store) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("media");
    std::fs::create_dir(&root).unwrap();
    for name in videos {
        std::fs::copy(fixture(name), root.join(name)).unwrap();
    }
    let store = Store::open(&dir.path().join("index")).unwrap();
    (dir, root, store)
}

fn write_png(path: &Path, rgb: [u8; 3]) {
    seer_image::image::RgbImage::from_pixel(8, 8, seer_image::image::Rgb(rgb))
        .save(path)
        .unwrap();
}

/// The best `k` hits for a colour: (file name, score, time).
fn search(store: &Store, rgb: [f32; 3], k: usize) -> Vec<(String, f32, Option<f64>)> {
    let model = store.choose_model(None).unwrap();
    let searcher = Searcher::open(store, model, SearcherOptions::default()).unwrap();
    let options = SearchOptions {
        k,
        ..Default::default()
    };
    searcher
        .rank(store, &unit(&rgb), &options, None)
        .unwrap()
        .into_iter()
        .map(|h| {
            let name = Path::new(&h.path).file_name().unwrap().to_string_lossy();
            (name.into_owned(), h.score, h.time)
        })
        .collect()
}

const YELLOW: [f32; 3] = [1.0, 1.0, 0.0];
const GREEN: [f32; 3] = [0.0, 1.0, 0.0];
const MAGENTA: [f32; 3] = [1.0, 0.0, 1.0];

/// colors.mkv sampled every 2 s: frames at 1, 3 and 5 s (green, yellow,
/// magenta); a search for each colour finds the video at that frame's time,
/// above a photo of another colour, and the file's own vector is their mean.
#[test]
fn a_video_is_found_by_its_best_frame_at_its_time() {
    let (_dir, root, mut store) = media(&["colors.mkv"]);
    write_png(&root.join("orange.png"), [255, 128, 0]);
    let summary = index(&mut store, &root, videos(Some(ffmpeg())));
    assert_eq!((summary.added, summary.failed), (2, 0), "{summary:?}");
    assert_eq!(summary.video_frames, 3);

    let model = store.choose_model(None).unwrap();
    let id = store
        .id_of(&seer_index_path(&root.join("colors.mkv")))
        .unwrap()
        .unwrap();
    let frames = store.frames_of(id, &model).unwrap();
    let times: Vec<f64> = frames.iter().map(|f| f.time).collect();
    assert_eq!(times, [1.0, 3.0, 5.0]);
    for (frame, colour) in frames.iter().zip([GREEN, YELLOW, MAGENTA]) {
        assert_close(&frame.vector, &unit(&colour));
    }
    let mean: Vec<f32> = (0..3)
        .map(|c| frames.iter().map(|f| f.vector[c]).sum::<f32>())
        .collect();
    let file_vector = store
        .vector_of(&seer_index_path(&root.join("colors.mkv")), &model)
        .unwrap()
        .unwrap();
    assert_close(&file_vector, &unit(&mean));
    assert_eq!(store.video_counts(&model).unwrap(), (1, 3));

    for (colour, time) in [(GREEN, 1.0), (YELLOW, 3.0), (MAGENTA, 5.0)] {
        let hits = search(&store, colour, 2);
        assert_eq!(hits[0].0, "colors.mkv", "{hits:?}");
        assert_eq!(hits[0].2, Some(time), "{hits:?}");
        assert!((hits[0].1 - 1.0).abs() < 1e-5, "{hits:?}");
        assert_eq!(hits[1].0, "orange.png");
        assert_eq!(hits[1].2, None);
    }
    // Orange-ish is nearer the photo than any frame: the photo comes first,
    // and the video (its yellow frame) second.
    let hits = search(&store, [1.0, 0.5, 0.0], 5);
    assert_eq!(
        hits.len(),
        2,
        "one hit per video, not one per frame: {hits:?}"
    );
    assert_eq!(hits[0].0, "orange.png");
    assert_eq!((hits[1].0.as_str(), hits[1].2), ("colors.mkv", Some(3.0)));
}

/// A copy reuses the frames; a changed video gets new ones; a removed
/// video takes its frames with it; an unchanged one is not decoded again.
#[test]
fn frames_follow_copies_changes_and_removals() {
    let (_dir, root, mut store) = media(&[]);
    std::fs::copy(fixture("colors.mkv"), root.join("a.mkv")).unwrap();
    index(&mut store, &root, videos(Some(ffmpeg())));
    let model = store.choose_model(None).unwrap();

    std::fs::copy(fixture("colors.mkv"), root.join("b.mkv")).unwrap();
    let summary = index(&mut store, &root, videos(Some(ffmpeg())));
    assert_eq!((summary.copied, summary.added, summary.skipped), (1, 0, 1));
    assert_eq!(store.video_counts(&model).unwrap(), (2, 6));

    // a.mkv becomes the 4-second testsrc clip: 2 frames, at 1 and 3 s.
    std::fs::copy(fixture("clip.mp4"), root.join("a.mkv")).unwrap();
    let summary = index(&mut store, &root, videos(Some(ffmpeg())));
    assert_eq!(summary.added, 1, "{summary:?}");
    let a = store
        .id_of(&seer_index_path(&root.join("a.mkv")))
        .unwrap()
        .unwrap();
    let times: Vec<f64> = store
        .frames_of(a, &model)
        .unwrap()
        .iter()
        .map(|f| f.time)
        .collect();
    assert_eq!(times, [1.0, 3.0], "clip.mp4 is 5 s long: frames at 1 and 3");

    std::fs::remove_file(root.join("b.mkv")).unwrap();
    let summary = index(&mut store, &root, videos(Some(ffmpeg())));
    assert_eq!(summary.removed, 1);
    assert_eq!(store.video_counts(&model).unwrap(), (1, 2));
    let hits = search(&store, YELLOW, 5);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].0, "a.mkv");
}

/// Damaged videos are failures named with their cause, the rest of the run
/// goes on; a video that is repaired later is indexed.
#[test]
fn damaged_videos_fail_alone_with_their_cause() {
    let (_dir, root, mut store) = media(&[
        "not-a-video.mp4",
        "empty.mp4",
        "audio-only.m4a",
        "playlist.mp4",
    ]);
    // (.m4a is not a video extension: it is not even walked.)
    std::fs::copy(fixture("audio-only.m4a"), root.join("audio-only.mp4")).unwrap();
    std::fs::copy(fixture("colors.mkv"), root.join("good.mkv")).unwrap();
    write_png(&root.join("red.png"), [255, 0, 0]);
    let summary = index(&mut store, &root, videos(Some(ffmpeg())));
    assert_eq!(summary.added, 2, "{summary:?}");
    let mut failed: Vec<&str> = summary
        .failures
        .iter()
        .map(|(p, _)| p.rsplit('/').next().unwrap())
        .collect();
    failed.sort();
    assert_eq!(
        failed,
        [
            "audio-only.mp4",
            "empty.mp4",
            "not-a-video.mp4",
            "playlist.mp4"
        ]
    );
    assert_eq!(summary.failed, 4, "{summary:?}");
    for (path, cause) in &summary.failures {
        assert!(
            !cause.is_empty() && !cause.contains(path.as_str()),
            "{path}: {cause}"
        );
    }
    let audio = summary
        .failures
        .iter()
        .find(|(p, _)| p.ends_with("audio-only.mp4"))
        .unwrap();
    assert!(audio.1.contains("no video stream"), "{}", audio.1);
    // "More like" a file that failed says why it has no vector.
    let query = crate::Query {
        like: vec![seer_index_path(&root.join("audio-only.mp4"))],
        ..Default::default()
    };
    let model = store.choose_model(None).unwrap();
    let err = crate::query_vector(&store, &model, None, &query, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("could not be indexed") && err.contains("no video stream"),
        "{err}"
    );
    // Failures stay failed until the file changes, and hold no frames.
    let model = store.choose_model(None).unwrap();
    assert_eq!(store.video_counts(&model).unwrap(), (1, 3));
    let again = index(&mut store, &root, videos(Some(ffmpeg())));
    assert_eq!((again.still_failing, again.added), (4, 0), "{again:?}");
    std::fs::copy(fixture("colors.mkv"), root.join("empty.mp4")).unwrap();
    let repaired = index(&mut store, &root, videos(Some(ffmpeg())));
    assert_eq!(repaired.added, 1, "{repaired:?}");
    assert_eq!(store.video_counts(&model).unwrap(), (2, 6));
}

/// Without ffmpeg, videos wait (nothing recorded, photos indexed); with it,
/// the next run indexes them. `videos: None` takes them out of the index.
#[test]
fn without_ffmpeg_videos_wait_and_turned_off_they_leave() {
    let (_dir, root, mut store) = media(&["colors.mkv"]);
    write_png(&root.join("red.png"), [255, 0, 0]);
    let summary = index(&mut store, &root, videos(None));
    assert_eq!(
        (summary.added, summary.failed, summary.videos_without_ffmpeg),
        (1, 0, 1),
        "{summary:?}"
    );
    assert!(store.failures().unwrap().is_empty());
    let summary = index(&mut store, &root, videos(Some(ffmpeg())));
    assert_eq!((summary.added, summary.skipped), (1, 1), "{summary:?}");
    assert_eq!(search(&store, YELLOW, 1)[0].2, Some(3.0));

    // ffmpeg gone again: the indexed video stays.
    let summary = index(&mut store, &root, videos(None));
    assert_eq!((summary.removed, summary.skipped), (0, 2), "{summary:?}");
    let summary = index(&mut store, &root, None);
    assert_eq!(summary.removed, 1, "{summary:?}");
    let model = store.choose_model(None).unwrap();
    assert_eq!(store.video_counts(&model).unwrap(), (0, 0));
    assert_eq!(search(&store, YELLOW, 5).len(), 1);
}

/// An index written before videos (no frames table) is read, searched and
/// written as before; opening it for writing adds the table.
#[test]
fn an_index_without_the_frames_table_is_searched_and_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("media");
    std::fs::create_dir(&root).unwrap();
    write_png(&root.join("red.png"), [255, 0, 0]);
    let index_dir = dir.path().join("index");
    let mut store = Store::open(&index_dir).unwrap();
    index(&mut store, &root, None);
    store
        .conn_for_tests()
        .execute_batch("DROP TABLE frames")
        .unwrap();
    drop(store);
    let read_only = Store::open_read_only(&index_dir).unwrap();
    assert_eq!(search(&read_only, [1.0, 0.0, 0.0], 5).len(), 1);
    let model = read_only.choose_model(None).unwrap();
    assert_eq!(read_only.video_counts(&model).unwrap(), (0, 0));
    drop(read_only);
    std::fs::copy(fixture("colors.mkv"), root.join("colors.mkv")).unwrap();
    let mut store = Store::open(&index_dir).unwrap();
    let summary = index(&mut store, &root, videos(Some(ffmpeg())));
    assert_eq!(summary.added, 1, "{summary:?}");
    assert_eq!(search(&store, MAGENTA, 1)[0].2, Some(5.0));
}

fn seer_index_path(path: &Path) -> String {
    crate::pathcodec::to_stored(&path.canonicalize().unwrap())
}

fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
    }
}

/// The sampling a run is given is remembered; a new one samples the indexed
/// videos again, a run given none keeps the last.
#[test]
fn a_new_frame_interval_samples_indexed_videos_again() {
    let (_dir, root, mut store) = media(&["colors.mkv"]);
    write_png(&root.join("red.png"), [255, 0, 0]);
    let run = |store: &mut Store, interval: Option<f64>| {
        let (sampling, again) = crate::video::sampling_for_run(store, interval, None).unwrap();
        let summary = index(
            store,
            &root,
            Some(VideoOptions {
                ffmpeg: Some(ffmpeg()),
                sampling,
            }),
        );
        (again, summary.added, summary.video_frames)
    };
    assert_eq!(run(&mut store, None), (0, 2, 3));
    assert_eq!(
        run(&mut store, Some(2.0)),
        (0, 0, 0),
        "the default, unchanged"
    );
    assert_eq!(run(&mut store, Some(1.0)), (1, 1, 6), "0.5 to 5.5 s of 6.4");
    assert_eq!(run(&mut store, None), (0, 0, 0), "1 s is remembered");
    let model = store.choose_model(None).unwrap();
    assert_eq!(store.video_counts(&model).unwrap(), (1, 6));
    assert_eq!(search(&store, YELLOW, 1)[0].2, Some(3.5));
    assert_eq!(run(&mut store, Some(3.0)), (1, 1, 2), "1.5 and 4.5 s");
}

/// A video is one file for the progress bar; its frames are reported as
/// they are embedded (after each model batch: 2 here), of the planned total.
#[test]
fn a_videos_frames_are_reported_as_they_are_embedded() {
    let (_dir, root, mut store) = media(&["colors.mkv"]);
    let mut events = Vec::new();
    crate::index(
        &mut store,
        &encoder_model(),
        &index_options(&root, videos(Some(ffmpeg()))),
        &mut |p| {
            events.push(match p {
                crate::Progress::Planned(n) => format!("planned {n}"),
                crate::Progress::Embedded => "file".to_string(),
                crate::Progress::VideoFrames { done, total } => format!("{done}/{total}"),
            })
        },
    )
    .unwrap();
    assert_eq!(events, ["planned 1", "2/3", "file"]);
}

/// A video with a vector but no frames (what `seer import` of an export
/// leaves, or an older seer) is sampled again by the next run, not skipped
/// as unchanged.
#[test]
fn a_video_without_frames_is_sampled_again() {
    let (_dir, root, mut store) = media(&["colors.mkv"]);
    index(&mut store, &root, videos(Some(ffmpeg())));
    store
        .conn_for_tests()
        .execute_batch("DELETE FROM frames")
        .unwrap();
    let summary = index(&mut store, &root, videos(Some(ffmpeg())));
    assert_eq!((summary.added, summary.video_frames), (1, 3), "{summary:?}");
    assert_eq!(search(&store, YELLOW, 1)[0].2, Some(3.0));
}

/// Captions the videos and photos under `root` with the fake captioner
/// ("a COLOUR square" for the frame's or photo's mean colour).
fn caption(
    store: &mut Store,
    root: &Path,
    ffmpeg: Option<seer_video::Ffmpeg>,
) -> crate::CaptionSummary {
    let lock = crate::IndexLock::try_acquire(store.dir()).unwrap();
    let options = crate::CaptionOptions {
        roots: vec![root.canonicalize().unwrap()],
        batch_size: 2,
        limits: Default::default(),
        generate: Default::default(),
        ffmpeg,
    };
    let captioner = crate::caption_tests::FakeCaptioner::new(None);
    crate::caption_locked(
        store,
        &lock,
        &crate::caption_tests::captioner_model(captioner),
        &options,
        &mut |_| {},
    )
    .unwrap()
}

/// A video is captioned by its frame most like the whole video: of
/// colors.mkv's green, yellow and magenta frames, the yellow one (nearest
/// their mean), so words find the video. Without ffmpeg it waits (not a
/// failure) while photos are captioned; a copy has the caption; a video
/// changed since it was indexed fails by name, the rest of the run goes on.
#[test]
fn a_video_is_captioned_by_its_most_typical_frame() {
    let (_dir, root, mut store) = media(&["colors.mkv"]);
    write_png(&root.join("orange.png"), [255, 128, 0]);
    index(&mut store, &root, videos(Some(ffmpeg())));
    let video = seer_index_path(&root.join("colors.mkv"));
    let id = store.id_of(&video).unwrap().unwrap();
    assert_eq!(store.representative_frame(id).unwrap(), Some(3.0));

    let waiting = caption(&mut store, &root, None);
    assert_eq!(
        (
            waiting.captioned,
            waiting.videos_without_ffmpeg,
            waiting.failed
        ),
        (1, 1, 0),
        "{waiting:?}"
    );
    assert_eq!(store.caption_of(id).unwrap(), None);

    let summary = caption(&mut store, &root, Some(ffmpeg()));
    assert_eq!((summary.captioned, summary.failed), (1, 0), "{summary:?}");
    let text = store.caption_of(id).unwrap().map(|c| c.text);
    assert_eq!(text.as_deref(), Some("a yellow square"));
    assert_eq!(
        crate::caption_tests::found_by_words(&store, "yellow"),
        [video]
    );

    // A copy has the caption from the start (as a photo's copy has).
    std::fs::copy(fixture("colors.mkv"), root.join("copy.mkv")).unwrap();
    index(&mut store, &root, videos(Some(ffmpeg())));
    let copy = store
        .id_of(&seer_index_path(&root.join("copy.mkv")))
        .unwrap()
        .unwrap();
    let text = store.caption_of(copy).unwrap().map(|c| c.text);
    assert_eq!(text.as_deref(), Some("a yellow square"));
    // A video changed since it was indexed fails by name; a new photo is
    // captioned in the same run.
    std::fs::copy(fixture("clip.mp4"), root.join("new.mp4")).unwrap();
    write_png(&root.join("blue.png"), [0, 0, 255]);
    index(&mut store, &root, videos(Some(ffmpeg())));
    std::fs::copy(fixture("colors.mkv"), root.join("new.mp4")).unwrap();
    let failed = caption(&mut store, &root, Some(ffmpeg()));
    assert_eq!((failed.captioned, failed.failed), (1, 1), "{failed:?}");
    let (path, cause) = &failed.failures[0];
    assert!(path.ends_with("new.mp4"), "{path}");
    assert!(cause.contains("changed since it was indexed"), "{cause}");
}
