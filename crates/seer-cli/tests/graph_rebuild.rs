//! `seer index --rebuild-graph` builds the new approximate-search graph beside
//! the old one and swaps it in only once complete: a rebuild that fails or is
//! killed part way leaves the old graph current and in use, and searches from
//! other processes go on using it while a rebuild runs. Also: a no-op `seer
//! index` on a full disk, where who holds the index lock cannot be recorded.
//!
//! A full disk is stood in for by the file size limit (RLIMIT_FSIZE), as in
//! `disk_full.rs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use seer_index::exchange::{self, ShardRow};
use seer_index::npy::Dtype;
use seer_testkit::{model_fixture, shared_data, tokenizer_file};

mod common;
use common::runs::seer_file_size_limited;

/// The environment every run gets: the index, the shared tokenizer, offline,
/// and a graph kept from 5 vectors on.
fn environment<'a>(c: &'a mut Command, index: &Path) -> &'a mut Command {
    c.env("SEER_INDEX", index)
        .env("SEER_TOKENIZER", tokenizer_file())
        .env("HF_HUB_OFFLINE", "1")
        .env("SEER_ANN_THRESHOLD", "5")
        .env_remove("SEER_MODEL")
        .env_remove("SEER_LOG")
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

fn model() -> String {
    model_fixture("openclip-vit").display().to_string()
}

fn graph_state(index: &Path) -> String {
    let o = seer(index, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(ok(&o).trim()).unwrap();
    status["models"][0]["graph"].as_str().unwrap().to_string()
}

/// The graph file of the index's only model.
fn graph_file(index: &Path) -> PathBuf {
    index.join("ann-model-1.hnsw")
}

/// Temporaries (`.….tmp`) beside the database.
fn temporaries(index: &Path) -> Vec<String> {
    std::fs::read_dir(index)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n.ends_with(".tmp"))
        .collect()
}

