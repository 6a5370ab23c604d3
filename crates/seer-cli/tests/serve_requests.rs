//! `seer serve` refusing what it cannot do with a clear 4xx, never a 503 to
//! retry for ever: requests with more items than the model's queue holds,
//! a wrong method or content type, and search parameters out of range.

mod common;

use common::server::{json_of, metric, post_form, start};
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
fn classifications_larger_than_the_queue_go_in_parts_and_repeats_embed_the_image_alone() {
    let s = start(&[]);
    let chelsea = shared_data().join("smoke/skimage/chelsea.png");
    let classify = format!("{}/v1/classify", s.url);
    let labels = |n: usize| {
        (0..n)
            .map(|i| format!("thing {i}"))
            .collect::<Vec<_>>()
            .join(",")
    };

    // 100 labels × 7 imagenet templates and the image: 701 model inputs
    // through the default queue of 256; 300 labels with the default template.
    for (n, templates) in [(100, "imagenet"), (300, "default")] {
        let before = metric(&s.url, "seer_batch_items");
        let form = [("labels", labels(n)), ("templates", templates.into())];
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (code, body) = post_form(&classify, &form, Some(&chelsea));
        assert_eq!(code, 200, "{templates}: {body}");
        let first = body["predictions"].as_array().unwrap().clone();
        assert_eq!(first.len(), n);
        let prompts = if templates == "imagenet" { 7 * n } else { n };
        assert_eq!(
            metric(&s.url, "seer_batch_items"),
            before + 1.0 + prompts as f64
        );
        // Again: the same answer from the image alone.
        let (code, body) = post_form(&classify, &form, Some(&chelsea));
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["predictions"].as_array().unwrap(), &first);
        assert_eq!(
            metric(&s.url, "seer_batch_items"),
            before + 2.0 + prompts as f64
        );
    }
    // More than 1,000 labels is refused.
    let (code, body) = post_form(&classify, &[("labels", &labels(1001))], Some(&chelsea));
    assert_eq!(code, 400, "{body}");
    assert!(message(&body).contains("1 to 1000"), "{body}");
    // Nothing was refused as busy, and nothing is left waiting.
    assert_eq!(metric(&s.url, "seer_queue_rejections"), 0.0);
    assert_eq!(metric(&s.url, "seer_queue_depth"), 0.0);
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
        (
            "min_score=NaN",
            "min_score must be a cosine similarity, from -1 to 1",
        ),
        ("min_score=inf", "from -1 to 1, not inf"),
        ("min_score=5", "from -1 to 1, not 5"),
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
