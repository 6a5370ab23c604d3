//! `seer import` and `seer export` as users run them: raw (unnormalised)
//! embeddings, refused shards that leave the index as it was, exports into a
//! folder holding an earlier export, float64 and big-endian `.npy` files, the
//! error for an integer one, and video frames carried by an export.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use seer_index::exchange::{self, ShardRow};
use seer_index::npy::{self, Dtype};
use seer_testkit::{model_fixture, tokenizer_file};

/// The fixture model makes 16-d vectors.
const DIM: usize = 16;

fn seer(index: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seer"))
        .args(args)
        .env("SEER_INDEX", index)
        .env("SEER_TOKENIZER", tokenizer_file())
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("SEER_MODEL")
        .output()
        .expect("run seer")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "seer failed: {}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn model() -> String {
    model_fixture("openclip-vit").display().to_string()
}

fn import(index: &Path, dir: &Path) -> Output {
    seer(
        index,
        &[
            "import",
            dir.to_str().unwrap(),
            "--model",
            &model(),
            "--json",
        ],
    )
}

fn status(index: &Path) -> serde_json::Value {
    serde_json::from_str(ok(seer(index, &["status", "--json"])).trim()).unwrap()
}

fn vectors(index: &Path) -> Option<u64> {
    status(index)["models"][0]["vectors"].as_u64()
}

/// A `DIM`-d vector with `head` first and zeros after.
fn vector(head: &[f32]) -> Vec<f32> {
    let mut v = head.to_vec();
    v.resize(DIM, 0.0);
    v
}

/// Writes shard `number` of the layout into `dir` (f32).
fn write_shard(dir: &Path, number: usize, rows: &[Vec<f32>], paths: &[&str]) {
    let meta: Vec<ShardRow> = paths
        .iter()
        .map(|p| ShardRow {
            key: p.to_string(),
            image_path: p.to_string(),
            caption: None,
        })
        .collect();
    let dim = rows.first().map_or(DIM, Vec::len);
    exchange::write_shard(dir, number, &meta, rows, dim, Dtype::F32, &[]).unwrap();
}

/// Unnormalised embeddings, as `seer embed --shards ... --raw` writes them: a
/// and b point almost the same way (cosine 0.96), c elsewhere.
fn raw_export() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_shard(
        dir.path(),
        0,
        &[
            vector(&[3.0, 4.0]),
            vector(&[4.0, 3.0]),
            vector(&[0.0, 0.0, 50.0, 120.0]),
        ],
        &["/photos/a.jpg", "/photos/b.jpg", "/photos/c.jpg"],
    );
    dir
}

#[test]
fn raw_embeddings_are_normalised_on_import() {
    let idx = tempfile::tempdir().unwrap();
    ok(import(idx.path(), raw_export().path()));

    // More like a: b scores its cosine, not a dot product clamped to 1.
    let out = ok(seer(
        idx.path(),
        &["search", "--like", "/photos/a.jpg", "--json", "-k", "2"],
    ));
    let hits: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(hits[0]["path"].as_str(), Some("/photos/b.jpg"), "{out}");
    let score = hits[0]["score"].as_f64().unwrap();
    assert!((score - 0.96).abs() < 2e-3, "{out}");
    assert!(hits[1]["score"].as_f64().unwrap().abs() < 2e-3, "{out}");

    // Nor are they duplicates of each other at 0.99.
    let dupes = ok(seer(
        idx.path(),
        &["dupes", "--threshold", "0.99", "--json"],
    ));
    assert_eq!(dupes.trim(), "", "no duplicate groups: {dupes}");
}

#[test]
fn a_zero_row_is_refused_by_file_and_row() {
    let dir = raw_export();
    write_shard(
        dir.path(),
        0,
        &[vector(&[1.0]), vector(&[]), vector(&[2.0])],
        &["/photos/a.jpg", "/photos/b.jpg", "/photos/c.jpg"],
    );
    let idx = tempfile::tempdir().unwrap();
    let o = import(idx.path(), dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("img_emb_0.npy") && err.contains("row 1") && err.contains("zero"),
        "{err}"
    );
}

