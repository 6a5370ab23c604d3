//! The loader on the real CIFAR-10 shards and on hostile synthetic shards and lists.

use std::io::Write;
use std::path::{Path, PathBuf};

use seer_data::{ClassPrompts, DataPosition, DataSource, Loader, LoaderConfig, RandomResizedCrop};
use seer_image::{DecodeLimits, PreprocessConfig};
use seer_testkit::shared_data;

fn cifar_prompts() -> ClassPrompts {
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(shared_data().join("clip-prompts/prompts.json")).unwrap(),
    )
    .unwrap();
    let list = |k: &str| -> Vec<String> {
        v["CIFAR10"][k]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    ClassPrompts {
        classes: list("classes"),
        templates: list("templates"),
    }
}

fn config(sources: Vec<DataSource>, shuffle: usize, workers: usize, repeat: bool) -> LoaderConfig {
    LoaderConfig {
        sources,
        preprocess: PreprocessConfig::openai_clip(32),
        augment: None,
        shuffle_buffer: shuffle,
        workers,
        seed: 3,
        prompts: Some(cifar_prompts()),
        limits: DecodeLimits::default(),
        repeat,
    }
}

fn test_shard() -> Vec<DataSource> {
    DataSource::parse(
        shared_data()
            .join("cifar10-wds/test-0000.tar.gz")
            .to_str()
            .unwrap(),
    )
    .unwrap()
}

/// (key, caption, pixels) of the next `n` samples.
fn take(loader: &mut Loader, n: usize) -> Vec<(String, String, Vec<f32>)> {
    let mut out = Vec::new();
    while out.len() < n {
        let Some(b) = loader.next_batch(n - out.len()).unwrap() else {
            break;
        };
        let per = b.pixels().len() / b.len();
        for i in 0..b.len() {
            out.push((
                b.keys()[i].clone(),
                b.captions()[i].clone(),
                b.pixels()[i * per..(i + 1) * per].to_vec(),
            ));
        }
    }
    out
}

#[test]
fn one_pass_over_the_test_shard() {
    let mut loader =
        Loader::new(config(test_shard(), 0, 2, false), DataPosition::default()).unwrap();
    let mut per_class = [0usize; 10];
    let mut n = 0;
    let mut first = None;
    while let Some(b) = loader.next_batch(500).unwrap() {
        for c in b.classes() {
            per_class[c.unwrap()] += 1;
        }
        if first.is_none() {
            first = Some((
                b.keys()[0].clone(),
                b.pixels()[..3 * 32 * 32].to_vec(),
                b.captions()[0].clone(),
            ));
        }
        n += b.len();
    }
    assert_eq!(n, 10_000);
    assert_eq!(per_class, [1000; 10]);
    assert_eq!(loader.stats().skipped, 0);
    // Eval preprocessing equals seer-image's on the same JPEG bytes.
    let (key, pixels, caption) = first.unwrap();
    assert_eq!(key, "test_000000");
    assert!(caption.chars().count() > 5);
    let bytes = read_member(
        &shared_data().join("cifar10-wds/test-0000.tar.gz"),
        "test_000000.jpg",
    );
    let img = seer_image::decode_bytes_full(&bytes, "x.jpg", &DecodeLimits::default()).unwrap();
    assert_eq!(
        pixels,
        seer_image::preprocess_decoded(&img, &PreprocessConfig::openai_clip(32))
    );
}

fn read_member(shard: &Path, name: &str) -> Vec<u8> {
    use std::io::Read;
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(shard).unwrap());
    let mut ar = tar::Archive::new(gz);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_string_lossy() == name {
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            return v;
        }
    }
    panic!("{name} not in shard");
}

#[test]
fn order_depends_on_the_seed_only_and_resumes_exactly() {
    let mut augmented = config(test_shard(), 100, 1, true);
    augmented.augment = Some(RandomResizedCrop {
        hflip: true,
        ..Default::default()
    });
    let mut one = Loader::new(augmented.clone(), DataPosition::default()).unwrap();
    let a = take(&mut one, 300);
    let mut three = Loader::new(
        LoaderConfig {
            workers: 3,
            ..augmented.clone()
        },
        DataPosition::default(),
    )
    .unwrap();
    assert_eq!(take(&mut three, 300), a, "worker count changed the stream");

    // Resume mid-stream.
    let mut first = Loader::new(augmented.clone(), DataPosition::default()).unwrap();
    let head = take(&mut first, 120);
    let pos = first.position();
    let mut resumed = Loader::new(augmented.clone(), pos).unwrap();
    let tail = take(&mut resumed, 180);
    assert_eq!([head, tail].concat(), a);

    // Shuffled: not file order, different per seed.
    let keys: Vec<&String> = a.iter().map(|s| &s.0).collect();
    assert_ne!(keys[0], "test_000000");
    let mut other = Loader::new(
        LoaderConfig {
            seed: 4,
            ..augmented.clone()
        },
        DataPosition::default(),
    )
    .unwrap();
    assert_ne!(take(&mut other, 5)[0].0, a[0].0);
    // Augmented pixels differ from the eval preprocessing of the same sample.
    let mut plain =
        Loader::new(config(test_shard(), 100, 1, true), DataPosition::default()).unwrap();
    let p = take(&mut plain, 1);
    assert_eq!(p[0].0, a[0].0, "augmentation does not change the order");
    assert_ne!(p[0].2, a[0].2);
}

