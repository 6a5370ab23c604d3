//! seer on a disk that fills up: each command that writes fails with exit 2
//! and a message naming the file and the cause, never a panic; what was stored
//! before stays whole and readable, and the next run, with room again, finishes.
//!
//! A full disk is stood in for by the process's file size limit
//! (RLIMIT_FSIZE, the shell's `ulimit -f`), which works without privileges:
//! a write past it fails as one past the end of a disk does (EFBIG, "File too
//! large", where a disk says ENOSPC). One test also fills a real tmpfs, where
//! mounting one is permitted (as root).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use seer_testkit::{model_fixture, repo_root, shared_data, tokenizer_file};

mod common;
use common::runs::{pairs_file, seer_file_size_limited};

/// The environment every run gets: the index, the shared tokenizer, offline.
fn environment<'a>(c: &'a mut Command, index: &Path) -> &'a mut Command {
    c.env("SEER_INDEX", index)
        .env("SEER_TOKENIZER", tokenizer_file())
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("SEER_MODEL")
}

fn seer(index: &Path, args: &[&str]) -> Output {
    environment(&mut Command::new(env!("CARGO_BIN_EXE_seer")), index)
        .args(args)
        .output()
        .expect("run seer")
}

/// `seer ARGS` with no file allowed to grow past `blocks` 512-byte blocks.
fn seer_limited(index: &Path, blocks: u64, args: &[&str]) -> Output {
    environment(&mut seer_file_size_limited(blocks), index)
        .args(args)
        .output()
        .expect("run seer under a file size limit")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "seer failed: {}", text(&o.stderr));
    text(&o.stdout)
}

/// Exit 2, a message naming `names` and saying why, and no panic.
fn refused(o: &Output, names: &str) -> String {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(names), "names {names}: {err}");
    assert!(
        err.contains("File too large") || err.contains("No space left on device"),
        "says why: {err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    err
}

fn model() -> String {
    model_fixture("openclip-vit").display().to_string()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Whether anything under `dir` is a temporary (`.….tmp`).
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(".tmp") {
            found.push(e.path());
        } else if e.file_type().unwrap().is_dir() {
            found.extend(temporaries(&e.path()));
        }
    }
    found
}

/// A folder of `n` distinct photos (copies of shared samples).
fn photo_folder(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let samples = shared_data().join("imagenet-samples/images");
    let mut files: Vec<PathBuf> = std::fs::read_dir(samples)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files.iter().take(n) {
        std::fs::copy(f, dir.path().join(f.file_name().unwrap())).unwrap();
    }
    dir
}

fn status_json(index: &Path) -> serde_json::Value {
    let o = seer(index, &["status", "--json"]);
    serde_json::from_str(ok(&o).trim()).unwrap()
}

fn indexed_files(index: &Path) -> u64 {
    status_json(index)["files"].as_u64().unwrap()
}