/// `seer search QUERY -k 5 --json` and whether it went through the graph
/// (the debug log says which search ran).
fn search(index: &Path, query: &str) -> (String, bool) {
    let o = environment(&mut Command::new(env!("CARGO_BIN_EXE_seer")), index)
        .args(["search", query, "-k", "5", "--json"])
        .env("SEER_LOG", "debug")
        .output()
        .expect("run seer");
    let hits = ok(&o);
    let err = text(&o.stderr);
    let approximate = err.contains("with the approximate index");
    assert!(
        approximate || err.contains("exactly"),
        "which search: {err}"
    );
    (hits, approximate)
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

/// An index of 12 photos with a current graph.
fn small_index() -> (tempfile::TempDir, tempfile::TempDir, PathBuf) {
    let photos = photo_folder(12);
    let idx = tempfile::tempdir().unwrap();
    let index = idx.path().join("index");
    let m = model();
    ok(&seer(
        &index,
        &["index", photos.path().to_str().unwrap(), "--model", &m],
    ));
    assert_eq!(graph_state(&index), "current");
    (photos, idx, index)
}

/// The rebuild deleted the graph and its generation first: one that failed
/// (here, no room for the new graph) left the index without a graph, every
/// search exact (slow on a large index) until the next run.
#[test]
fn a_rebuild_that_fails_leaves_the_old_graph_current_and_in_use() {
    let (_photos, _idx, index) = small_index();
    let (hits, approximate) = search(&index, "a fish");
    assert!(approximate, "the graph answers");
    let graph = std::fs::read(graph_file(&index)).unwrap();

    // 512 bytes a file: the lock's record fits, the new graph (3.7 kB) not.
    let o = seer_limited(&index, 1, &["index", "--rebuild-graph"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("could not rebuild the approximate-search graph")
            && err.contains("ann-model-1.hnsw")
            && err.contains("File too large"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    assert_eq!(std::fs::read(graph_file(&index)).unwrap(), graph);
    assert_eq!(graph_state(&index), "current");
    assert_eq!(search(&index, "a fish"), (hits.clone(), true));
    assert_eq!(temporaries(&index), Vec::<String>::new());

    // With room, the rebuild goes through: a new graph, current, same hits.
    let o = seer(&index, &["index", "--rebuild-graph", "--json"]);
    let line: serde_json::Value = serde_json::from_str(ok(&o).trim()).unwrap();
    assert_eq!(line["graph"], true);
    assert_eq!(graph_state(&index), "current");
    assert_eq!(search(&index, "a fish"), (hits, true));
    assert_eq!(temporaries(&index), Vec::<String>::new());
}

/// A rebuild killed part way leaves its temporary (as large as the graph):
/// the old graph stays current, and the next rebuild removes it.
#[test]
fn a_temporary_left_by_a_killed_rebuild_is_ignored_then_removed() {
    let (_photos, _idx, index) = small_index();
    let (hits, _) = search(&index, "a fish");
    let left = index.join(".ann-model-1.hnsw.Xy12Ab.tmp");
    std::fs::write(&left, b"half a graph").unwrap();
    assert_eq!(graph_state(&index), "current");
    assert_eq!(search(&index, "a fish"), (hits.clone(), true));

    ok(&seer(&index, &["index", "--rebuild-graph"]));
    assert!(!left.exists());
    assert_eq!(search(&index, "a fish"), (hits, true));
}

/// Random unit vectors of the fixture model's size (16), `n` of them, in the
/// clip-retrieval layout, for an index large enough that a rebuild takes a
/// while.
fn many_vectors(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let vectors: Vec<Vec<f32>> = (0..n)
        .map(|_| {
            let v: Vec<f32> = (0..16).map(|_| next()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter().map(|x| x / norm).collect()
        })
        .collect();
    let rows: Vec<ShardRow> = (0..n)
        .map(|i| ShardRow {
            key: i.to_string(),
            image_path: format!("/photos/{i:06}.jpg"),
            caption: None,
        })
        .collect();
    exchange::write_shard(dir.path(), 0, &rows, &vectors, 16, Dtype::F32, &[]).unwrap();
    dir
}

/// A child process killed when dropped (a failed assertion must not leave
/// a stopped one behind).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(pid: u32, name: &str) {
    let s = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(s.success(), "kill -{name} {pid}");
}

/// Searches from other processes while a rebuild is under way (stopped part
/// way through) use the old graph, and give what they gave before; the
/// rebuild killed there leaves the old graph current.
#[test]
fn searches_use_the_old_graph_while_a_rebuild_runs_and_after_it_is_killed() {
    let idx = tempfile::tempdir().unwrap();
    let index = idx.path().join("index");
    let m = model();
    let data = many_vectors(20_000);
    ok(&seer(
        &index,
        &["import", data.path().to_str().unwrap(), "--model", &m],
    ));
    assert_eq!(graph_state(&index), "current");
    let like = ["--like", "/photos/000007.jpg"];
    let query = |index: &Path| {
        let o = environment(&mut Command::new(env!("CARGO_BIN_EXE_seer")), index)
            .args(["search", like[0], like[1], "-k", "5", "--json"])
            .env("SEER_LOG", "debug")
            .output()
            .unwrap();
        let err = text(&o.stderr);
        (ok(&o), err.contains("with the approximate index"))
    };
    let (hits, approximate) = query(&index);
    assert!(approximate);
    let graph = std::fs::read(graph_file(&index)).unwrap();

    let mut guard = KillOnDrop(
        environment(&mut Command::new(env!("CARGO_BIN_EXE_seer")), &index)
            .args(["index", "--rebuild-graph"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let rebuild = &mut guard.0;
    let pid = rebuild.id();
    // Stops the rebuild once `ready` says it is under way; false when it
    // finished first.
    let mut stop_when = |ready: &dyn Fn() -> bool| loop {
        if rebuild.try_wait().unwrap().is_some() {
            return false;
        }
        if ready() {
            signal(pid, "STOP");
            return true;
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    };
    // Where searches must find the old graph, whole, current and in use.
    let unchanged = |when: &str| {
        assert_eq!(graph_state(&index), "current", "{when}");
        assert_eq!(query(&index), (hits.clone(), true), "{when}");
        assert!(
            std::fs::read(graph_file(&index)).unwrap() == graph,
            "{when}"
        );
    };
    // First once it holds the index lock (its record names it): building.
    let record = format!("\"pid\":{pid},");
    let lock_file = index.join("index.lock");
    let held = || std::fs::read_to_string(&lock_file).is_ok_and(|r| r.contains(&record));
    if stop_when(&held) {
        unchanged("stopped with the lock held");
        signal(pid, "CONT");
    }
    // Then once something changes beside the database: the new graph's
    // temporary appears (or the old graph goes, as it did).
    let changing = || !temporaries(&index).is_empty() || !graph_file(&index).exists();
    if stop_when(&changing) {
        unchanged("stopped while writing the new graph");
        signal(pid, "KILL");
        let _ = rebuild.wait();
        unchanged("killed");
    } else {
        eprintln!("the rebuild finished before it could be stopped: only its result is checked");
    }

    ok(&seer(&index, &["index", "--rebuild-graph"]));
    assert_eq!(graph_state(&index), "current");
    assert!(query(&index).1);
    assert_eq!(temporaries(&index), Vec::<String>::new());
}

/// A no-op `seer index` on a full disk, while another process has the
/// database open (so SQLite needs no room for its shared memory): who holds
/// the lock cannot be recorded, and the run still goes through, saying so;
/// reads go on; and a second writer is still refused.
#[test]
fn a_no_op_index_on_a_full_disk_goes_through_and_the_lock_still_excludes() {
    let (_photos, _idx, index) = small_index();
    let reader = seer_index::Store::open(&index).unwrap();
    assert_eq!(reader.file_count().unwrap(), 12);

    let o = seer_limited(&index, 0, &["index", "--json"]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("index.lock") && err.contains("cannot record who holds the lock"),
        "{err}"
    );
    let summary: serde_json::Value = serde_json::from_str(text(&o.stdout).trim()).unwrap();
    assert_eq!(summary["skipped"], 12, "{summary}");
    let (_, approximate) = search(&index, "a fish");
    assert!(approximate);
    assert_eq!(graph_state(&index), "current");

    // Held by another writer: refused, full disk or not.
    let lock = seer_index::IndexLock::try_acquire(&index).unwrap();
    for args in [&["index"][..], &["index", "--rebuild-graph"][..]] {
        let o = seer_limited(&index, 0, args);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("is being updated by"), "{args:?}: {err}");
    }
    drop(lock);
    drop(reader);
}