fn tar_bytes(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn jpeg() -> Vec<u8> {
    std::fs::read(shared_data().join("cifar10-test-subset/images/cat/0000.jpg")).unwrap()
}

#[test]
fn bad_samples_and_broken_shards_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let img = jpeg();
    let good = tar_bytes(&[
        ("a.jpg", &img),
        ("a.cls", b"3"),
        ("b.jpg", b"not a jpeg"),
        ("b.cls", b"1"),
        ("c.jpg", &img),
        ("c.cls", b"42"),
        ("d.txt", b"only a caption"),
        ("e.jpg", &img),
        ("e.txt", b"a cat on a mat"),
    ]);
    let broken = gz(&tar_bytes(&[
        ("f.jpg", &img),
        ("f.cls", b"2"),
        ("g.jpg", &img),
        ("g.cls", b"2"),
    ]));
    let truncated = &broken[..broken.len() / 2];
    std::fs::write(dir.path().join("s-0.tar"), &good).unwrap();
    std::fs::write(dir.path().join("s-1.tar.gz"), truncated).unwrap();
    std::fs::write(
        dir.path().join("s-2.tar.gz"),
        gz(&tar_bytes(&[("h.jpg", &img), ("h.cls", b"0")])),
    )
    .unwrap();
    let sources = DataSource::parse(dir.path().to_str().unwrap()).unwrap();
    assert_eq!(sources.len(), 3, "a folder means its shards");
    let mut loader = Loader::new(config(sources, 0, 2, false), DataPosition::default()).unwrap();
    let got = take(&mut loader, 100);
    let keys: Vec<&str> = got.iter().map(|s| s.0.as_str()).collect();
    assert!(
        keys.contains(&"a") && keys.contains(&"e") && keys.contains(&"h"),
        "{keys:?}"
    );
    assert!(!keys.contains(&"b") && !keys.contains(&"c") && !keys.contains(&"d"));
    assert_eq!(got.iter().find(|s| s.0 == "e").unwrap().1, "a cat on a mat");
    let stats = loader.stats();
    assert!(stats.skipped >= 4, "{stats:?}");
    assert!(
        stats.recent_errors.iter().any(|e| e.contains("s-1.tar.gz")),
        "{stats:?}"
    );
    assert!(
        stats
            .recent_errors
            .iter()
            .any(|e| e.contains(":c") && e.contains("42")),
        "{stats:?}"
    );
}

#[test]
fn caption_lists_resolve_relative_paths_and_skip_bad_rows() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cat.jpg"), jpeg()).unwrap();
    let jsonl = dir.path().join("pairs.jsonl");
    std::fs::write(
        &jsonl,
        "{\"image\": \"cat.jpg\", \"caption\": \"a cat\"}\n{not json\n{\"image\": \"missing.jpg\", \"caption\": \"x\"}\n\n{\"file\": \"cat.jpg\", \"text\": \"again\"}\n",
    )
    .unwrap();
    let csv = dir.path().join("pairs.csv");
    std::fs::write(
        &csv,
        "filepath,title\ncat.jpg,a csv cat\nmissing.jpg,gone\n",
    )
    .unwrap();
    for (path, want) in [(&jsonl, vec!["a cat", "again"]), (&csv, vec!["a csv cat"])] {
        let sources = DataSource::parse(path.to_str().unwrap()).unwrap();
        let mut loader =
            Loader::new(config(sources, 0, 1, false), DataPosition::default()).unwrap();
        let got: Vec<String> = take(&mut loader, 10).into_iter().map(|s| s.1).collect();
        assert_eq!(got, want);
        assert!(loader.stats().skipped >= 1);
    }
}

#[test]
fn sources_are_parsed_with_clear_errors() {
    let d = shared_data().join("cifar10-wds");
    let spec = format!("{}/train-{{0000..0004}}.tar.gz", d.display());
    assert_eq!(DataSource::parse(&spec).unwrap().len(), 5);
    let err = DataSource::parse("/nonexistent/x.tar")
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/x.tar"), "{err}");
    let txt: PathBuf = shared_data().join("SOURCES.md");
    assert!(DataSource::parse(txt.to_str().unwrap())
        .unwrap_err()
        .to_string()
        .contains("unknown data format"));
    assert_eq!(seer_data::count_samples(&test_shard()).unwrap(), 10_000);
}

#[test]
fn class_only_samples_without_class_names_are_one_clear_error() {
    // The CIFAR-10 shards carry `KEY.cls` and no caption: without class names
    // nothing can be captioned. That is said once, not once per sample (it was
    // a warning per sample and an error quoting 20 of them).
    let mut cfg = config(test_shard(), 0, 2, true);
    cfg.prompts = None;
    let mut loader = Loader::new(cfg, DataPosition::default()).unwrap();
    // The whole pass is skipped inside the first call, which says why.
    let err = match loader.next_batch(256) {
        Err(e) => e.to_string(),
        Ok(got) => panic!(
            "a class-only sample was delivered without class names, or none and no cause: {:?}",
            got.map(|b| b.keys().to_vec())
        ),
    };
    assert!(err.contains("--classes"), "{err}");
    assert!(err.contains("10000 samples"), "{err}");
    assert!(err.len() < 400, "{} bytes: {err}", err.len());
    let stats = loader.stats();
    assert_eq!(stats.skipped, 10_000);
    assert_eq!(stats.recent_errors.len(), 1, "{:?}", stats.recent_errors);
}