/// SQLite reads a WAL database through a shared-memory file it makes on
/// the first read; a full disk kept it from doing so, and every search,
/// `status` and `export` failed ("disk I/O error: Error code 4874"). Reads
/// need no room; `dupes`, whose threshold the index remembers, says it could
/// not remember it and still gives its groups.
#[test]
fn a_full_disk_does_not_keep_anyone_from_reading_the_index() {
    let photos = photo_folder(12);
    let idx = tempfile::tempdir().unwrap();
    let index = idx.path().join("index");
    let m = model();
    ok(&seer(
        &index,
        &["index", photos.path().to_str().unwrap(), "--model", &m],
    ));
    let query = ["search", "a fish", "--model", &m, "-k", "3", "--json"];
    let expected = ok(&seer(&index, &query));
    let status = ok(&seer(&index, &["status"]));

    let full = seer_limited(&index, 0, &query);
    assert_eq!(ok(&full), expected);
    assert_eq!(ok(&seer_limited(&index, 0, &["status"])), status);
    let out = idx.path().join("export");
    std::fs::create_dir(&out).unwrap();
    // The export itself needs room: its files fail, naming themselves.
    refused(
        &seer_limited(&index, 0, &["export", "--out", out.to_str().unwrap()]),
        "img_emb_0.npy",
    );

    let dupes = seer_limited(&index, 0, &["dupes", "--model", &m, "--sample", "4"]);
    let err = text(&dupes.stderr);
    assert!(dupes.status.success(), "{err}");
    assert!(
        err.contains("warning:") && err.contains("index.sqlite") && err.contains("File too large"),
        "{err}"
    );
    assert!(err.contains("measured again next time"), "{err}");
    // With room, the threshold is remembered: no measurement the next time.
    let first = seer(&index, &["dupes", "--model", &m, "--sample", "4"]);
    assert!(text(&first.stderr).contains("altered copies"), "measured");
    let second = seer(&index, &["dupes", "--model", &m, "--sample", "4"]);
    assert!(
        !text(&second.stderr).contains("altered copies"),
        "{}",
        text(&second.stderr)
    );
}

/// An index growing past the room it has: the batches committed before stay,
/// the error says what happened, and the next run with room finishes the work.
#[test]
fn an_index_run_that_runs_out_of_room_keeps_what_it_stored() {
    let photos = photo_folder(10);
    let more = shared_data().join("imagenet-samples/images");
    let idx = tempfile::tempdir().unwrap();
    let index = idx.path().join("index");
    let m = model();
    ok(&seer(
        &index,
        &["index", photos.path().to_str().unwrap(), "--model", &m],
    ));
    assert_eq!(indexed_files(&index), 10);

    // 32 KiB a file: room for SQLite's shared memory, not for 1000 photos.
    let o = seer_limited(
        &index,
        64,
        &["index", more.to_str().unwrap(), "--model", &m],
    );
    let err = refused(&o, "index.sqlite");
    assert!(err.contains("free some space and run again"), "{err}");
    let kept = indexed_files(&index);
    assert!((10..1010).contains(&kept), "{kept} files");
    assert!(!names_in(&index).iter().any(|n| n.ends_with(".tmp")));

    // With room again, the bare re-run finishes every folder.
    ok(&seer(&index, &["index"]));
    assert_eq!(indexed_files(&index), 1010);
}

/// A new index that could not be created (no room at all) left an empty
/// database file, which readers took for a damaged one ("no such table: meta").
#[test]
fn an_index_that_could_not_be_created_reads_as_none_yet() {
    let photos = photo_folder(3);
    let idx = tempfile::tempdir().unwrap();
    let index = idx.path().join("index");
    let m = model();
    let folder = photos.path().to_str().unwrap();
    refused(
        &seer_limited(&index, 0, &["index", folder, "--model", &m]),
        "index.sqlite",
    );
    let o = seer(&index, &["status"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("no index here yet"),
        "{}",
        text(&o.stderr)
    );
    ok(&seer(&index, &["index", folder, "--model", &m]));
    assert_eq!(indexed_files(&index), 3);
}

/// `--out x.npy` writes the array and its row listing `x.inputs.txt`: a disk
/// that fills between the two left a new array beside the old listing.
#[test]
fn an_array_and_its_listing_are_replaced_together_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let idx = dir.path().join("unused-index");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let npy = out.join("x.npy");
    let short = dir.path().join("short.txt");
    let long = dir.path().join("long.txt");
    let lines = |n: usize, repeat: usize| -> String {
        (0..n)
            .map(|i| format!("a photo of a cat number {i} ").repeat(repeat) + "\n")
            .collect()
    };
    std::fs::write(&short, lines(20, 1)).unwrap();
    // 20 rows of 16 floats (1.4 kB) listed by 30 kB of text.
    std::fs::write(&long, lines(20, 60)).unwrap();
    let m = model();
    let embed = |texts: &Path| {
        vec![
            "embed".to_string(),
            "--model".into(),
            m.clone(),
            "--text-file".into(),
            texts.display().to_string(),
            "--out".into(),
            npy.display().to_string(),
        ]
    };
    let args = embed(&short);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&seer(&idx, &args));
    let before = (
        std::fs::read(&npy).unwrap(),
        std::fs::read(out.join("x.inputs.txt")).unwrap(),
    );

    // 4 kB a file: the array fits, its listing does not.
    let args = embed(&long);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    refused(&seer_limited(&idx, 8, &args), "x.inputs.txt");
    let after = (
        std::fs::read(&npy).unwrap(),
        std::fs::read(out.join("x.inputs.txt")).unwrap(),
    );
    assert!(after == before, "the earlier pair is kept whole");
    assert_eq!(names_in(&out), ["x.inputs.txt", "x.npy"]);

    ok(&seer(&idx, &args));
    let listing = std::fs::read_to_string(out.join("x.inputs.txt")).unwrap();
    assert_eq!(listing.lines().count(), 20);
    assert_eq!(std::fs::read(&npy).unwrap().len(), before.0.len());
}

