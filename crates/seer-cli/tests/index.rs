//! `seer index`, `search` and `status` on real files: incremental runs, moves,
//! deletions, bad files, several models, and the errors users meet.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use seer_testkit::{model_fixture, shared_data, tokenizer_file};

fn seer(index: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seer"))
        .args(args)
        .env("SEER_INDEX", index)
        .env("SEER_TOKENIZER", tokenizer_file())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("run seer")
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "seer failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn model(name: &str) -> String {
    model_fixture(name).display().to_string()
}

/// `seer index FOLDER --model M --json`.
fn run_index(index: &Path, folder: &Path, model_name: &str) -> Output {
    seer(
        index,
        &[
            "index",
            folder.to_str().unwrap(),
            "--model",
            &model(model_name),
            "--json",
        ],
    )
}

fn index_json(index: &Path, folder: &Path, model_name: &str) -> serde_json::Value {
    let out = ok(run_index(index, folder, model_name));
    serde_json::from_str(out.trim()).unwrap()
}

/// `seer index --json` on a folder where some entries cannot be indexed: the
/// rest is indexed, the summary printed, and the exit code is 1.
fn index_json_with_failures(index: &Path, folder: &Path, model_name: &str) -> serde_json::Value {
    let o = run_index(index, folder, model_name);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap()
}

/// A photo folder of distinct small images (copies of shared samples).
fn photo_folder(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let samples = shared_data().join("imagenet-samples/images");
    let mut files: Vec<PathBuf> = std::fs::read_dir(samples)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for (i, f) in files.iter().take(n).enumerate() {
        let sub = dir.path().join(format!("album{}", i % 3));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::copy(f, sub.join(f.file_name().unwrap())).unwrap();
    }
    dir
}