#[test]
fn a_refused_later_shard_leaves_the_index_as_it_was() {
    let idx = tempfile::tempdir().unwrap();
    ok(import(idx.path(), raw_export().path()));
    let before = status(idx.path());
    assert_eq!(vectors(idx.path()), Some(3));

    // Shard 0 is good (two new photos); shard 1 is refused three ways.
    for damage in ["size", "nan", "count"] {
        let dir = tempfile::tempdir().unwrap();
        write_shard(
            dir.path(),
            0,
            &[vector(&[1.0]), vector(&[0.0, 1.0])],
            &["/photos/d.jpg", "/photos/e.jpg"],
        );
        let paths = ["/photos/f.jpg", "/photos/g.jpg"];
        let said = match damage {
            "size" => {
                write_shard(dir.path(), 1, &[vec![1.0; 32], vec![2.0; 32]], &paths);
                "32-d"
            }
            "nan" => {
                write_shard(
                    dir.path(),
                    1,
                    &[vector(&[1.0]), vector(&[f32::NAN])],
                    &paths,
                );
                "row 1 holds non-finite values"
            }
            _ => {
                let three = [vector(&[1.0]), vector(&[2.0]), vector(&[3.0])];
                write_shard(dir.path(), 1, &three, &["/x/1", "/x/2", "/x/3"]);
                // Metadata of two rows for three embeddings.
                let two = tempfile::tempdir().unwrap();
                write_shard(two.path(), 0, &three[..2], &paths);
                std::fs::copy(
                    two.path().join("metadata/metadata_0.parquet"),
                    dir.path().join("metadata/metadata_1.parquet"),
                )
                .unwrap();
                "2 paths but 3 embeddings"
            }
        };
        let o = import(idx.path(), dir.path());
        assert_eq!(o.status.code(), Some(2), "{damage}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(said) && err.contains("_1."), "{damage}: {err}");
        assert_eq!(status(idx.path()), before, "{damage}: the index changed");
    }
}

/// The layout's files under `dir`, relative, sorted.
fn layout(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = exchange::layout_files(dir)
        .unwrap()
        .iter()
        .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn export_into_an_earlier_export_is_refused_unless_overwrite() {
    let idx = tempfile::tempdir().unwrap();
    ok(import(idx.path(), raw_export().path()));

    // An earlier export of more photos, in two shards with errors files
    // (as `seer embed --shards` writes), and a file of the user's own.
    let out = tempfile::tempdir().unwrap();
    let old: Vec<Vec<f32>> = (1..=3).map(|i| vector(&[i as f32])).collect();
    write_shard(out.path(), 0, &old, &["/old/1", "/old/2", "/old/3"]);
    write_shard(out.path(), 1, &old, &["/old/4", "/old/5", "/old/6"]);
    std::fs::write(out.path().join("README.txt"), b"mine").unwrap();
    let earlier = layout(out.path());
    assert_eq!(earlier.len(), 6, "{earlier:?}");
    let out_arg = out.path().to_str().unwrap();

    let o = seer(idx.path(), &["export", "--out", out_arg]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(out_arg)
            && err.contains("img_emb/img_emb_0.npy")
            && err.contains("--overwrite"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert_eq!(layout(out.path()), earlier, "nothing touched");

    ok(seer(
        idx.path(),
        &["export", "--out", out_arg, "--overwrite"],
    ));
    assert_eq!(
        layout(out.path()),
        ["img_emb/img_emb_0.npy", "metadata/metadata_0.parquet"]
    );
    assert_eq!(
        std::fs::read(out.path().join("README.txt")).unwrap(),
        b"mine"
    );
    let idx2 = tempfile::tempdir().unwrap();
    let s: serde_json::Value =
        serde_json::from_str(ok(import(idx2.path(), out.path())).trim()).unwrap();
    assert_eq!(
        (s["rows"].as_u64(), s["shards"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(vectors(idx2.path()), Some(3));
}

#[test]
fn float64_and_big_endian_npy_import_and_integers_are_refused_naming_their_dtype() {
    let dir = raw_export();
    let npy_path: PathBuf = dir.path().join("img_emb/img_emb_0.npy");
    let (rows, cols, values) = npy::decode(&std::fs::read(&npy_path).unwrap()).unwrap();
    // The header numpy writes for the dtype `descr`, then `data`.
    let with_dtype = |descr: &[u8], data: Vec<u8>| {
        let mut bytes = npy::header(&[rows, cols], Dtype::F32, 0);
        let at = bytes.windows(5).position(|w| w == b"'<f4'").unwrap();
        bytes[at..at + 5].copy_from_slice(descr);
        bytes.extend(data);
        bytes
    };
    let big_f64 = values.iter().flat_map(|v| f64::from(*v).to_be_bytes());
    std::fs::write(&npy_path, with_dtype(b"'>f8'", big_f64.collect())).unwrap();
    let idx = tempfile::tempdir().unwrap();
    ok(import(idx.path(), dir.path()));
    let out = ok(seer(
        idx.path(),
        &["search", "--like", "/photos/a.jpg", "--json", "-k", "1"],
    ));
    let hit: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(hit["path"].as_str(), Some("/photos/b.jpg"), "{out}");
    // (3, 4) against (4, 3): 24 / 25, as from the f32 file (stored in f16).
    assert!(
        (hit["score"].as_f64().unwrap() - 0.96).abs() < 2e-3,
        "{out}"
    );

    std::fs::write(&npy_path, with_dtype(b"'<i4'", vec![0; rows * cols * 4])).unwrap();
    let idx = tempfile::tempdir().unwrap();
    let o = import(idx.path(), dir.path());
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "{}: unsupported dtype '<i4' (expected a float: f2, f4 or f8)",
            npy_path.display()
        )),
        "{err}"
    );
    assert!(!err.contains("Some("), "{err}");
}

/// A shard of more rows than one read of `seer import` holds (4 MiB: 65,536
/// rows of 16 f32): cut off in the middle it is refused by name and cause,
/// leaving the index as it was; whole, every row is imported.
#[test]
fn a_shard_larger_than_a_read_is_refused_when_cut_and_imported_whole() {
    let idx = tempfile::tempdir().unwrap();
    ok(import(idx.path(), raw_export().path()));
    let before = status(idx.path());

    let dir = tempfile::tempdir().unwrap();
    write_shard(dir.path(), 0, &[vector(&[1.0])], &["/photos/d.jpg"]);
    const ROWS: usize = 70_000;
    let rows: Vec<Vec<f32>> = (0..ROWS).map(|i| vector(&[1.0, i as f32])).collect();
    let names: Vec<String> = (0..ROWS).map(|i| format!("/big/{i}.jpg")).collect();
    let paths: Vec<&str> = names.iter().map(String::as_str).collect();
    write_shard(dir.path(), 1, &rows, &paths);
    let npy_path = dir.path().join("img_emb/img_emb_1.npy");
    let whole = std::fs::read(&npy_path).unwrap();
    let data = ROWS * DIM * 4;
    let kept = data / 2 + 3;
    std::fs::write(&npy_path, &whole[..whole.len() - data + kept]).unwrap();

    let o = import(idx.path(), dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    let said = format!(
        "{}: expected {data} bytes of data for shape ({ROWS}, {DIM}), found {kept}",
        npy_path.display()
    );
    assert!(err.contains(&said), "{err}");
    assert_eq!(status(idx.path()), before, "the index changed");

    std::fs::write(&npy_path, &whole).unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let m = model();
    let args = [
        "import",
        dir_arg,
        "--model",
        &m,
        "--json",
        "--ann-threshold",
        "1000000000",
    ];
    let s: serde_json::Value = serde_json::from_str(ok(seer(idx.path(), &args)).trim()).unwrap();
    assert_eq!(
        (s["rows"].as_u64(), s["shards"].as_u64()),
        (Some(ROWS as u64 + 1), Some(2))
    );
    assert_eq!(vectors(idx.path()), Some(ROWS as u64 + 4));
}

mod common;

/// Runs `seer ARGS` on `index` and parses its one JSON line.
fn json_of(index: &Path, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(ok(seer(index, args)).trim()).unwrap()
}

/// An export carries the videos' frames (`frames/`): imported, a video is
/// found at the same frame and time as in the index it came from, and the
/// next `seer index` keeps its frames instead of sampling it again. A frame
/// of a path the export's metadata does not name is refused by row, and the
/// index is left as it was.
#[test]
fn video_frames_travel_with_an_export() {
    common::video::need_ffmpeg();
    let media = tempfile::tempdir().unwrap();
    std::fs::copy(
        common::video::fixture("colors.mkv"),
        media.path().join("colors.mkv"),
    )
    .unwrap();
    let pictures = tempfile::tempdir().unwrap();
    let yellow = common::video::solid_png(pictures.path(), [255, 255, 0]);
    std::fs::copy(&yellow, media.path().join("yellow.png")).unwrap();
    let index = tempfile::tempdir().unwrap();
    let m = model();
    let folder = media.path().to_str().unwrap();
    ok(seer(index.path(), &["index", folder, "--model", &m]));

    let out = tempfile::tempdir().unwrap();
    let exported = json_of(
        index.path(),
        &["export", "--out", out.path().to_str().unwrap(), "--json"],
    );
    assert_eq!(
        (exported["rows"].as_u64(), exported["frames"].as_u64()),
        (Some(2), Some(3))
    );
    let copy = tempfile::tempdir().unwrap();
    let imported: serde_json::Value =
        serde_json::from_str(ok(import(copy.path(), out.path())).trim()).unwrap();
    assert_eq!(imported["frames"], 3, "{imported}");
    let counts = &status(copy.path())["models"][0];
    assert_eq!(
        (counts["videos"].as_u64(), counts["frames"].as_u64()),
        (Some(1), Some(3))
    );

    let search = |index: &Path| -> Vec<(String, Option<f64>)> {
        let text = ok(seer(
            index,
            &["search", "--image", yellow.to_str().unwrap(), "--json"],
        ));
        text.lines()
            .map(|l| {
                let hit: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    hit["path"].as_str().unwrap().to_string(),
                    hit["time"].as_f64(),
                )
            })
            .collect()
    };
    let found = search(copy.path());
    assert_eq!(found, search(index.path()));
    assert!(
        found
            .iter()
            .any(|(p, t)| p.ends_with("colors.mkv") && t.is_some()),
        "{found:?}"
    );
    let again = json_of(copy.path(), &["index", folder, "--model", &m, "--json"]);
    assert_eq!(
        (again["added"].as_u64(), again["video_frames"].as_u64()),
        (Some(0), Some(0)),
        "{again}"
    );

    // The frames of one export with another's files: their video is named by
    // no row of img_emb/metadata.
    std::fs::remove_file(media.path().join("colors.mkv")).unwrap();
    let photos_only = tempfile::tempdir().unwrap();
    let index2 = tempfile::tempdir().unwrap();
    ok(seer(index2.path(), &["index", folder, "--model", &m]));
    ok(seer(
        index2.path(),
        &["export", "--out", photos_only.path().to_str().unwrap()],
    ));
    for file in ["frames/frames_0.npy", "frames/frames_0.parquet"] {
        std::fs::create_dir_all(photos_only.path().join("frames")).unwrap();
        std::fs::copy(out.path().join(file), photos_only.path().join(file)).unwrap();
    }
    let refused = tempfile::tempdir().unwrap();
    let o = import(refused.path(), photos_only.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("frames_0.parquet: row 0: a frame of ")
            && stderr(&o).contains("colors.mkv, which no row of img_emb/metadata names"),
        "{}",
        stderr(&o)
    );
    // A refused first import leaves no index.
    assert!(!refused.path().join("index.sqlite").exists());
}