/// `embed --shards` records each shard's input before its files: a failed
/// record left its temporary behind (`.input_0.json.PID.tmp`) and named it,
/// not the record.
#[test]
fn a_shard_record_that_does_not_fit_leaves_no_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let idx = dir.path().join("unused-index");
    let out = dir.path().join("emb");
    let shard = shared_data().join("cifar10-wds/test-0000.tar.gz");
    let m = model();
    let args = [
        "embed",
        "--model",
        &m,
        "--shards",
        shard.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ];
    let err = refused(&seer_limited(&idx, 0, &args), "inputs/input_0.json:");
    assert!(!err.contains(".input_0.json."), "{err}");
    assert_eq!(temporaries(&out), Vec::<PathBuf>::new());

    let o = ok(&seer(&idx, &args));
    let line: serde_json::Value = serde_json::from_str(o.trim()).unwrap();
    assert_eq!(line["status"], "written");
    assert_eq!(line["rows"], 10000);
    assert_eq!(temporaries(&out), Vec::<PathBuf>::new());
}

/// `segment --coco` and `--logits` over files from an earlier run: one that
/// does not fit leaves the earlier file whole (both were truncated and then
/// written in place, so a full disk lost the earlier run's file).
#[test]
fn segment_files_that_do_not_fit_leave_the_earlier_ones_whole() {
    let dir = tempfile::tempdir().unwrap();
    let idx = dir.path().join("unused-index");
    let image = shared_data().join("coco-mini/images/val2017/000000000139.jpg");
    let sam = repo_root()
        .join("fixtures/sam/sam-tiny")
        .display()
        .to_string();
    let coco = dir.path().join("coco.json");
    let logits = dir.path().join("logits.npy");
    let earlier = b"{\"earlier\": \"run\"}".as_slice();
    for file in [&coco, &logits] {
        std::fs::write(file, earlier).unwrap();
    }
    let args = [
        "segment",
        "--model",
        &sam,
        image.to_str().unwrap(),
        "--point",
        "100,100",
        "--coco",
        coco.to_str().unwrap(),
        "--logits",
        logits.to_str().unwrap(),
        "--json",
    ];
    // Half a kilobyte: the logits (3 × 256 × 256 floats) never fit, the
    // COCO file of one image may; either way no earlier file is cut.
    let o = seer_limited(&idx, 1, &args);
    assert!(!o.status.success(), "{}", text(&o.stdout));
    assert_eq!(std::fs::read(&logits).unwrap(), earlier);
    let c = std::fs::read(&coco).unwrap();
    assert!(
        c == earlier || serde_json::from_slice::<serde_json::Value>(&c).is_ok(),
        "{}",
        text(&c)
    );
    assert_eq!(temporaries(dir.path()), Vec::<PathBuf>::new());
    ok(&seer(&idx, &args));
    assert_ne!(std::fs::read(&logits).unwrap(), earlier);
}

