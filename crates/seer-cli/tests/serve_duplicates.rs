//! `GET /v1/duplicates`: the groups `seer dupes` finds, a page at a time, each
//! file described as a search hit is; the threshold measured by the first
//! request and shared with `seer dupes` through the index; bad requests 400.

mod common;

use std::path::Path;

use common::server::{index_with, json_of, seer, serve, Server};
use seer_testkit::{model_fixture, shared_data};
use serde_json::Value;

/// The shared skimage photos and two near-copies: the rocket halved, the cat
/// brightened.
fn photos_with_copies() -> tempfile::TempDir {
    let photos = tempfile::tempdir().unwrap();
    let skimage = shared_data().join("smoke").join("skimage");
    for entry in std::fs::read_dir(&skimage).unwrap() {
        let path = entry.unwrap().path();
        if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("png" | "jpg")
        ) {
            std::fs::copy(&path, photos.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let decode =
        |name: &str| seer_image::decode_file(&skimage.join(name), &Default::default()).unwrap();
    let rocket = decode("rocket.jpg");
    seer_image::image::imageops::resize(
        &rocket,
        rocket.width() / 2,
        rocket.height() / 2,
        seer_image::image::imageops::FilterType::Triangle,
    )
    .save(photos.path().join("rocket-small.png"))
    .unwrap();
    seer_image::image::imageops::brighten(&decode("chelsea.png"), 8)
        .save(photos.path().join("chelsea-brighter.png"))
        .unwrap();
    photos
}

fn served(photos: &Path) -> Server {
    let index = tempfile::tempdir().unwrap();
    index_with(index.path(), &[photos], &model_fixture("openclip-vit"));
    serve(index, &[])
}

/// Index and serve `photos` with the approximate index from 5 vectors on.
fn served_with_graph(photos: &Path) -> Server {
    let index = tempfile::tempdir().unwrap();
    let model = model_fixture("openclip-vit");
    let status = seer()
        .arg("index")
        .arg(photos)
        .args(["--model", model.to_str().unwrap(), "--ann-threshold", "5"])
        .env("SEER_INDEX", index.path())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    serve(index, &["--ann-threshold", "5"])
}

fn get(s: &Server, query: &str) -> (u16, Value) {
    json_of(ureq::get(&format!("{}/v1/duplicates{query}", s.url)).call())
}

/// A group as its paths and their scores.
type Group = (Vec<String>, Vec<f32>);

/// `seer dupes --json` of the served index with `args`: its groups (paths and
/// scores) and what it said on stderr.
fn cli_dupes(s: &Server, args: &[&str]) -> (Vec<Group>, String) {
    let out = seer()
        .args(["dupes", "--json"])
        .args(args)
        .env("SEER_INDEX", s.index.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let groups = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let g: Value = serde_json::from_str(line).unwrap();
            let paths = g["paths"].as_array().unwrap();
            let scores = g["scores"].as_array().unwrap();
            (
                paths
                    .iter()
                    .map(|p| p.as_str().unwrap().to_string())
                    .collect(),
                scores.iter().map(|s| s.as_f64().unwrap() as f32).collect(),
            )
        })
        .collect();
    (groups, stderr)
}

/// An answer's groups as paths and scores.
fn groups_of(answer: &Value) -> Vec<Group> {
    answer["groups"]
        .as_array()
        .unwrap_or_else(|| panic!("no groups in {answer}"))
        .iter()
        .map(|g| {
            let files = g["files"].as_array().unwrap();
            (
                files
                    .iter()
                    .map(|f| f["path"].as_str().unwrap().to_string())
                    .collect(),
                files
                    .iter()
                    .map(|f| f["score"].as_f64().unwrap() as f32)
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn groups_at_a_threshold_are_seer_dupes_groups_a_page_at_a_time() {
    let photos = photos_with_copies();
    let s = served(photos.path());
    for threshold in ["0.99", "0.9", "-1"] {
        let (code, answer) = get(&s, &format!("?threshold={threshold}&k=100"));
        assert_eq!(code, 200, "{answer}");
        let (expected, _) = cli_dupes(&s, &["--threshold", threshold]);
        assert_eq!(groups_of(&answer), expected, "threshold {threshold}");
        assert_eq!(answer["total"], expected.len(), "{answer}");
        assert_eq!(answer["more"], false);
        assert!(answer.get("calibration").is_none(), "{answer}");
        assert_eq!(answer["approximate"], false, "a small index has no graph");
    }
    let (_, close) = get(&s, "?threshold=0.99");
    let close = groups_of(&close);
    let names: Vec<Vec<&str>> = close
        .iter()
        .map(|(paths, _)| {
            paths
                .iter()
                .map(|p| p.rsplit('/').next().unwrap())
                .collect()
        })
        .collect();
    assert!(
        names
            .iter()
            .any(|g| g.contains(&"rocket.jpg") && g.contains(&"rocket-small.png")),
        "{names:?}"
    );
    // Each file as a search hit describes it, with its similarity to the first.
    let (_, answer) = get(&s, "?threshold=0.99");
    let first = &answer["groups"][0]["files"][0];
    let id = first["id"].as_i64().unwrap();
    assert_eq!(first["thumbnail"], format!("/v1/images/{id}/thumbnail"));
    assert!(first["width"].as_u64().is_some(), "{first}");
    // At -1 with 3 neighbours every file is within reach: one group of all ten.
    let (_, all) = get(&s, "?threshold=-1&neighbours=3");
    assert_eq!(all["total"], 1);
    assert_eq!(all["groups"][0]["size"], 10);
    assert_eq!(all["groups"][0]["files"].as_array().unwrap().len(), 10);
    // Pages of one group put together are the whole answer.
    let (_, whole) = get(&s, "?threshold=0.9");
    let total = whole["total"].as_u64().unwrap() as usize;
    assert!(total >= 2, "{whole}");
    let mut paged = Vec::new();
    for offset in 0..=total {
        let (code, page) = get(&s, &format!("?threshold=0.9&k=1&offset={offset}"));
        assert_eq!(code, 200, "{page}");
        assert_eq!(page["more"], offset + 1 < total, "offset {offset}: {page}");
        paged.extend(groups_of(&page));
    }
    assert_eq!(paged, groups_of(&whole));
}

#[test]
fn the_first_request_measures_the_threshold_and_seer_dupes_shares_it() {
    let photos = photos_with_copies();
    let s = served(photos.path());
    let (code, first) = get(&s, "");
    assert_eq!(code, 200, "{first}");
    let c = &first["calibration"];
    assert_eq!(
        (&c["images"], &c["duplicate_pairs"]),
        (&10.into(), &30.into())
    );
    let threshold = first["threshold"].as_f64().unwrap();
    assert_eq!(c["threshold"].as_f64(), Some(threshold));
    // Remembered: seer dupes uses it, measuring nothing, and finds the same groups.
    let (groups, stderr) = cli_dupes(&s, &[]);
    assert!(!stderr.contains("catches 99%"), "{stderr}");
    assert!(
        stderr.contains(&format!("at threshold {threshold:.4}")),
        "{stderr}"
    );
    assert_eq!(groups_of(&first), groups);
    assert_eq!(c["measured"], true);
    let (_, mut again) = get(&s, "");
    assert_eq!(again["calibration"]["measured"], false, "{again}");
    again["calibration"]["measured"] = true.into();
    assert_eq!(again["calibration"], first["calibration"]);
    // Measured again on request (seer dupes --calibrate measures the same way).
    let (code, remeasured) = get(&s, "?calibrate=true");
    assert_eq!(code, 200, "{remeasured}");
    assert_eq!(remeasured["calibration"]["images"], 10);
}

/// Requests that arrive while the threshold is being measured wait for it
/// instead of measuring it again: of several at once, one measures.
#[test]
fn concurrent_first_requests_measure_the_threshold_once() {
    let photos = photos_with_copies();
    let s = served(photos.path());
    let answers: Vec<Value> = std::thread::scope(|scope| {
        let asks: Vec<_> = (0..4).map(|_| scope.spawn(|| get(&s, "").1)).collect();
        asks.into_iter().map(|a| a.join().unwrap()).collect()
    });
    let measured = answers
        .iter()
        .filter(|a| a["calibration"]["measured"] == true)
        .count();
    assert_eq!(measured, 1, "{answers:?}");
    let thresholds: Vec<&Value> = answers.iter().map(|a| &a["threshold"]).collect();
    assert!(
        thresholds.iter().all(|t| *t == thresholds[0]),
        "{thresholds:?}"
    );
}

#[test]
fn bad_duplicate_requests_are_400_and_say_why() {
    let photos = photos_with_copies();
    let s = served(photos.path());
    for (query, says) in [
        ("?threshold=1.5", "threshold must be a cosine similarity"),
        ("?threshold=nan", "threshold must be a cosine similarity"),
        ("?threshold=high", "threshold"),
        ("?neighbours=0", "neighbours must be 1 to 100"),
        ("?neighbours=101", "neighbours must be 1 to 100"),
        ("?calibrate=maybe", "calibrate must be true or false"),
        ("?k=0", "k must be 1 to 1000"),
        ("?threshold=0.9&offset=99999", "offset + k"),
        (
            "?model=no-such-model",
            "does not serve model 'no-such-model'",
        ),
    ] {
        let (code, answer) = get(&s, query);
        assert_eq!(code, 400, "{query}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{query}: {error}");
    }
}

#[test]
fn a_threshold_that_cannot_be_measured_is_a_clear_error_and_a_given_one_still_works() {
    let photos = photos_with_copies();
    let s = served(photos.path());
    for entry in std::fs::read_dir(photos.path()).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let (code, answer) = get(&s, "");
    assert_eq!(code, 400, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("none of the 10 sampled photos could be read"),
        "{error}"
    );
    let (code, answer) = get(&s, "?threshold=0.99");
    assert_eq!(code, 200, "{answer}");
}

/// An index with its approximate graph: the neighbours come from the graph
/// (the answer and `seer dupes` say so), and the groups are the exact scan's
/// (a small index, which the graph searches without a miss).
#[test]
fn with_the_index_s_graph_the_groups_are_found_through_it() {
    let photos = photos_with_copies();
    let s = served_with_graph(photos.path());
    let (code, graph) = get(&s, "?threshold=0.9&k=100");
    assert_eq!(code, 200, "{graph}");
    assert_eq!(graph["approximate"], true, "{graph}");
    let (code, exact) = get(&s, "?threshold=0.9&k=100&exact=true");
    assert_eq!(code, 200, "{exact}");
    assert_eq!(exact["approximate"], false, "{exact}");
    assert!(!groups_of(&graph).is_empty());
    assert_eq!(groups_of(&graph), groups_of(&exact));

    let threshold = ["--threshold", "0.9", "--ann-threshold", "5"];
    let (cli, stderr) = cli_dupes(&s, &threshold);
    assert!(stderr.contains("approximate (HNSW) graph"), "{stderr}");
    assert_eq!(cli, groups_of(&graph));
    let (cli_exact, stderr) = cli_dupes(&s, &[&threshold[..], &["--exact"]].concat());
    assert!(!stderr.contains("HNSW"), "{stderr}");
    assert_eq!(cli_exact, cli);
    let (code, answer) = get(&s, "?exact=sometimes");
    assert_eq!(code, 400, "{answer}");
}
