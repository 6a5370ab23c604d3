//! `GET /v1/search` as the web page uses it: "more like this" without the photo
//! itself, pages with `offset`, capture-date filters, and file metadata on hits.

mod common;

use std::collections::HashSet;

use common::exif::{dated_photos, DATED};
use common::server::{index_with, serve, start};
use seer_testkit::{model_fixture, shared_data};
use serde_json::Value;

fn get(url: &str) -> (u16, Value) {
    let response = match ureq::get(url).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    (
        response.status(),
        response.into_json().unwrap_or(Value::Null),
    )
}

fn ids(answer: &Value) -> Vec<i64> {
    answer["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {answer}"))
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

#[test]
fn more_like_this_leaves_out_the_photo_itself_and_pages_with_offset() {
    let s = start(&[]);
    let (code, all) = get(&format!("{}/v1/search?q=a%20cat&k=100", s.url));
    assert_eq!(code, 200, "{all}");
    let everything = ids(&all);
    assert_eq!(everything.len(), 34);
    assert_eq!(all["more"], false);

    // "More like this" of each of a few photos: never itself, everything else.
    for &id in &everything[..3] {
        let (code, like) = get(&format!("{}/v1/search?like={id}&k=100", s.url));
        assert_eq!(code, 200, "{like}");
        let found = ids(&like);
        assert!(!found.contains(&id), "{id} is among its own results");
        assert_eq!(found.len(), 33);
        assert_eq!(like["like"]["id"], id, "the answer names the query photo");
    }

    // Pages of 10 put together are the one long answer, and say when more follow.
    let mut paged = Vec::new();
    for offset in [0, 10, 20, 30] {
        let (code, page) = get(&format!(
            "{}/v1/search?q=a%20cat&k=10&offset={offset}",
            s.url
        ));
        assert_eq!(code, 200, "{page}");
        assert_eq!(page["offset"], offset);
        assert_eq!(page["more"], offset < 30, "offset {offset}: {page}");
        paged.extend(ids(&page));
    }
    assert_eq!(paged, everything);
    let (_, past) = get(&format!("{}/v1/search?q=a%20cat&offset=40", s.url));
    assert_eq!((ids(&past).len(), &past["more"]), (0, &Value::Bool(false)));
    let (code, deep) = get(&format!("{}/v1/search?q=cat&k=1000&offset=9500", s.url));
    assert_eq!(code, 400, "{deep}");
    assert!(deep["error"].as_str().unwrap().contains("offset"), "{deep}");
    let (code, huge) = get(&format!("{}/v1/search?q=cat&offset={}", s.url, usize::MAX));
    assert_eq!(code, 400, "{huge}");
}

#[test]
fn date_filters_keep_only_photos_taken_in_the_range() {
    let dated = dated_photos();
    let folders = [&shared_data().join("smoke"), dated.path()];
    let index = tempfile::tempdir().unwrap();
    index_with(index.path(), &folders, &model_fixture("openclip-vit"));
    // A copy made after its source was indexed reuses what the index knows of
    // the content, capture time included.
    std::fs::copy(
        dated.path().join("bee-2020.jpg"),
        dated.path().join("bee-copy.jpg"),
    )
    .unwrap();
    index_with(index.path(), &folders, &model_fixture("openclip-vit"));
    let s = serve(index, &[]);
    let search = |range: &str| get(&format!("{}/v1/search?q=a%20photo&k=100{range}", s.url));
    let names = |answer: &Value| -> HashSet<String> {
        answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let p = r["path"].as_str().unwrap();
                p.rsplit('/').next().unwrap().to_string()
            })
            .collect()
    };
    let (_, all) = search("");
    assert_eq!(ids(&all).len(), 38);
    // Both bounds inclusive; a bare `to` date covers its whole day; photos without a
    // capture time (all the others) are left out.
    let (code, range) = search("&from=2020-01-01&to=2021-12-31");
    assert_eq!(code, 200, "{range}");
    assert_eq!(
        names(&range),
        HashSet::from(["bee-2020.jpg", "bee-copy.jpg", "cake-2021.jpg"].map(String::from))
    );
    let (_, before) = search("&to=2020-07-15T08:30");
    assert_eq!(
        names(&before),
        HashSet::from(["cat-2019.jpg", "bee-2020.jpg", "bee-copy.jpg"].map(String::from))
    );
    // tree.webp of the smoke photos carries a capture time of its own (2022-02-19).
    let (_, since) = search("&from=2019-05-01");
    assert_eq!(
        names(&since),
        HashSet::from(
            [
                "cat-2019.jpg",
                "bee-2020.jpg",
                "bee-copy.jpg",
                "cake-2021.jpg",
                "tree.webp"
            ]
            .map(String::from)
        )
    );
    let (_, none) = search("&from=2023-01-01");
    assert_eq!(ids(&none).len(), 0);
    // Each hit says when it was taken.
    let hits = range["results"].as_array().unwrap();
    for r in hits {
        let name = r["path"].as_str().unwrap().rsplit('/').next().unwrap();
        let name = name.replace("bee-copy", "bee-2020");
        let (_, _, taken) = DATED.iter().find(|d| d.0 == name).unwrap();
        let (date, time) = taken.split_once(' ').unwrap();
        assert_eq!(r["taken_at"], format!("{} {time}", date.replace(':', "-")));
    }
    let size = |name: &str| {
        let hit = hits
            .iter()
            .find(|r| r["path"].as_str().unwrap().ends_with(name))
            .unwrap();
        (hit["width"].clone(), hit["height"].clone())
    };
    assert!(size("/bee-2020.jpg").0.is_u64());
    assert_eq!(size("/bee-copy.jpg"), size("/bee-2020.jpg"));
    for bad in [
        "&from=yesterday",
        "&to=2021-02-30x",
        "&from=2022-01-01&to=2021-01-01",
    ] {
        let (code, e) = search(bad);
        assert_eq!(code, 400, "{bad}: {e}");
        assert!(
            e["error"]
                .as_str()
                .is_some_and(|m| m.contains("from") || m.contains("to")),
            "{e}"
        );
    }
}

#[test]
fn search_hits_carry_the_files_metadata() {
    let s = start(&[]);
    let chelsea = shared_data()
        .join("smoke/skimage/chelsea.png")
        .canonicalize()
        .unwrap();
    let (code, found) = get(&format!("{}/v1/search?q=a%20cat&k=100", s.url));
    assert_eq!(code, 200);
    let hit = found["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["path"] == chelsea.to_str().unwrap())
        .expect("chelsea.png is found")
        .clone();
    let meta = std::fs::metadata(&chelsea).unwrap();
    assert_eq!(hit["size"].as_u64(), Some(meta.len()));
    assert_eq!(
        (hit["width"].as_u64(), hit["height"].as_u64()),
        (Some(451), Some(300))
    );
    assert!(hit["taken_at"].is_null(), "{hit}");
    let mtime = meta
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (hit["modified"].as_f64().unwrap() - mtime).abs() < 1.0,
        "{hit}"
    );
    assert!(hit["score"].as_f64().is_some() && hit["thumbnail"].is_string());
}