#[test]
fn incremental_runs_skip_move_copy_remove_and_retry() {
    let photos = photo_folder(12);
    let idx = tempfile::tempdir().unwrap();
    let s = index_json(idx.path(), photos.path(), "openclip-vit");
    assert_eq!(
        (s["added"].as_u64(), s["failed"].as_u64()),
        (Some(12), Some(0)),
        "{s}"
    );

    // Nothing changed: everything skipped.
    let s = index_json(idx.path(), photos.path(), "openclip-vit");
    assert_eq!(
        (s["added"].as_u64(), s["skipped"].as_u64()),
        (Some(0), Some(12)),
        "{s}"
    );

    // Rename one, copy one, delete one, corrupt one (a new file that is no image).
    let album = photos.path().join("album0");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&album)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    std::fs::rename(&names[0], photos.path().join("album1/renamed.JPEG")).unwrap();
    std::fs::copy(&names[1], photos.path().join("album2/copy.JPEG")).unwrap();
    std::fs::remove_file(&names[2]).unwrap();
    std::fs::write(
        photos.path().join("album2/broken.jpg"),
        b"\xff\xd8\xff\xe0 not really a jpeg",
    )
    .unwrap();
    let o = seer(
        idx.path(),
        &[
            "index",
            photos.path().to_str().unwrap(),
            "--model",
            &model("openclip-vit"),
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "a file failed");
    let s: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
    assert_eq!(s["moved"].as_u64(), Some(1), "{s}");
    assert_eq!(s["copied"].as_u64(), Some(1), "{s}");
    assert_eq!(s["removed"].as_u64(), Some(1), "{s}");
    assert_eq!(s["failed"].as_u64(), Some(1), "{s}");
    assert_eq!(
        s["added"].as_u64(),
        Some(0),
        "moved and copied files must not be re-embedded: {s}"
    );

    // The failure is listed with its reason, and not retried while unchanged...
    let status: serde_json::Value =
        serde_json::from_str(ok(seer(idx.path(), &["status", "--json"])).trim()).unwrap();
    let failures = status["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1);
    assert!(failures[0]["path"]
        .as_str()
        .unwrap()
        .ends_with("broken.jpg"));
    let s = index_json(idx.path(), photos.path(), "openclip-vit");
    assert_eq!(
        (s["failed"].as_u64(), s["still_failing"].as_u64()),
        (Some(0), Some(1)),
        "{s}"
    );

    // ...and retried (and fixed) once it changes.
    std::fs::copy(&names[3], photos.path().join("album2/broken.jpg")).unwrap();
    let s = index_json(idx.path(), photos.path(), "openclip-vit");
    assert_eq!(s["failed"].as_u64(), Some(0), "{s}");
    assert_eq!(
        (s["added"].as_u64().unwrap() + s["copied"].as_u64().unwrap()),
        1,
        "{s}"
    );
    let status: serde_json::Value =
        serde_json::from_str(ok(seer(idx.path(), &["status", "--json"])).trim()).unwrap();
    assert!(status["failures"].as_array().unwrap().is_empty());
    assert_eq!(status["models"][0]["vectors"].as_u64(), Some(13));
}

#[test]
fn search_by_text_image_and_like_with_filters() {
    let photos = photo_folder(9);
    let idx = tempfile::tempdir().unwrap();
    index_json(idx.path(), photos.path(), "openclip-vit");

    let lines = ok(seer(
        idx.path(),
        &["search", "a goldfish", "-k", "5", "--json"],
    ));
    let hits: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(hits.len(), 5);
    assert!(
        hits.windows(2)
            .all(|w| w[0]["score"].as_f64() >= w[1]["score"].as_f64()),
        "not ranked"
    );

    // An indexed file is its own best match by example image; --like leaves it out.
    let first = hits[0]["path"].as_str().unwrap().to_string();
    let top: serde_json::Value = serde_json::from_str(
        ok(seer(
            idx.path(),
            &["search", "--image", &first, "-k", "1", "--json"],
        ))
        .lines()
        .next()
        .unwrap(),
    )
    .unwrap();
    assert_eq!(top["path"].as_str(), Some(first.as_str()));
    assert!(top["score"].as_f64().unwrap() > 0.999, "{top}");
    let like = ok(seer(
        idx.path(),
        &["search", "--like", &first, "-k", "1", "--json"],
    ));
    let top: serde_json::Value = serde_json::from_str(like.lines().next().unwrap()).unwrap();
    assert_ne!(top["path"].as_str(), Some(first.as_str()));

    // Path filter and minimum score.
    let lines = ok(seer(
        idx.path(),
        &[
            "search", "a fish", "-k", "50", "--path", "album1/*", "--json",
        ],
    ));
    assert_eq!(lines.lines().count(), 3);
    assert!(lines.lines().all(|l| l.contains("/album1/")));
    let lines = ok(seer(
        idx.path(),
        &["search", "a fish", "--min-score", "1", "--json"],
    ));
    assert_eq!(lines.lines().count(), 0);

    // Combinations: text plus image minus text still returns ranked results.
    let lines = ok(seer(
        idx.path(),
        &[
            "search",
            "a fish",
            "--image",
            &first,
            "--subtract",
            "a dog",
            "-k",
            "3",
            "--json",
        ],
    ));
    assert_eq!(lines.lines().count(), 3);
}

#[test]
fn several_models_in_one_index_and_mismatches_are_clear_errors() {
    let photos = photo_folder(4);
    let idx = tempfile::tempdir().unwrap();
    index_json(idx.path(), photos.path(), "openclip-vit");
    // A second model embeds the same files again (its vectors are separate).
    let s = index_json(idx.path(), photos.path(), "openclip-rn");
    assert_eq!(s["added"].as_u64(), Some(4), "{s}");

    let o = seer(idx.path(), &["search", "a fish"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("several models"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    let o = seer(idx.path(), &["search", "a fish", "--model", "/not/a/model"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        err.contains("no vectors for model") && err.contains("openclip-rn"),
        "{err}"
    );

    let out = ok(seer(
        idx.path(),
        &[
            "search",
            "a fish",
            "--model",
            &model("openclip-rn"),
            "-k",
            "2",
            "--json",
        ],
    ));
    assert_eq!(out.lines().count(), 2);
}

#[test]
fn status_and_search_on_a_missing_index_explain_themselves() {
    let idx = tempfile::tempdir().unwrap();
    let o = seer(&idx.path().join("nothing"), &["search", "x"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("seer index"));
    let o = seer(&idx.path().join("nothing"), &["index"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing to index"));
}

#[test]
fn export_then_import_round_trips_and_pyarrow_output_imports() {
    let photos = photo_folder(6);
    let idx = tempfile::tempdir().unwrap();
    index_json(idx.path(), photos.path(), "openclip-vit");
    let out = tempfile::tempdir().unwrap();
    ok(seer(
        idx.path(),
        &[
            "export",
            "--format",
            "npy",
            "--out",
            out.path().to_str().unwrap(),
        ],
    ));
    assert!(out.path().join("img_emb/img_emb_0.npy").is_file());
    assert!(out.path().join("metadata/metadata_0.parquet").is_file());

    // Import into a fresh index: the same search gives the same ranking and scores.
    let idx2 = tempfile::tempdir().unwrap();
    let s: serde_json::Value = serde_json::from_str(
        ok(seer(
            idx2.path(),
            &[
                "import",
                out.path().to_str().unwrap(),
                "--model",
                &model("openclip-vit"),
                "--encoding",
                "f32",
                "--json",
            ],
        ))
        .trim(),
    )
    .unwrap();
    assert_eq!(s["rows"].as_u64(), Some(6));
    let a = ok(seer(idx.path(), &["search", "a fish", "--json"]));
    let b = ok(seer(idx2.path(), &["search", "a fish", "--json"]));
    let parse = |s: &str| -> Vec<(String, f64)> {
        s.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|v| {
                (
                    v["path"].as_str().unwrap().to_string(),
                    v["score"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let (a, b) = (parse(&a), parse(&b));
    assert_eq!(
        a.iter().map(|x| &x.0).collect::<Vec<_>>(),
        b.iter().map(|x| &x.0).collect::<Vec<_>>()
    );
    assert!(
        a.iter().zip(&b).all(|(x, y)| (x.1 - y.1).abs() < 1e-3),
        "{a:?} vs {b:?}"
    );

    // Imported files that exist on disk count as unchanged for the next index run.
    let s = index_json(idx2.path(), photos.path(), "openclip-vit");
    assert_eq!(
        (s["added"].as_u64(), s["skipped"].as_u64()),
        (Some(0), Some(6)),
        "{s}"
    );

    // Files written by numpy + pyarrow (two shards, f16, snappy) import too
    // (16-d: as the fixture models make).
    let fixture = seer_testkit::repo_root().join("fixtures/exchange");
    let idx3 = tempfile::tempdir().unwrap();
    let s: serde_json::Value = serde_json::from_str(
        ok(seer(
            idx3.path(),
            &[
                "import",
                fixture.to_str().unwrap(),
                "--model",
                &model("openclip-rn"),
                "--json",
            ],
        ))
        .trim(),
    )
    .unwrap();
    assert_eq!(
        (s["rows"].as_u64(), s["shards"].as_u64(), s["dim"].as_u64()),
        (Some(5), Some(2), Some(16))
    );
    let status: serde_json::Value =
        serde_json::from_str(ok(seer(idx3.path(), &["status", "--json"])).trim()).unwrap();
    assert_eq!(
        status["models"][0]["name"].as_str(),
        model_fixture("openclip-rn")
            .canonicalize()
            .unwrap()
            .to_str()
    );
    assert_eq!(status["models"][0]["vectors"].as_u64(), Some(5));
}

#[test]
fn damaged_exchange_files_are_errors_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = seer_testkit::repo_root().join("fixtures/exchange");
    for sub in ["img_emb", "metadata"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for e in std::fs::read_dir(src.join(sub)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dir.path().join(sub).join(e.file_name())).unwrap();
        }
    }
    // Shard 1's embeddings are truncated: it is refused by name, and the
    // import is all or nothing, so shard 0 is not kept either.
    let npy = dir.path().join("img_emb/img_emb_1.npy");
    let bytes = std::fs::read(&npy).unwrap();
    std::fs::write(&npy, &bytes[..bytes.len() - 3]).unwrap();
    let idx = tempfile::tempdir().unwrap();
    let o = seer(
        idx.path(),
        &[
            "import",
            dir.path().to_str().unwrap(),
            "--model",
            &model("openclip-vit"),
        ],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("img_emb_1.npy"));
    // All or nothing: shard 0 is not kept, and the refused first import
    // leaves no (empty) index.
    assert!(!idx.path().join("index.sqlite").exists());

    std::fs::write(
        dir.path().join("metadata/metadata_0.parquet"),
        b"PAR1 garbage",
    )
    .unwrap();
    let o = seer(
        idx.path(),
        &[
            "import",
            dir.path().to_str().unwrap(),
            "--model",
            &model("openclip-vit"),
        ],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("metadata_0.parquet"));
}

#[test]
fn dupes_finds_copies_with_a_measured_threshold() {
    let photos = photo_folder(10);
    // Two exact copies and a re-saved, altered copy (PNG of a downscaled image).
    let album = photos.path().join("album0");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&album)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    std::fs::copy(&names[0], photos.path().join("album1/copy-a.JPEG")).unwrap();
    std::fs::copy(&names[0], photos.path().join("album2/copy-b.JPEG")).unwrap();
    let idx = tempfile::tempdir().unwrap();
    index_json(idx.path(), photos.path(), "openclip-vit");

    // No threshold given: it is measured, reported, remembered.
    let o = seer(idx.path(), &["dupes", "--json", "--sample", "8"]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{err}");
    assert!(err.contains("catches 99%"), "{err}");
    let groups: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let copies = groups
        .iter()
        .find(|g| {
            g["paths"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p.as_str().unwrap().ends_with("copy-a.JPEG"))
        })
        .expect("the copies form a group");
    let paths: Vec<&str> = copies["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        paths.iter().any(|p| p.ends_with("copy-b.JPEG"))
            && paths.contains(&names[0].to_str().unwrap()),
        "{paths:?}"
    );
    let o = seer(idx.path(), &["dupes"]);
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("catches 99%"),
        "the measured threshold is reused"
    );

    // An explicit threshold of 1.0 keeps only exact copies; a bad one is refused.
    let out = ok(seer(
        idx.path(),
        &["dupes", "--threshold", "0.9999", "--json"],
    ));
    assert_eq!(out.lines().count(), 1);
    assert!(!seer(idx.path(), &["dupes", "--threshold", "3"])
        .status
        .success());
}

#[test]
fn approximate_index_is_kept_in_step_with_the_database() {
    let photos = photo_folder(40);
    let idx = tempfile::tempdir().unwrap();
    let run = |args: &[&str], ann: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_seer"));
        c.args(args)
            .env("SEER_INDEX", idx.path())
            .env("SEER_TOKENIZER", tokenizer_file())
            .env("HF_HUB_OFFLINE", "1");
        if ann {
            c.env("SEER_ANN_THRESHOLD", "10");
        }
        ok(c.output().unwrap())
    };
    let folder = photos.path().to_str().unwrap().to_string();
    let m = model("openclip-vit");
    run(&["index", &folder, "--model", &m], true);
    let graphs: Vec<_> = std::fs::read_dir(idx.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".hnsw"))
        .collect();
    assert_eq!(graphs.len(), 1, "no graph written: {graphs:?}");

    // The search really goes through the graph (no silent fallback to exact)...
    let o = Command::new(env!("CARGO_BIN_EXE_seer"))
        .args(["search", "a fish"])
        .env("SEER_INDEX", idx.path())
        .env("SEER_TOKENIZER", tokenizer_file())
        .env("SEER_ANN_THRESHOLD", "10")
        .env("SEER_LOG", "debug")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("with the approximate index"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // ...and on 40 vectors finds exactly what exact search finds.
    let approx = run(&["search", "a fish", "-k", "10", "--json"], true);
    let exact = run(&["search", "a fish", "-k", "10", "--json"], false);
    let paths = |s: &str| {
        s.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["path"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(paths(&approx), paths(&exact));

    // Delete the best match and re-index: the graph never returns it again.
    let best = paths(&exact)[0].clone();
    std::fs::remove_file(&best).unwrap();
    run(&["index", &folder, "--model", &m], true);
    let approx = run(&["search", "a fish", "-k", "39", "--json"], true);
    assert_eq!(approx.lines().count(), 39);
    assert!(!paths(&approx).contains(&best));
}

fn seer_os(index: &Path, args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seer"))
        .args(args)
        .env("SEER_INDEX", index)
        .env("SEER_TOKENIZER", tokenizer_file())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("run seer")
}

fn status_json(index: &Path) -> serde_json::Value {
    serde_json::from_str(ok(seer(index, &["status", "--json"])).trim()).unwrap()
}

fn search_json(index: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["search"];
    all.extend_from_slice(args);
    all.push("--json");
    ok(seer(index, &all))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[cfg(unix)]
#[test]
fn names_that_are_not_utf8_or_hold_newlines_are_indexed_found_and_shown_escaped() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let photos = photo_folder(3);
    let odd = photos.path().join(OsStr::from_bytes(b"caf\xe9.jpg"));
    std::fs::copy(shared_data().join("smoke/skimage/rocket.jpg"), &odd).unwrap();
    std::fs::copy(
        shared_data().join("smoke/skimage/chelsea.png"),
        photos.path().join("two\nlines.png"),
    )
    .unwrap();
    let idx = tempfile::tempdir().unwrap();
    let s = index_json(idx.path(), photos.path(), "openclip-vit");
    assert_eq!(
        (s["added"].as_u64(), s["failed"].as_u64()),
        (Some(5), Some(0)),
        "{s}"
    );
    let status = status_json(idx.path());
    assert_eq!(status["failures"], serde_json::json!([]), "{status}");

    // Found again by its real name and by the escaped name seer shows.
    let folder = photos.path().canonicalize().unwrap();
    let shown = format!("{}/caf\\xe9.jpg", folder.display());
    let o = seer_os(
        idx.path(),
        &[
            "search".as_ref(),
            "--like".as_ref(),
            odd.as_os_str(),
            "-k".as_ref(),
            "1".as_ref(),
            "--json".as_ref(),
        ],
    );
    // The photo itself is left out of its own results; the others come.
    let hits: Vec<serde_json::Value> = ok(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_ne!(hits[0]["path"].as_str(), Some(shown.as_str()), "{hits:?}");
    let by_shown = search_json(idx.path(), &["--like", &shown, "-k", "1"]);
    assert_eq!(by_shown, hits, "the shown name finds the same photo");

    // JSON names it escaped, and plain output is one line per hit with the
    // newline in a name escaped.
    let all = search_json(idx.path(), &["a photo", "-k", "5"]);
    assert!(
        all.iter()
            .any(|h| h["path"].as_str() == Some(shown.as_str())),
        "{all:?}"
    );
    let out = ok(seer(idx.path(), &["search", "a photo", "-k", "5"]));
    assert_eq!(out.lines().count(), 5, "{out}");
    assert!(out.contains("two\\nlines.png"), "{out}");
    assert!(out.contains("caf\\xe9.jpg"), "{out}");

    // Export and import keep the names exactly: re-indexing the folder embeds nothing.
    let exported = tempfile::tempdir().unwrap();
    let out_dir = exported.path().to_str().unwrap();
    ok(seer(
        idx.path(),
        &["export", "--format", "npy", "--out", out_dir],
    ));
    let idx2 = tempfile::tempdir().unwrap();
    ok(seer(
        idx2.path(),
        &["import", out_dir, "--model", &model("openclip-vit")],
    ));
    let s = index_json(idx2.path(), photos.path(), "openclip-vit");
    assert_eq!(
        (s["added"].as_u64(), s["skipped"].as_u64()),
        (Some(0), Some(5)),
        "{s}"
    );
}

/// A folder whose path is longer than the system allows (PATH_MAX), so it cannot
/// be read. Built by renaming from the deepest folder up, as no single call may
/// name a path that long. (Tests run as root, for whom `chmod 000` does not make
/// a folder unreadable; this is the unreadable folder root meets too.)
fn over_long_folder(parent: &Path) -> PathBuf {
    let levels = 20;
    let mut short = parent.join("deep");
    let mut chain = Vec::new();
    for i in 0..levels {
        short = short.join(i.to_string());
        chain.push(short.clone());
    }
    std::fs::create_dir_all(&short).unwrap();
    for (i, dir) in chain.iter().enumerate().rev() {
        let long = format!("{}{i}", "d".repeat(240));
        std::fs::rename(dir, dir.with_file_name(long)).unwrap();
    }
    parent.join("deep")
}

#[cfg(unix)]
#[test]
fn status_lists_every_walk_error_with_its_reason() {
    use std::os::unix::fs::symlink;
    let photos = photo_folder(2);
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.jpg");
    std::fs::copy(shared_data().join("smoke/skimage/rocket.jpg"), &secret).unwrap();
    symlink(&secret, photos.path().join("escape.jpg")).unwrap();
    symlink(outside.path(), photos.path().join("escape-dir")).unwrap();
    symlink(
        photos.path().join("nowhere.jpg"),
        photos.path().join("dangling.jpg"),
    )
    .unwrap();
    symlink(photos.path(), photos.path().join("album0/loop")).unwrap();
    over_long_folder(photos.path());

    let idx = tempfile::tempdir().unwrap();
    let s = index_json_with_failures(idx.path(), photos.path(), "openclip-vit");
    assert_eq!(s["added"].as_u64(), Some(2), "only the real photos: {s}");

    let expected = [
        ("escape.jpg", "symlink points outside the indexed folders"),
        ("escape-dir", "symlink points outside the indexed folders"),
        ("dangling.jpg", "broken symlink"),
        ("loop", "symlink loop"),
        ("d", "File name too long"),
    ];
    let status = status_json(idx.path());
    let failures = status["failures"].as_array().unwrap();
    assert_eq!(failures.len(), expected.len(), "{status}");
    for (name, reason) in expected {
        assert!(
            failures.iter().any(|f| {
                let path = f["path"].as_str().unwrap();
                let last = path.rsplit('/').next().unwrap();
                (last == name || (name == "d" && last.starts_with("dddd")))
                    && f["error"].as_str().unwrap().contains(reason)
            }),
            "{name}: {reason} not listed in {status}"
        );
    }
    // The same in plain output (every failure, one line each).
    let text = ok(seer(idx.path(), &["status"]));
    assert!(
        text.contains(&format!("failures: {}", expected.len())),
        "{text}"
    );
    for (name, reason) in &expected[..4] {
        assert!(
            text.lines()
                .any(|l| l.contains(&format!("/{name}: ")) && l.contains(reason)),
            "{name} not listed: {text}"
        );
    }

    // Nothing behind the escaping links became searchable.
    let hits = search_json(idx.path(), &["a rocket", "-k", "50"]);
    assert_eq!(hits.len(), 2, "{hits:?}");
}

#[cfg(unix)]
#[test]
fn a_file_replaced_by_a_symlink_out_of_the_folder_leaves_the_index() {
    let photos = photo_folder(3);
    let idx = tempfile::tempdir().unwrap();
    index_json(idx.path(), photos.path(), "openclip-vit");
    let victim = std::fs::read_dir(photos.path().join("album0"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .canonicalize()
        .unwrap();
    let victim_str = victim.to_str().unwrap().to_string();
    // Indexed: "more like" it is a query the index can answer.
    assert_eq!(
        search_json(idx.path(), &["--like", &victim_str, "-k", "1"]).len(),
        1
    );

    // The same content (same size and mtime, as a rename keeps them), now outside,
    // reached through a symlink where the file was.
    let outside = tempfile::tempdir().unwrap();
    let moved = outside.path().join("moved.JPEG");
    std::fs::rename(&victim, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &victim).unwrap();
    let s = index_json_with_failures(idx.path(), photos.path(), "openclip-vit");
    assert_eq!(s["removed"].as_u64(), Some(1), "{s}");

    let o = seer(idx.path(), &["search", "--like", &victim_str]);
    assert!(!o.status.success(), "its vector is still in the index");
    let hits = search_json(idx.path(), &["a fish", "-k", "50"]);
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert!(hits.iter().all(|h| h["path"] != victim_str.as_str()));
    let status = status_json(idx.path());
    assert_eq!(
        status["failures"][0]["path"].as_str(),
        Some(victim_str.as_str())
    );
    assert_eq!(
        status["failures"][0]["error"].as_str(),
        Some("symlink points outside the indexed folders"),
        "{status}"
    );
}

/// An image-only model (the DINOv2 fixture) next to CLIP in one index: it
/// indexes and serves `--like` and `--image`; text search, classify and
/// `embed --text` say that text needs a text tower.
#[test]
fn an_image_only_model_serves_image_queries_and_refuses_text() {
    let photos = photo_folder(6);
    let idx = tempfile::tempdir().unwrap();
    let dino = seer_testkit::repo_root()
        .join("fixtures/families/dinov2-tiny")
        .display()
        .to_string();
    // One run indexes with both models, a text model and an image-only one.
    let clip = model("openclip-vit");
    ok(seer(
        idx.path(),
        &[
            "index",
            photos.path().to_str().unwrap(),
            "--model",
            &clip,
            "--model",
            &dino,
        ],
    ));
    let models = status_json(idx.path())["models"].clone();
    let models = models.as_array().expect("status lists the models");
    assert_eq!(models.len(), 2, "{models:?}");
    assert!(
        models.iter().all(|m| m["vectors"].as_u64() == Some(6)),
        "{models:?}"
    );
    let mut files: Vec<PathBuf> = walk(photos.path());
    files.sort();
    let like = files[0].to_str().unwrap();
    let hits = ok(seer(
        idx.path(),
        &["search", "--model", &dino, "--like", like, "--json"],
    ));
    assert_eq!(hits.lines().count(), 5, "{hits}");
    assert!(!hits.contains(like));
    let by_image = ok(seer(
        idx.path(),
        &["search", "--model", &dino, "--image", like, "-k", "1"],
    ));
    assert!(by_image.contains(like), "{by_image}");

    for args in [
        vec!["search", "--model", &dino, "a dog"],
        vec!["classify", like, "--model", &dino, "--labels", "dog,cat"],
        vec!["embed", "--model", &dino, "--text", "a dog"],
    ] {
        let o = seer(idx.path(), &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("embeds images only") && err.contains("text tower"),
            "{args:?}: {err}"
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