/// A checkpoint that does not fit: the message named a file in the temporary
/// folder the failure removed (`.step-00000002.XXXXXX.tmp/...`); it names the
/// checkpoint's own path now. The checkpoints before it stay, and the run
/// resumes from them.
#[test]
fn a_checkpoint_that_does_not_fit_is_named_and_the_earlier_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let idx = dir.path().join("unused-index");
    let data = pairs_file(dir.path(), 32);
    let out = dir.path().join("run");
    let model = repo_root().join("fixtures/training/model");
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train".to_string(),
            "--model".into(),
            model.display().to_string(),
            "--data".into(),
            data.display().to_string(),
            "--warmup".into(),
            "1".into(),
            "--batch-size".into(),
            "8".into(),
            "--checkpoint-every".into(),
            "1".into(),
            "--steps".into(),
            "3".into(),
            "--out".into(),
            out.display().to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };
    // The first step and its checkpoint.
    let first = train(&["--stop-after", "1"]);
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    ok(&seer(&idx, &first));
    let step1 = out.join("checkpoints/step-00000001");
    assert!(step1.join("state.json").is_file());
    let weights = std::fs::read(step1.join("model.safetensors")).unwrap();

    // 1 MB a file: the weights (6.5 MB) do not fit.
    let more = train(&["--resume"]);
    let more: Vec<&str> = more.iter().map(String::as_str).collect();
    let err = refused(
        &seer_limited(&idx, 2048, &more),
        "checkpoints/step-00000002/model.safetensors",
    );
    assert!(!err.contains("/.step-"), "{err}");
    assert_eq!(temporaries(&out), Vec::<PathBuf>::new());
    assert_eq!(
        names_in(&out.join("checkpoints")),
        ["step-00000001"],
        "the checkpoint before is kept"
    );
    assert_eq!(
        std::fs::read(step1.join("model.safetensors")).unwrap(),
        weights
    );

    ok(&seer(&idx, &more));
    assert!(out.join("checkpoints/step-00000003/state.json").is_file());
    assert!(out.join("model/model.safetensors").is_file());
}

/// A tmpfs of `size` mounted on a new folder, unmounted when dropped; None
/// (said on stderr) where mounting is not permitted.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match mounted {
            Ok(o) if o.status.success() => Some(Self { dir }),
            Ok(o) => {
                eprintln!(
                    "skipped: cannot mount a tmpfs here ({})",
                    text(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount ({e})");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn resize(&self, size: &str) {
        let o = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// A real disk that fills: an index on a small tmpfs grows past it, is read
/// while the disk is full, and is finished once the disk is larger.
#[test]
fn an_index_on_a_tmpfs_that_fills_up() {
    let Some(disk) = Tmpfs::mount("400k") else {
        return;
    };
    let index = disk.path().join("index");
    let photos = photo_folder(10);
    let more = shared_data().join("imagenet-samples/images");
    let m = model();
    ok(&seer(
        &index,
        &["index", photos.path().to_str().unwrap(), "--model", &m],
    ));
    let o = seer(&index, &["index", more.to_str().unwrap(), "--model", &m]);
    let err = refused(&o, "index.sqlite");
    assert!(err.contains("No space left on device"), "{err}");
    // Fill what is left, so a reader finds no room either.
    let _ = std::fs::write(disk.path().join("filler"), vec![0u8; 1 << 20]);
    let kept = indexed_files(&index);
    assert!((10..1010).contains(&kept), "{kept} files");
    ok(&seer(
        &index,
        &["search", "a fish", "--model", &m, "-k", "1"],
    ));

    disk.resize("16m");
    ok(&seer(&index, &["index"]));
    assert_eq!(indexed_files(&index), 1010);
}
