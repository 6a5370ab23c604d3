//! `seer serve` refusing what it cannot do with a clear 4xx, never a 503 to
//! retry for ever: requests with more items than the model's queue holds,
//! a wrong method or content type, and search parameters out of range.

mod common;

use common::server::{json_of, post_form, start};
use seer_testkit::shared_data;
use serde_json::{json, Value};

/// Status, Retry-After and JSON body of a response.
fn answer(r: Result<ureq::Response, ureq::Error>) -> (u16, Option<String>, Value) {
    let response = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let retry = response.header("Retry-After").map(str::to_string);
    let status = response.status();
    (status, retry, response.into_json().unwrap_or(Value::Null))
}

fn message(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

#[test]
fn requests_larger_than_the_queue_are_told_the_limit_and_the_rest_are_answered() {
    let s = start(&[]);
    let chelsea = shared_data().join("smoke/skimage/chelsea.png");
    let classify = format!("{}/v1/classify", s.url);
    let labels = |n: usize| {
        (0..n)
            .map(|i| format!("thing {i}"))
            .collect::<Vec<_>>()
            .join(",")
    };

    // 36 labels × 7 imagenet templates and the image: 253 of the 256 places.
    let many = labels(36);
    let (code, body) = post_form(
        &classify,
        &[("labels", &many), ("templates", "imagenet")],
        Some(&chelsea),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["predictions"].as_array().unwrap().len(), 36);

    // One label more (260 inputs) never fits the default queue: a 400 that says so.
    for (labels, templates, hint) in [
        (labels(37), "imagenet", "give at most 36 labels"),
        (labels(1000), "imagenet", "7001 model inputs"),
        (labels(300), "default", "give at most 255 labels"),
    ] {
        let (code, body) = post_form(
            &classify,
            &[("labels", &labels), ("templates", templates)],
            Some(&chelsea),
        );
        assert_eq!(code, 400, "{templates}: {body}");
        let m = message(&body);
        assert!(
            m.contains(hint) && m.contains("256") && m.contains("--queue"),
            "{m}"
        );
    }
    // Nothing was refused as busy, and nothing is left waiting.
    let metrics = ureq::get(&format!("{}/metrics", s.url))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(metrics.contains("\nseer_queue_rejections 0\n"), "{metrics}");
    assert!(metrics.contains("\nseer_queue_depth 0\n"), "{metrics}");
}

#[test]
fn with_a_queue_of_one_a_request_of_two_items_is_a_400_not_a_503() {
    let s = start(&["--queue", "1"]);
    let url = format!("{}/v1/embed", s.url);
    let (code, retry, body) = answer(ureq::post(&url).send_json(json!({ "texts": ["a", "b"] })));
    assert_eq!((code, retry.as_deref()), (400, None), "{body}");
    assert!(
        message(&body).contains("2 texts and 0 images")
            && message(&body).contains("send at most 1 per request"),
        "{body}"
    );
    let (code, _, body) = answer(ureq::post(&url).send_json(json!({ "texts": ["a"] })));
    assert_eq!(code, 200, "{body}");
    // A search by text and upload together needs two places too.
    let chelsea = shared_data().join("smoke/skimage/chelsea.png");
    let (code, body) = post_form(
        &format!("{}/v1/search", s.url),
        &[("q", "a cat")],
        Some(&chelsea),
    );
    assert_eq!(code, 400, "{body}");
    assert!(message(&body).contains("--queue"), "{body}");
    let (code, body) = post_form(&format!("{}/v1/search", s.url), &[], Some(&chelsea));
    assert_eq!(code, 200, "{body}");
}

#[test]
fn wrong_methods_and_content_types_say_what_the_route_takes() {
    let s = start(&[]);
    let (code, _, body) = answer(ureq::request("DELETE", &format!("{}/v1/search", s.url)).call());
    assert_eq!(code, 405);
    assert_eq!(
        message(&body),
        "method not allowed here; allowed: GET,HEAD,POST"
    );

    for (route, content_type, body) in [
        ("/v1/classify", "application/json", "{}"),
        ("/v1/search", "application/x-www-form-urlencoded", "q=cat"),
    ] {
        let (code, _, answer) = answer(
            ureq::post(&format!("{}{route}", s.url))
                .set("Content-Type", content_type)
                .send_string(body),
        );
        assert_eq!(code, 415, "{route}: {answer}");
        let m = message(&answer);
        assert!(
            m.contains("multipart/form-data") && m.contains(content_type),
            "{m}"
        );
    }
    // The right type without a boundary is a malformed form: 400.
    let (code, _, answer) = answer(
        ureq::post(&format!("{}/v1/classify", s.url))
            .set("Content-Type", "multipart/form-data")
            .send_string("x"),
    );
    assert_eq!(code, 400, "{answer}");
}

#[test]
fn search_parameters_out_of_range_are_400_and_never_clamped() {
    let s = start(&[]);
    let search =
        |query: &str| json_of(ureq::get(&format!("{}/v1/search?q=a%20cat&{query}", s.url)).call());
    for (query, expected) in [
        ("k=0", "k must be 1 to 1000"),
        ("k=20000&offset=0", "k must be 1 to 1000"),
        ("k=5&offset=9996", "offset + k must be at most 10000"),
        ("min_score=NaN", "min_score must be a finite number"),
        ("min_score=inf", "min_score must be a finite number"),
        ("from=2022-02-30", "2022-02 has 28 days"),
        ("from=2022-02-31", "2022-02 has 28 days"),
        ("from=2022-04-31", "2022-04 has 30 days"),
        ("to=2023-02-29", "2023-02 has 28 days"),
    ] {
        let (code, body) = search(query);
        assert_eq!(code, 400, "{query}: {body}");
        assert!(message(&body).contains(expected), "{query}: {body}");
    }
    let (code, body) = search("k=1");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["results"].as_array().unwrap().len(), 1);
    for ok in ["k=1000", "from=2024-02-29", "min_score=-0.5"] {
        let (code, body) = search(ok);
        assert_eq!(code, 200, "{ok}: {body}");
    }
}
