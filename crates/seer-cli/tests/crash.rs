//! Crash safety: a real indexing process is killed (SIGKILL) at random moments,
//! many times. After every kill the index must open cleanly, pass SQLite's
//! integrity check, hold only complete records, and never lose committed work;
//! the next run completes what is left.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use seer_index::Store;
use seer_testkit::{model_fixture, shared_data, tokenizer_file};

const FILES: usize = 600;
/// Kills attempted; the test demands at least MIN_KILLS actually interrupted a run.
const KILLS: usize = 25;
const MIN_KILLS: usize = 6;

fn seer_command(index: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_seer"));
    c.args(args)
        .env("SEER_INDEX", index)
        .env("SEER_TOKENIZER", tokenizer_file())
        .env("HF_HUB_OFFLINE", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Vectors stored and whether the database is sound.
fn check(index: &Path) -> usize {
    let store = Store::open_read_only(index).expect("the index opens after a kill");
    assert_eq!(store.integrity_check().unwrap(), "ok");
    match store.choose_model(None) {
        Ok(model) => {
            let vectors = store.load_vectors(&model).unwrap();
            assert_eq!(vectors.len(), model.vectors, "every stored vector decodes");
            assert!(vectors.data.iter().all(|x| x.is_finite()));
            vectors.len()
        }
        Err(_) => 0, // killed before the first batch was committed
    }
}

/// A folder of `count` distinct sample photos, starting at sample `skip`.
fn photo_folder(skip: usize, count: usize) -> tempfile::TempDir {
    let photos = tempfile::tempdir().unwrap();
    let mut samples: Vec<PathBuf> =
        std::fs::read_dir(shared_data().join("imagenet-samples/images"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
    samples.sort();
    for f in samples.iter().skip(skip).take(count) {
        std::fs::copy(f, photos.path().join(f.file_name().unwrap())).unwrap();
    }
    photos
}

#[test]
fn killing_the_indexer_at_random_moments_never_corrupts_or_loses_work() {
    let photos = photo_folder(0, FILES);
    let index = tempfile::tempdir().unwrap();
    let model = model_fixture("openclip-vit").display().to_string();
    let args = [
        "index",
        photos.path().to_str().unwrap(),
        "--model",
        &model,
        "--batch-size",
        "8",
        "--threads",
        "1",
    ];

    // A small deterministic generator for the kill times.
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut committed = 0;
    let mut kills = 0;
    for _ in 0..KILLS {
        let mut child = seer_command(index.path(), &args).spawn().unwrap();
        let delay = Duration::from_millis(20 + next() % 250);
        let started = Instant::now();
        let finished = loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "indexing failed on its own");
                break true;
            }
            if started.elapsed() >= delay {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                break false;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let now = check(index.path());
        let outcome = if finished { "finished" } else { "killed" };
        println!(
            "run {}: {outcome} after {delay:?}, {now} vectors",
            kills + usize::from(finished)
        );
        assert!(
            now >= committed,
            "committed work was lost: {now} < {committed}"
        );
        committed = now;
        if finished {
            break;
        }
    }
    assert!(
        kills >= MIN_KILLS,
        "only {kills} runs were interrupted; the test proved too little"
    );
    // The next run completes the work.
    assert!(seer_command(index.path(), &args)
        .status()
        .unwrap()
        .success());
    assert_eq!(check(index.path()), FILES);
}

#[test]
fn searches_run_while_indexing() {
    let photos = photo_folder(300, 160);
    let index = tempfile::tempdir().unwrap();
    let model = model_fixture("openclip-vit").display().to_string();
    let photos_arg = photos.path().to_str().unwrap();
    let mut child = seer_command(
        index.path(),
        &[
            "index",
            photos_arg,
            "--model",
            &model,
            "--batch-size",
            "4",
            "--threads",
            "1",
        ],
    )
    .spawn()
    .unwrap();
    let mut searched = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        let out = seer_command(index.path(), &["search", "a dog", "-k", "3", "--json"])
            .stdout(Stdio::piped())
            .output()
            .unwrap();
        if out.status.success() && !out.stdout.is_empty() {
            searched += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(
        searched > 0,
        "no search succeeded while the index was being written"
    );
}
