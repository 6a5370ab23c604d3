//! `seer embed --shards`: webdataset shards to the clip-retrieval layout, split
//! across workers (flags or Slurm / Kubernetes variables), resumable, with
//! broken samples accounted for; `seer import` of the result, then search.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::server::seer;
use seer_index::npy;
use seer_testkit::{model_fixture, shared_data};
use serde_json::Value;

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = seer();
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run seer")
}

fn json_lines(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn model() -> String {
    model_fixture("openclip-vit").display().to_string()
}

/// The ImageNet sample JPEGs, sorted.
fn photos() -> Vec<PathBuf> {
    let mut p: Vec<PathBuf> = std::fs::read_dir(shared_data().join("imagenet-samples/images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    p.sort();
    p
}

fn add(t: &mut tar::Builder<std::fs::File>, name: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    t.append_data(&mut h, name, data).unwrap();
}

/// Four shards in `dir`: two clean samples each from the photos (with
/// captions); shard 1 adds a truncated JPEG and a sample without an image;
/// shard 3 is shard 2 cut inside its second sample's image. Returns the
/// photo each good key holds.
fn make_shards(dir: &Path) -> Vec<(String, PathBuf)> {
    let photos = photos();
    let mut keys = Vec::new();
    for n in 0..3 {
        let mut t =
            tar::Builder::new(std::fs::File::create(dir.join(format!("{n:05}.tar"))).unwrap());
        for i in 0..2 {
            let key = format!("{n:05}{i:04}");
            let photo = &photos[n * 2 + i];
            add(
                &mut t,
                &format!("{key}.jpg"),
                &std::fs::read(photo).unwrap(),
            );
            add(
                &mut t,
                &format!("{key}.txt"),
                format!("caption {key}").as_bytes(),
            );
            keys.push((key, photo.clone()));
        }
        if n == 1 {
            let bytes = std::fs::read(&photos[0]).unwrap();
            add(&mut t, "broken.jpg", &bytes[..500]);
            add(&mut t, "textonly.txt", b"no image here");
        }
        t.finish().unwrap();
    }
    // Cut 100 bytes into the second sample's image: header, first image
    // (padded to 512-byte blocks), caption header and block, second header.
    let whole = std::fs::read(dir.join("00002.tar")).unwrap();
    let first_image = std::fs::metadata(&photos[4]).unwrap().len() as usize;
    let cut = 512 + first_image.next_multiple_of(512) + 2 * 512 + 512 + 100;
    std::fs::write(dir.join("00003.tar"), &whole[..cut]).unwrap();
    keys
}

fn spec(dir: &Path) -> String {
    format!("{}/{{00000..00003}}.tar", dir.display())
}

fn embed_shards(input: &Path, out: &Path, extra: &[&str], env: &[(&str, &str)]) -> Vec<Value> {
    let (spec, out, model) = (spec(input), out.display().to_string(), model());
    let mut args = vec![
        "embed", "--model", &model, "--shards", &spec, "--out", &out, "--json",
    ];
    args.extend(extra);
    let o = run(&args, env);
    assert!(o.status.success(), "{}", stderr(&o));
    json_lines(&o)
}

fn load_npy(path: &Path) -> (usize, usize, Vec<f32>) {
    npy::decode(&std::fs::read(path).unwrap()).unwrap()
}

/// One string column of a parquet file.
fn column(path: &Path, name: &str) -> Vec<Option<String>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    reader
        .get_row_iter(None)
        .unwrap()
        .map(|row| {
            let row = row.unwrap();
            let (_, field) = row
                .get_column_iter()
                .find(|(n, _)| n.as_str() == name)
                .unwrap_or_else(|| panic!("{}: no column {name}", path.display()));
            match field {
                Field::Str(s) => Some(s.clone()),
                Field::Null => None,
                other => panic!("{name}: {other:?}"),
            }
        })
        .collect()
}

#[test]
fn one_worker_writes_every_shard_and_accounts_for_every_sample() {
    let input = tempfile::tempdir().unwrap();
    let good = make_shards(input.path());
    let out = tempfile::tempdir().unwrap();
    let lines = embed_shards(input.path(), out.path(), &[], &[]);
    let counts: Vec<(u64, u64)> = lines
        .iter()
        .map(|l| {
            assert_eq!(l["status"], "written");
            (l["rows"].as_u64().unwrap(), l["errors"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(counts, [(2, 0), (2, 2), (2, 0), (1, 2)]);

    // The embeddings are bit for bit what `seer embed --image` gives the same
    // files; metadata rows are aligned with them.
    let mut keys = Vec::new();
    for n in 0..4 {
        let (rows, dim, values) = load_npy(&out.path().join(format!("img_emb/img_emb_{n}.npy")));
        let meta = out.path().join(format!("metadata/metadata_{n}.parquet"));
        let shard_keys = column(&meta, "key");
        assert_eq!(shard_keys.len(), rows);
        for (r, key) in shard_keys.iter().enumerate() {
            let key = key.clone().unwrap();
            let photo = &good.iter().find(|(k, _)| *k == key).unwrap().1;
            let (m, photo_s) = (model(), photo.display().to_string());
            let o = run(
                &["embed", "--model", &m, "--image", &photo_s, "--json"],
                &[],
            );
            let want: Vec<f32> = json_lines(&o)[0]["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            let got = &values[r * dim..(r + 1) * dim];
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "shard {n} row {r} ({key}) differs from seer embed --image"
            );
            keys.push(key);
        }
        let captions = column(&meta, "caption");
        assert!(captions
            .iter()
            .zip(&shard_keys)
            .all(|(c, k)| { c.as_deref() == Some(&format!("caption {}", k.as_deref().unwrap())) }));
        let paths = column(&meta, "image_path");
        assert!(paths[0].as_deref().unwrap().ends_with(&format!(
            "{n:05}.tar/{}.jpg",
            shard_keys[0].as_deref().unwrap()
        )));
    }
    // Every key once: shard 3 repeats shard 2's first sample under its key.
    let errors1 = out.path().join("errors/errors_1.parquet");
    assert_eq!(
        column(&errors1, "key"),
        [Some("broken".into()), Some("textonly".into())]
    );
    let causes = column(&errors1, "error");
    assert!(
        causes[0].as_deref().unwrap().contains("truncated"),
        "{causes:?}"
    );
    assert!(
        causes[1].as_deref().unwrap().contains("no image"),
        "{causes:?}"
    );
    // The truncated shard: its cut sample fails to decode, then the shard
    // itself is reported (with no key).
    let errors3 = out.path().join("errors/errors_3.parquet");
    let keys3 = column(&errors3, "key");
    assert_eq!(keys3, [Some("000020001".into()), Some(String::new())]);
    let causes = column(&errors3, "error");
    let shard_cause = causes[1].as_deref().unwrap();
    assert!(shard_cause.contains("corrupt or truncated"), "{causes:?}");
    assert_eq!(keys.len(), 7);
}

#[test]
fn workers_split_the_shards_and_match_one_worker_byte_for_byte() {
    let input = tempfile::tempdir().unwrap();
    make_shards(input.path());
    let single = tempfile::tempdir().unwrap();
    embed_shards(input.path(), single.path(), &[], &[]);
    let split = tempfile::tempdir().unwrap();
    // Worker 0 by flag, worker 1 as Slurm array task 8 of an array from 7.
    let first = embed_shards(
        input.path(),
        split.path(),
        &["--shard-index", "0", "--num-shards", "2"],
        &[],
    );
    let slurm = [
        ("SLURM_ARRAY_TASK_ID", "8"),
        ("SLURM_ARRAY_TASK_MIN", "7"),
        ("SLURM_ARRAY_TASK_COUNT", "2"),
    ];
    let second = embed_shards(input.path(), split.path(), &[], &slurm);
    let numbers = |lines: &[Value]| -> Vec<u64> {
        lines
            .iter()
            .map(|l| l["number"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(numbers(&first), [0, 2]);
    assert_eq!(numbers(&second), [1, 3]);
    for n in 0..4 {
        for file in [
            format!("img_emb/img_emb_{n}.npy"),
            format!("metadata/metadata_{n}.parquet"),
        ] {
            let a = std::fs::read(single.path().join(&file)).unwrap();
            let b = std::fs::read(split.path().join(&file)).unwrap();
            assert!(a == b, "{file} differs between one worker and two");
        }
    }
    // A Kubernetes Indexed Job's index needs the count.
    let (s, o, m) = (
        spec(input.path()),
        split.path().display().to_string(),
        model(),
    );
    let r = run(
        &["embed", "--model", &m, "--shards", &s, "--out", &o],
        &[("JOB_COMPLETION_INDEX", "1")],
    );
    assert!(!r.status.success());
    assert!(stderr(&r).contains("--num-shards"), "{}", stderr(&r));
    let r = run(
        &[
            "embed",
            "--model",
            &m,
            "--shards",
            &s,
            "--out",
            &o,
            "--num-shards",
            "2",
            "--json",
        ],
        &[("JOB_COMPLETION_INDEX", "1")],
    );
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(numbers(&json_lines(&r)), [1, 3]);
}

#[test]
fn a_rerun_skips_finished_shards_and_redoes_unfinished_ones() {
    let input = tempfile::tempdir().unwrap();
    make_shards(input.path());
    let out = tempfile::tempdir().unwrap();
    embed_shards(input.path(), out.path(), &[], &[]);
    let before = std::fs::read(out.path().join("img_emb/img_emb_2.npy")).unwrap();
    // As if killed after writing shard 2's embeddings: no metadata yet, and a
    // stray temporary file.
    std::fs::remove_file(out.path().join("metadata/metadata_2.parquet")).unwrap();
    std::fs::write(out.path().join("img_emb/.img_emb_2.npy.tmp"), b"partial").unwrap();
    std::fs::write(out.path().join("img_emb/img_emb_2.npy"), b"garbage").unwrap();
    let lines = embed_shards(input.path(), out.path(), &[], &[]);
    let status: Vec<&str> = lines
        .iter()
        .map(|l| l["status"].as_str().unwrap())
        .collect();
    // Finished shards are reported first, then those written now.
    assert_eq!(status, ["skipped", "skipped", "skipped", "written"]);
    assert_eq!(lines[3]["number"], 2);
    assert_eq!(
        std::fs::read(out.path().join("img_emb/img_emb_2.npy")).unwrap(),
        before
    );
    // Nothing left to do: the model is not even needed.
    let (s, o) = (spec(input.path()), out.path().display().to_string());
    let r = run(
        &[
            "embed",
            "--model",
            "/no/such/model",
            "--shards",
            &s,
            "--out",
            &o,
        ],
        &[],
    );
    assert!(r.status.success(), "{}", stderr(&r));
}

#[test]
fn f16_output_and_import_then_search() {
    let input = tempfile::tempdir().unwrap();
    make_shards(input.path());
    let out = tempfile::tempdir().unwrap();
    embed_shards(input.path(), out.path(), &["--dtype", "f16"], &[]);
    let header = std::fs::read(out.path().join("img_emb/img_emb_0.npy")).unwrap();
    assert!(String::from_utf8_lossy(&header[..128]).contains("<f2"));
    let index = tempfile::tempdir().unwrap();
    let (m, o, i) = (
        model(),
        out.path().display().to_string(),
        index.path().display().to_string(),
    );
    let graph = |i: &str| {
        let r = run(&["status", "--index", i, "--json"], &[]);
        assert!(r.status.success(), "{}", stderr(&r));
        json_lines(&r)[0]["models"][0]["graph"].clone()
    };
    let r = run(&["import", &o, "--model", &m, "--index", &i, "--json"], &[]);
    assert!(r.status.success(), "{}", stderr(&r));
    let summary = &json_lines(&r)[0];
    assert_eq!(summary["rows"], 7);
    assert_eq!(summary["shards"], 4);
    // 7 vectors are below the graph threshold: exact search, no graph.
    assert_eq!(graph(&i), "none");
    // With a threshold it reaches, the import builds the graph, and status says so.
    let small = tempfile::tempdir().unwrap();
    let s = small.path().display().to_string();
    let r = run(
        &[
            "import",
            &o,
            "--model",
            &m,
            "--index",
            &s,
            "--ann-threshold",
            "5",
        ],
        &[],
    );
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(graph(&s), "current");
    // `seer index --rebuild-graph` builds the graph again from the stored
    // vectors even where an update would see nothing to do: a damaged graph
    // file whose generation is current comes back whole.
    let hnsw = std::fs::read_dir(small.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "hnsw"))
        .expect("a graph file beside the database");
    std::fs::write(&hnsw, b"damaged").unwrap();
    let rebuild = |i: &str, extra: &[&str]| {
        let mut a = vec!["index", "--rebuild-graph", "--index", i, "--json"];
        a.extend_from_slice(extra);
        run(&a, &[])
    };
    // $SEER_MODEL, set for the other commands, is no conflict.
    let r = run(
        &[
            "index",
            "--rebuild-graph",
            "--index",
            &s,
            "--json",
            "--ann-threshold",
            "5",
        ],
        &[("SEER_MODEL", &m)],
    );
    assert!(r.status.success(), "{}", stderr(&r));
    let line = &json_lines(&r)[0];
    assert_eq!(
        (&line["vectors"], &line["graph"]),
        (&7.into(), &true.into())
    );
    assert!(std::fs::metadata(&hnsw).unwrap().len() > 7);
    assert_eq!(graph(&s), "current");
    // Below the threshold there is no graph to build; with folders it is refused.
    let r = rebuild(&i, &[]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(json_lines(&r)[0]["graph"], false);
    assert_eq!(graph(&i), "none");
    assert!(!rebuild(&s, &[&o]).status.success());
    // Where there is no index it says so and makes none.
    let none = tempfile::tempdir().unwrap();
    let missing = none.path().join("index");
    let r = rebuild(missing.to_str().unwrap(), &[]);
    assert!(!r.status.success() && stderr(&r).contains("no index here"));
    assert!(!missing.exists());
    let r = run(
        &["search", "a photo", "--index", &i, "--json", "-k", "3"],
        &[],
    );
    assert!(r.status.success(), "{}", stderr(&r));
    let hits = json_lines(&r);
    assert_eq!(hits.len(), 3, "{hits:?}");
    let paths: BTreeSet<String> = hits
        .iter()
        .map(|h| h["path"].as_str().unwrap().to_string())
        .collect();
    assert!(paths.iter().all(|p| p.contains(".tar/")), "{paths:?}");
}

/// A shard without a single image (here an empty tar) writes no 0-row
/// embeddings or metadata file: embedding-reader, which autofaiss and
/// clip-retrieval read these folders with, fails on one. Its errors file and
/// an empty marker say it is finished.
#[test]
fn a_shard_without_images_writes_no_empty_embedding_files() {
    let input = tempfile::tempdir().unwrap();
    make_shards(input.path());
    // Shard 1 of the range becomes an empty tar (two zero blocks).
    std::fs::write(input.path().join("00001.tar"), [0u8; 1024]).unwrap();
    let out = tempfile::tempdir().unwrap();
    let lines = embed_shards(input.path(), out.path(), &[], &[]);
    let one = lines.iter().find(|l| l["number"] == 1).unwrap();
    assert_eq!(
        (one["status"].as_str(), one["rows"].as_u64()),
        (Some("written"), Some(0))
    );
    let o = out.path();
    assert!(!o.join("img_emb/img_emb_1.npy").exists());
    assert!(!o.join("metadata/metadata_1.parquet").exists());
    assert!(o.join("errors/errors_1.parquet").is_file() && o.join("errors/empty_1").is_file());
    // Finished: a rerun skips it with the others.
    let again = embed_shards(input.path(), out.path(), &[], &[]);
    assert!(again.iter().all(|l| l["status"] == "skipped"), "{again:?}");
    // Without the marker it is not finished, and is written again.
    std::fs::remove_file(o.join("errors/empty_1")).unwrap();
    let again = embed_shards(input.path(), out.path(), &[], &[]);
    let redone: Vec<&Value> = again.iter().filter(|l| l["status"] == "written").collect();
    assert_eq!(redone.len(), 1);
    assert_eq!(redone[0]["number"], 1);
    // The folder imports: 5 rows in the three shards with embeddings.
    let index = tempfile::tempdir().unwrap();
    let (m, os, i) = (
        model(),
        o.display().to_string(),
        index.path().display().to_string(),
    );
    let r = run(
        &["import", &os, "--model", &m, "--index", &i, "--json"],
        &[],
    );
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(json_lines(&r)[0]["shards"], 3);
}

#[test]
fn bad_requests_are_refused_with_a_reason() {
    let input = tempfile::tempdir().unwrap();
    make_shards(input.path());
    let out = tempfile::tempdir().unwrap();
    let (s, o, m) = (
        spec(input.path()),
        out.path().display().to_string(),
        model(),
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--shards", &s], "--out DIR"),
        (
            vec![
                "--shards",
                &s,
                "--out",
                &o,
                "--shard-index",
                "2",
                "--num-shards",
                "2",
            ],
            "not below",
        ),
        (
            vec!["--shards", &s, "--out", &o, "--shard-index", "1"],
            "--num-shards",
        ),
        (
            vec!["--shards", "/no/such/{0..2}.tar", "--out", &o],
            "no such file",
        ),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["embed", "--model", &m];
        args.extend(&extra);
        let r = run(&args, &[]);
        assert!(!r.status.success(), "{extra:?} was accepted");
        assert!(stderr(&r).contains(expected), "{extra:?}: {}", stderr(&r));
    }
    let caption_list = input.path().join("list.jsonl");
    std::fs::write(&caption_list, "{}\n").unwrap();
    let list = caption_list.display().to_string();
    let r = run(
        &["embed", "--model", &m, "--shards", &list, "--out", &o],
        &[],
    );
    assert!(stderr(&r).contains("webdataset"), "{}", stderr(&r));
    let file = input.path().join("00000.tar").display().to_string();
    let r = run(
        &["embed", "--model", &m, "--shards", &s, "--out", &file],
        &[],
    );
    assert!(stderr(&r).contains("is a folder"), "{}", stderr(&r));
    let r = run(
        &[
            "embed", "--model", &m, "--shards", &s, "--out", &o, "--image", &file,
        ],
        &[],
    );
    assert!(!r.status.success());
}

/// Whether output shard `n` in `out` is finished (as `shard_complete` says).
fn finished(out: &Path, n: usize) -> bool {
    seer_index::exchange::shard_complete(out, n)
}

/// A folder of shards that gains one shifts the positions of those after it:
/// a rerun must not skip input 1 because output 1 exists (it was written from
/// what is now input 2), nor write input 2 again as shard 2. It refuses, naming
/// both inputs, and leaves the folder as it was.
#[test]
fn a_shard_folder_that_changed_is_refused_not_mixed() {
    let input = tempfile::tempdir().unwrap();
    make_shards(input.path());
    let grow = tempfile::tempdir().unwrap();
    for name in ["00000.tar", "00002.tar"] {
        std::fs::copy(input.path().join(name), grow.path().join(name)).unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    let (g, o, m) = (
        grow.path().display().to_string(),
        out.path().display().to_string(),
        model(),
    );
    let embed = |spec: &str| {
        run(
            &[
                "embed", "--model", &m, "--shards", spec, "--out", &o, "--json",
            ],
            &[],
        )
    };
    let first = embed(&g);
    assert!(first.status.success(), "{}", stderr(&first));
    let meta1 = out.path().join("metadata/metadata_1.parquet");
    let before = std::fs::read(&meta1).unwrap();
    assert!(column(&meta1, "image_path")[0]
        .as_deref()
        .unwrap()
        .contains("00002.tar/"));

    // The same inputs, however they are named: skipped.
    let again = embed(&format!("{g}/{{00000..00000}}.tar"));
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(json_lines(&again)[0]["status"], "skipped");
    let again = embed(&format!("{g}/./"));
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(json_lines(&again).iter().all(|l| l["status"] == "skipped"));

    std::fs::copy(
        input.path().join("00001.tar"),
        grow.path().join("00001.tar"),
    )
    .unwrap();
    let r = embed(&g);
    assert_eq!(r.status.code(), Some(2), "{}", stderr(&r));
    let err = stderr(&r);
    assert!(
        err.contains("00002.tar")
            && err.contains("00001.tar")
            && err.contains("input list changed"),
        "{err}"
    );
    assert!(err.contains("--out"), "{err}");
    assert!(json_lines(&r).is_empty(), "nothing is reported done");
    // Nothing was written: output 1 still holds input 00002, and there is no
    // output 2.
    assert_eq!(std::fs::read(&meta1).unwrap(), before);
    assert!(!finished(out.path(), 2));

    // Into a new folder, every input is embedded once, in its place.
    let fresh = tempfile::tempdir().unwrap();
    let f = fresh.path().display().to_string();
    let r = run(
        &[
            "embed", "--model", &m, "--shards", &g, "--out", &f, "--json",
        ],
        &[],
    );
    assert!(r.status.success(), "{}", stderr(&r));
    for (n, name) in ["00000.tar", "00001.tar", "00002.tar"].iter().enumerate() {
        let paths = column(
            &fresh.path().join(format!("metadata/metadata_{n}.parquet")),
            "image_path",
        );
        assert!(
            paths[0].as_deref().unwrap().contains(&format!("{name}/")),
            "{paths:?}"
        );
    }
}

/// `seer embed --shards … --json | head -1`: the reader leaves, the work
/// goes on; exit 0 means every shard is written, as ever.
#[test]
fn a_closed_stdout_does_not_stop_the_shards() {
    let input = tempfile::tempdir().unwrap();
    make_shards(input.path());
    let out = tempfile::tempdir().unwrap();
    let (s, o, m) = (
        spec(input.path()),
        out.path().display().to_string(),
        model(),
    );
    let mut child = seer()
        .args([
            "embed", "--model", &m, "--shards", &s, "--out", &o, "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Closed before the first line is written.
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    for n in 0..4 {
        assert!(finished(out.path(), n), "shard {n} was not written");
    }
}

/// Embedding images needs no tokenizer: an open_clip folder without one (the
/// fixture has none) loads with the network off, for `--shards` and
/// `--image`, and gives the embeddings it gives with a tokenizer. Texts
/// still need one.
#[test]
fn images_need_no_tokenizer() {
    let input = tempfile::tempdir().unwrap();
    make_shards(input.path());
    let empty_cache = tempfile::tempdir().unwrap();
    let cache = empty_cache.path().display().to_string();
    let no_tokenizer = |args: &[&str]| {
        let mut c = seer();
        c.args(args)
            .env_remove("SEER_TOKENIZER")
            .env("HF_HUB_OFFLINE", "1")
            .env("HF_HOME", &cache)
            .env("HF_HUB_CACHE", &cache);
        c.output().unwrap()
    };
    let out = tempfile::tempdir().unwrap();
    let (s, o, m) = (
        spec(input.path()),
        out.path().display().to_string(),
        model(),
    );
    let r = no_tokenizer(&[
        "embed",
        "--model",
        &m,
        "--shards",
        &s,
        "--out",
        &o,
        "--json",
        "--offline",
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(json_lines(&r).len(), 4);
    let with_tokenizer = tempfile::tempdir().unwrap();
    embed_shards(input.path(), with_tokenizer.path(), &[], &[]);
    assert_eq!(
        std::fs::read(out.path().join("img_emb/img_emb_0.npy")).unwrap(),
        std::fs::read(with_tokenizer.path().join("img_emb/img_emb_0.npy")).unwrap()
    );

    let photo = photos()[0].display().to_string();
    let args = ["embed", "--model", &m, "--image", &photo, "--json"];
    let r = no_tokenizer(&args);
    assert!(r.status.success(), "{}", stderr(&r));
    let with = run(&args, &[]);
    assert!(with.status.success(), "{}", stderr(&with));
    assert_eq!(json_lines(&r), json_lines(&with));

    let r = no_tokenizer(&["embed", "--model", &m, "--text", "a dog"]);
    assert_eq!(r.status.code(), Some(2));
    assert!(stderr(&r).contains("tokenizer"), "{}", stderr(&r));

    // `seer index` embeds images only too.
    let folder = photos()[0].parent().unwrap().display().to_string();
    let index = tempfile::tempdir().unwrap();
    let index = index.path().display().to_string();
    let r = no_tokenizer(&["index", &folder, "--model", &m, "--index", &index, "--json"]);
    assert!(r.status.success(), "{}", stderr(&r));
    let summary = &json_lines(&r)[0];
    assert!(summary["added"].as_u64().unwrap() > 0, "{summary}");
}

/// A shard cut exactly between two members (at a header boundary) has no
/// end-of-archive marker: it is reported with an empty key, and the sample
/// being read when it was cut is an error too, never a row (it was passed as
/// complete, its caption or the rest of the shard silently gone).
#[test]
fn a_shard_cut_between_members_is_reported() {
    let input = tempfile::tempdir().unwrap();
    make_shards(input.path());
    let whole = std::fs::read(input.path().join("00000.tar")).unwrap();
    let photos = photos();
    // Shard 0 is cut after the first sample's image (its caption is gone),
    // shard 1 after its caption (it may have had more members: it cannot be
    // told from a whole one). The second sample is gone from both.
    let image = std::fs::metadata(&photos[0]).unwrap().len() as usize;
    let cut = 512 + image.next_multiple_of(512) + 512 + 512;
    let cut_dir = tempfile::tempdir().unwrap();
    for (name, at) in [
        ("00000.tar", 512 + image.next_multiple_of(512)),
        ("00001.tar", cut),
    ] {
        std::fs::write(cut_dir.path().join(name), &whole[..at]).unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    let (s, o, m) = (
        format!("{}/{{00000..00001}}.tar", cut_dir.path().display()),
        out.path().display().to_string(),
        model(),
    );
    let r = run(
        &[
            "embed", "--model", &m, "--shards", &s, "--out", &o, "--json",
        ],
        &[],
    );
    assert!(r.status.success(), "{}", stderr(&r));
    for n in 0..2 {
        let errors = out.path().join(format!("errors/errors_{n}.parquet"));
        assert_eq!(
            column(&errors, "key"),
            [Some("000000000".into()), Some(String::new())],
            "shard {n}"
        );
        let causes = column(&errors, "error");
        assert!(
            causes[1].as_deref().unwrap().contains("truncated"),
            "{causes:?}"
        );
        assert!(!out
            .path()
            .join(format!("metadata/metadata_{n}.parquet"))
            .exists());
        assert!(out.path().join(format!("errors/empty_{n}")).is_file());
    }
}
