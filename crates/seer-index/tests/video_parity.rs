//! Video frames against the reference: `scripts/make_video_reference.py`
//! decodes the fixture videos with PyAV (its own FFmpeg build), takes the
//! frame shown at each sample time and embeds it with open_clip; seer's
//! index, sampling through the ffmpeg program and embedding with its own
//! preprocessing, must store the same times and the same vectors (1e-4).
//! Needs ffmpeg on PATH (CI installs it).

use std::path::{Path, PathBuf};

use seer_engine::{LoadOptions, LoadedModel};
use seer_index::{Encoding, IndexOptions, Store, VideoOptions};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn sampled_frames_match_the_reference_decoder_and_model() {
    let reference: serde_json::Value = serde_json::from_slice(
        &std::fs::read(repo().join("fixtures/video/reference.json")).unwrap(),
    )
    .unwrap();
    let interval = reference["interval"].as_f64().unwrap();
    let videos = reference["videos"].as_object().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("media");
    std::fs::create_dir(&root).unwrap();
    for name in videos.keys() {
        std::fs::copy(repo().join("fixtures/video").join(name), root.join(name)).unwrap();
    }
    let model = LoadedModel::load_images(
        repo()
            .join("fixtures/models/openclip-vit")
            .to_str()
            .unwrap(),
        &LoadOptions::default(),
    )
    .unwrap();
    let ffmpeg = seer_video::Ffmpeg::find(None)
        .expect("this test needs ffmpeg and ffprobe on PATH (apt install ffmpeg)");
    let options = IndexOptions {
        roots: vec![root.clone()],
        include_hidden: false,
        encoding: Encoding::F32,
        embed: seer_engine::EmbedOptions {
            batch_size: 2,
            ..Default::default()
        },
        ann_threshold: usize::MAX,
        videos: Some(VideoOptions {
            ffmpeg: Some(ffmpeg),
            sampling: seer_video::Sampling {
                interval,
                ..Default::default()
            },
        }),
    };
    let mut store = Store::open(&dir.path().join("index")).unwrap();
    let summary = seer_index::index(&mut store, &model, &options, &mut |_| {}).unwrap();
    assert_eq!(
        (summary.added, summary.failed),
        (videos.len(), 0),
        "{summary:?}"
    );
    let info = store.choose_model(None).unwrap();
    let (mut worst, mut failures) = (0f32, Vec::new());
    for (name, want) in videos {
        let stored = seer_index::pathcodec::to_stored(&root.canonicalize().unwrap().join(name));
        let id = store.id_of(&stored).unwrap().unwrap();
        let frames = store.frames_of(id, &info).unwrap();
        let times: Vec<f64> = frames.iter().map(|f| f.time).collect();
        let want_times: Vec<f64> = want["times"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_f64().unwrap())
            .collect();
        assert_eq!(times, want_times, "{name}");
        for (frame, want) in frames.iter().zip(want["embeddings"].as_array().unwrap()) {
            let diff = frame
                .vector
                .iter()
                .zip(want.as_array().unwrap())
                .map(|(got, want)| (got - want.as_f64().unwrap() as f32).abs())
                .fold(0f32, f32::max);
            eprintln!("{name} at {} s: largest difference {diff:e}", frame.time);
            if diff >= 1e-4 {
                failures.push(format!("{name} at {} s: {diff:e}", frame.time));
            }
            worst = worst.max(diff);
        }
    }
    assert!(
        failures.is_empty(),
        "frames differ from the reference (decoder: {}) by 1e-4 or more: {failures:?}",
        reference["decoder"]
    );
    eprintln!("largest difference from the reference: {worst:e}");
}
