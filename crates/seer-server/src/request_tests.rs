//! How the embedding routes take room in the model's queue (a request's items
//! all or none), and the answers to requests the server must refuse: a wrong
//! method or content type, search pages, scores and dates out of range. With
//! a small fake encoder whose text tower can be held busy.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use seer_engine::{LoadedModel, ScoreRule, TextEncoder};
use seer_image::PreprocessConfig;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::task_tests::{unit, FakeImage};
use crate::{app, ServerConfig};

// ------------------------------------------------------------------ fakes

/// A latch the fake text tower waits on while it embeds "block".
#[derive(Default)]
struct Latch {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Latch {
    fn wait(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

/// A text embeds as the colours it names; "block" waits for the latch, and
/// a text with "slow" in it takes 40 ms.
struct FakeText(Arc<Latch>);

impl TextEncoder for FakeText {
    fn embed_dim(&self) -> usize {
        3
    }
    fn tokenize(&self, text: &str) -> Vec<u32> {
        text.bytes().map(u32::from).collect()
    }
    fn embed_text_batch(&self, texts: &[String], _: bool) -> seer_engine::Result<Vec<Vec<f32>>> {
        if texts.iter().any(|t| t == "block") {
            self.0.wait();
        }
        for _ in texts.iter().filter(|t| t.contains("slow")) {
            std::thread::sleep(Duration::from_millis(40));
        }
        Ok(texts
            .iter()
            .map(|t| {
                let v: Vec<f32> = ["red", "green", "blue"]
                    .iter()
                    .map(|c| if t.contains(c) { 1.0 } else { 0.1 })
                    .collect();
                unit(&v)
            })
            .collect())
    }
    fn score_rule(&self) -> ScoreRule {
        ScoreRule::Softmax { scale: 100.0 }
    }
}

fn encoder(latch: &Arc<Latch>) -> LoadedModel {
    LoadedModel::encoders(
        "fake-clip".into(),
        "fake",
        Some(Arc::new(FakeImage(PreprocessConfig::openai_clip(224)))),
        Some(Arc::new(FakeText(latch.clone()))),
    )
}

struct Fixture {
    photos: tempfile::TempDir,
    _index: tempfile::TempDir,
    app: Router,
    latch: Arc<Latch>,
}

/// Three indexed photos (two with an EXIF-less capture time: none), served
/// with a queue of `queue` items and batches of one.
fn fixture(queue: usize) -> Fixture {
    fixture_timing_out_after(queue, ServerConfig::default().request_timeout)
}

/// [`fixture`] with requests answered 504 after `timeout`.
fn fixture_timing_out_after(queue: usize, timeout: Duration) -> Fixture {
    let photos = tempfile::tempdir().unwrap();
    for (name, rgb) in [
        ("red.png", [220, 20, 20]),
        ("green.png", [20, 220, 20]),
        ("blue.png", [20, 20, 220]),
    ] {
        seer_image::image::RgbImage::from_pixel(8, 8, seer_image::image::Rgb(rgb))
            .save(photos.path().join(name))
            .unwrap();
    }
    let latch = Arc::new(Latch::default());
    let index = tempfile::tempdir().unwrap();
    let mut store = seer_index::Store::open(index.path()).unwrap();
    let options = seer_index::IndexOptions {
        roots: vec![photos.path().to_path_buf()],
        include_hidden: false,
        encoding: seer_index::Encoding::F32,
        embed: Default::default(),
        ann_threshold: usize::MAX,
        videos: None,
    };
    seer_index::index(&mut store, &encoder(&latch), &options, &mut |_| {}).unwrap();
    let config = ServerConfig {
        index_dir: index.path().to_path_buf(),
        max_batch: 1,
        max_wait: Duration::from_millis(1),
        queue_capacity: queue,
        ann_threshold: usize::MAX,
        request_timeout: timeout,
        ..Default::default()
    };
    let app = app(vec![encoder(&latch)], &config);
    Fixture {
        photos,
        _index: index,
        app,
        latch,
    }
}

// ------------------------------------------------------------------ requests

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    Answer {
        status,
        headers,
        body,
    }
}

fn request(method: &str, uri: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "127.0.0.1")
}

async fn get(app: &Router, uri: &str) -> Answer {
    send(app, request("GET", uri).body(Body::empty()).unwrap()).await
}

async fn embed(app: &Router, body: Value) -> Answer {
    let r = request("POST", "/v1/embed")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    send(app, r).await
}

/// A multipart POST of `fields` and, when given, the file `image`.
async fn post_form(
    app: &Router,
    uri: &str,
    fields: &[(&str, &str)],
    image: Option<&Path>,
) -> Answer {
    let boundary = "seer-request-test";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes());
    }
    if let Some(path) = image {
        body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\nContent-Type: image/png\r\n\r\n").as_bytes());
        body.extend(std::fs::read(path).unwrap());
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").as_bytes());
    let r = request("POST", uri)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(body))
        .unwrap();
    send(app, r).await
}

/// A gauge or counter from /metrics.
async fn metric(app: &Router, name: &str) -> f64 {
    let text = get(app, "/metrics").await.body;
    let text = text.as_str().unwrap().to_string();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Waits until `name` reads `value` (the model thread runs beside the test).
async fn until(app: &Router, name: &str, value: f64) {
    for _ in 0..500 {
        if metric(app, name).await == value {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{name} never reached {value}: {}", metric(app, name).await);
}

/// Waits until `name` reads `value` or more.
async fn until_at_least(app: &Router, name: &str, value: f64) {
    for _ in 0..500 {
        if metric(app, name).await >= value {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{name} never reached {value}: {}", metric(app, name).await);
}

fn error(answer: &Answer) -> &str {
    answer.body["error"].as_str().unwrap_or_default()
}

// ------------------------------------------------------------------ the queue

/// The class probabilities of a classification's answer, by label.
fn probabilities(answer: &Answer) -> Vec<(String, f64)> {
    answer.body["predictions"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", answer.body))
        .iter()
        .map(|p| {
            let label = p["label"].as_str().unwrap().to_string();
            (label, p["probability"].as_f64().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_classification_with_more_prompts_than_the_queue_goes_in_parts_and_is_kept() {
    let f = fixture(4);
    let red = f.photos.path().join("red.png");
    let labels = [
        ("labels", "red,green,blue,white"),
        ("templates", "imagenet"),
    ];
    // The image and 4 × 7 prompts: 29 items through a queue of 4.
    let first = post_form(&f.app, "/v1/classify", &labels, Some(&red)).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["predictions"][0]["label"], "red");
    assert_eq!(metric(&f.app, "seer_batch_items").await, 29.0);
    assert_eq!(metric(&f.app, "seer_queue_rejections").await, 0.0);
    assert_eq!(metric(&f.app, "seer_classify_prompts_kept").await, 28.0);
    until(&f.app, "seer_queue_depth", 0.0).await;
    // The same as a single request on a queue that holds it all.
    let roomy = fixture(64);
    let whole = post_form(&roomy.app, "/v1/classify", &labels, Some(&red)).await;
    assert_eq!(whole.status, 200, "{}", whole.body);
    assert_eq!(probabilities(&first), probabilities(&whole));

    // The same labels again: only the image is embedded.
    let again = post_form(&f.app, "/v1/classify", &labels, Some(&red)).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(probabilities(&again), probabilities(&first));
    assert_eq!(metric(&f.app, "seer_batch_items").await, 30.0);
    // Prompts are kept one by one: the same labels in another order embed
    // only the image; other templates embed their prompts, once each (the
    // repeated label adds none).
    let blue = f.photos.path().join("blue.png");
    for (fields, new_prompts) in [
        (
            [
                ("labels", "green,red,blue,white"),
                ("templates", "imagenet"),
            ],
            0.0,
        ),
        (
            [
                ("labels", "red,green,blue,white,red"),
                ("templates", "default"),
            ],
            4.0,
        ),
    ] {
        let before = metric(&f.app, "seer_batch_items").await;
        let other = post_form(&f.app, "/v1/classify", &fields, Some(&blue)).await;
        assert_eq!(other.status, 200, "{}", other.body);
        assert_eq!(other.body["predictions"][0]["label"], "blue");
        assert_eq!(
            metric(&f.app, "seer_batch_items").await,
            before + 1.0 + new_prompts
        );
    }

    // A queue of one place takes the image, then each prompt in turn.
    let one = fixture(1);
    let answer = post_form(&one.app, "/v1/classify", &labels, Some(&red)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(probabilities(&answer), probabilities(&first));
}

/// A first classification that outlasts the request timeout (504) keeps the
/// prompts it embedded: retries go on from there and one gets through, where
/// starting over each time would never finish.
#[tokio::test(flavor = "multi_thread")]
async fn a_classification_that_timed_out_is_continued_by_its_retry() {
    // 28 prompts of 40 ms each (1.1 s of work) against a 300 ms timeout.
    let f = fixture_timing_out_after(4, Duration::from_millis(300));
    let red = f.photos.path().join("red.png");
    let labels = [
        ("labels", "slow red,slow green,slow blue,slow white"),
        ("templates", "imagenet"),
    ];
    let mut timed_out = 0;
    let answer = loop {
        let answer = post_form(&f.app, "/v1/classify", &labels, Some(&red)).await;
        if answer.status != StatusCode::GATEWAY_TIMEOUT {
            break answer;
        }
        timed_out += 1;
        assert!(timed_out < 20, "no retry got through");
        // Let what the dropped request queued drain before the retry, and
        // its parts in flight be kept: every item the model took but one
        // image per request is a kept prompt.
        until(&f.app, "seer_queue_depth", 0.0).await;
        let items = metric(&f.app, "seer_batch_items").await;
        until_at_least(
            &f.app,
            "seer_classify_prompts_kept",
            items - timed_out as f64,
        )
        .await;
    };
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(timed_out >= 1, "the first request should time out");
    assert_eq!(answer.body["predictions"][0]["label"], "slow red");
    // Every prompt embedded once, even those a dropped request had in
    // flight: only the images of the dropped requests are lost.
    let items = metric(&f.app, "seer_batch_items").await;
    assert!(
        items <= (28 + timed_out + 1) as f64,
        "{items} items for 28 prompts and {timed_out} timeouts"
    );
}

/// The parts a classification had queued when it timed out are computed after
/// its 504 and kept all the same: its retry embeds none of their prompts.
#[tokio::test(flavor = "multi_thread")]
async fn the_parts_a_timed_out_classification_had_in_flight_are_kept() {
    let f = fixture_timing_out_after(5, Duration::from_secs(1));
    // The model thread is held busy by "block" until the classification has
    // timed out (that embedding times out too; the test does not need it).
    let app = f.app.clone();
    let blocked = tokio::spawn(async move { embed(&app, json!({ "texts": ["block"] })).await });
    until(&f.app, "seer_batches", 1.0).await;
    until(&f.app, "seer_queue_depth", 0.0).await;
    let red = f.photos.path().join("red.png");
    let labels = [
        ("labels", "red,green,blue,white"),
        ("templates", "imagenet"),
    ];
    // 28 prompts through a queue of 5 go in parts of 2: the image and two
    // parts are queued when it times out, the third part waiting for room.
    let dropped = post_form(&f.app, "/v1/classify", &labels, Some(&red)).await;
    assert_eq!(
        dropped.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        dropped.body
    );
    assert_eq!(metric(&f.app, "seer_queue_depth").await, 5.0);
    assert_eq!(metric(&f.app, "seer_classify_prompts_kept").await, 0.0);

    // The model computes them after the request is gone; their 4 prompts
    // are kept.
    f.latch.open();
    blocked.await.unwrap();
    until(&f.app, "seer_queue_depth", 0.0).await;
    until(&f.app, "seer_classify_prompts_kept", 4.0).await;
    assert_eq!(metric(&f.app, "seer_batch_items").await, 6.0);

    // The retry embeds its image and the 24 prompts never queued, no more.
    let retry = post_form(&f.app, "/v1/classify", &labels, Some(&red)).await;
    assert_eq!(retry.status, 200, "{}", retry.body);
    assert_eq!(retry.body["predictions"][0]["label"], "red");
    assert_eq!(metric(&f.app, "seer_batch_items").await, 6.0 + 1.0 + 24.0);
    assert_eq!(metric(&f.app, "seer_classify_prompts_kept").await, 28.0);
    // The same answer as one request on a queue that holds it all.
    let roomy = fixture(64);
    let whole = post_form(&roomy.app, "/v1/classify", &labels, Some(&red)).await;
    assert_eq!(whole.status, 200, "{}", whole.body);
    assert_eq!(probabilities(&retry), probabilities(&whole));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_with_more_items_than_the_queue_holds_is_a_400_that_says_the_limit() {
    let f = fixture(4);
    let red = f.photos.path().join("red.png");
    // The image and three prompts: four items, as many as the queue holds.
    let fits = post_form(
        &f.app,
        "/v1/classify",
        &[("labels", "red,green,blue")],
        Some(&red),
    )
    .await;
    assert_eq!(fits.status, 200, "{}", fits.body);
    assert_eq!(fits.body["predictions"][0]["label"], "red");

    let two = embed(&f.app, json!({ "texts": ["a", "b", "c", "d", "e"] })).await;
    assert_eq!(two.status, 400, "{}", two.body);
    assert!(
        error(&two).contains("5 texts and 0 images") && error(&two).contains("at most 4"),
        "{}",
        two.body
    );
    let fits = embed(&f.app, json!({ "texts": ["a", "b", "c", "d"] })).await;
    assert_eq!(fits.status, 200, "{}", fits.body);
    // Refusing what never fits is no sign of load.
    assert_eq!(metric(&f.app, "seer_queue_rejections").await, 0.0);
    assert_eq!(metric(&f.app, "seer_queue_depth").await, 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_queue_refuses_a_whole_request_and_queues_none_of_it() {
    let f = fixture(3);
    // The model thread is held busy by "block"; its place is free once taken.
    let app = f.app.clone();
    let blocked = tokio::spawn(async move { embed(&app, json!({ "texts": ["block"] })).await });
    until(&f.app, "seer_batches", 1.0).await;
    until(&f.app, "seer_queue_depth", 0.0).await;
    // Two items wait in the queue of three.
    let app = f.app.clone();
    let waiting = tokio::spawn(async move { embed(&app, json!({ "texts": ["a", "b"] })).await });
    until(&f.app, "seer_queue_depth", 2.0).await;
    // Two more do not fit: 503 to retry, and neither is queued.
    let busy = embed(&f.app, json!({ "texts": ["c", "d"] })).await;
    assert_eq!(busy.status, 503, "{}", busy.body);
    assert_eq!(busy.headers["retry-after"], "1");
    assert_eq!(metric(&f.app, "seer_queue_depth").await, 2.0);
    assert_eq!(metric(&f.app, "seer_queue_rejections").await, 1.0);
    // A classification (the image and two prompts) is refused whole too.
    let red = f.photos.path().join("red.png");
    let busy = post_form(
        &f.app,
        "/v1/classify",
        &[("labels", "red,green")],
        Some(&red),
    )
    .await;
    assert_eq!(busy.status, 503, "{}", busy.body);
    assert_eq!(metric(&f.app, "seer_queue_depth").await, 2.0);
    // One still fits.
    let app = f.app.clone();
    let one = tokio::spawn(async move { embed(&app, json!({ "texts": ["e"] })).await });
    until(&f.app, "seer_queue_depth", 3.0).await;

    f.latch.open();
    for job in [blocked, waiting, one] {
        let answer = job.await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    until(&f.app, "seer_queue_depth", 0.0).await;
    // Every item computed was asked for by a request that got its answer.
    assert_eq!(metric(&f.app, "seer_batch_items").await, 4.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_that_fails_before_queueing_gives_its_room_back() {
    let f = fixture(2);
    let bad = embed(
        &f.app,
        json!({ "texts": ["red"], "images": [base64_of(b"not an image")] }),
    )
    .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert_eq!(metric(&f.app, "seer_queue_depth").await, 0.0);
    // Nothing of it was computed.
    assert_eq!(metric(&f.app, "seer_batch_items").await, 0.0);
    let ok = embed(&f.app, json!({ "texts": ["red", "blue"] })).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

// ------------------------------------------------------------------ methods and content types

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_method_says_which_methods_the_route_allows() {
    let f = fixture(8);
    let answer = send(
        &f.app,
        request("DELETE", "/v1/search").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(answer.status, 405);
    let allow = answer.headers["allow"].to_str().unwrap().to_string();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    assert_eq!(
        error(&answer),
        format!("method not allowed here; allowed: {allow}")
    );
    assert_eq!(answer.headers["x-content-type-options"], "nosniff");
    let answer = send(
        &f.app,
        request("POST", "/healthz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(answer.status, 405);
    assert!(
        error(&answer).ends_with("allowed: GET,HEAD"),
        "{}",
        answer.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn form_routes_answer_415_to_other_content_types_and_400_to_bad_forms() {
    let f = fixture(8);
    for (uri, content_type, body) in [
        ("/v1/classify", Some("application/json"), "{}"),
        (
            "/v1/search",
            Some("application/x-www-form-urlencoded"),
            "q=cat",
        ),
        ("/v1/caption", Some("text/plain"), "a cat"),
        ("/v1/detect", None, ""),
    ] {
        let mut r = request("POST", uri);
        if let Some(ct) = content_type {
            r = r.header("content-type", ct);
        }
        let answer = send(&f.app, r.body(Body::from(body)).unwrap()).await;
        assert_eq!(answer.status, 415, "{uri}: {}", answer.body);
        let message = error(&answer);
        assert!(
            message.contains(&format!("POST {uri} takes a multipart/form-data body"))
                && message.contains(content_type.unwrap_or("no Content-Type")),
            "{message}"
        );
    }
    // The right type with no boundary, or a body that breaks off: a bad form.
    let answer = send(
        &f.app,
        request("POST", "/v1/classify")
            .header("content-type", "multipart/form-data")
            .body(Body::from("x"))
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(
        error(&answer).starts_with("bad multipart body"),
        "{}",
        answer.body
    );
    let answer = send(
        &f.app,
        request("POST", "/v1/classify")
            .header("content-type", "Multipart/Form-Data; boundary=xyz")
            .body(Body::from(
                "--xyz\r\nContent-Disposition: form-data; name=\"labels\"\r\n\r\ncat",
            ))
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
}

// ------------------------------------------------------------------ search parameters

/// A server started before anything was indexed: a search is a 409 that says
/// to index first (it was a 500, as if the server had failed), and the index
/// status is zeros, not an error (the page shows how to start from it).
#[tokio::test(flavor = "multi_thread")]
async fn a_server_with_no_index_yet_says_so_and_reports_an_empty_status() {
    let latch = Arc::new(Latch::default());
    let index = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        index_dir: index.path().to_path_buf(),
        ..Default::default()
    };
    let app = app(vec![encoder(&latch)], &config);
    let answer = get(&app, "/v1/search?q=cat").await;
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.body);
    assert!(
        error(&answer).contains("no index here yet"),
        "{}",
        answer.body
    );
    assert!(error(&answer).contains("seer index"), "{}", answer.body);
    let status = get(&app, "/v1/index/status").await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.body);
    assert_eq!(
        (
            &status.body["files"],
            &status.body["vectors"],
            &status.body["failures"]
        ),
        (&json!(0), &json!(0), &json!(0)),
        "{}",
        status.body
    );
}

/// A failure's `error` is its cause alone, as `seer status --json` gives it:
/// its file is the `path` beside it (the error started with the path again).
#[tokio::test(flavor = "multi_thread")]
async fn the_status_lists_each_failure_by_path_and_cause() {
    let latch = Arc::new(Latch::default());
    let photos = tempfile::tempdir().unwrap();
    std::fs::write(photos.path().join("empty.jpg"), b"").unwrap();
    std::fs::write(photos.path().join("junk.png"), b"not a png").unwrap();
    let index = tempfile::tempdir().unwrap();
    let mut store = seer_index::Store::open(index.path()).unwrap();
    let options = seer_index::IndexOptions {
        roots: vec![photos.path().to_path_buf()],
        include_hidden: false,
        encoding: seer_index::Encoding::F32,
        embed: Default::default(),
        ann_threshold: usize::MAX,
        videos: None,
    };
    seer_index::index(&mut store, &encoder(&latch), &options, &mut |_| {}).unwrap();
    let config = ServerConfig {
        index_dir: index.path().to_path_buf(),
        ..Default::default()
    };
    let app = app(vec![encoder(&latch)], &config);
    let status = get(&app, "/v1/index/status").await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.body);
    assert_eq!(status.body["failures"], 2, "{}", status.body);
    let mut listed: Vec<(String, String)> = status.body["failure_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let path = f["path"].as_str().unwrap().to_string();
            (path, f["error"].as_str().unwrap().to_string())
        })
        .collect();
    listed.sort();
    let root = photos.path().display();
    assert_eq!(listed[0].0, format!("{root}/empty.jpg"), "{listed:?}");
    assert_eq!(listed[0].1, "file is empty (0 bytes)", "{listed:?}");
    assert_eq!(listed[1].0, format!("{root}/junk.png"), "{listed:?}");
    assert!(!listed[1].1.contains("junk.png"), "{listed:?}");
    assert!(
        !listed[1].1.is_empty() && !listed[1].1.starts_with(':'),
        "{listed:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn search_pages_scores_and_dates_out_of_range_are_400() {
    let f = fixture(8);
    for (query, expected) in [
        ("k=0", "k must be 1 to 1000, not 0"),
        ("k=1001", "k must be 1 to 1000, not 1001"),
        ("k=20000&offset=0", "k must be 1 to 1000"),
        ("k=5&offset=9996", "offset + k must be at most 10000"),
        (
            "offset=9990",
            "offset + k must be at most 10000 (offset 9990, k 20)",
        ),
        (
            "min_score=NaN",
            "min_score must be a cosine similarity, from -1 to 1",
        ),
        ("min_score=inf", "from -1 to 1, not inf"),
        ("min_score=-infinity", "from -1 to 1, not -inf"),
        ("min_score=1.5", "from -1 to 1, not 1.5"),
        ("min_score=-1.01", "from -1 to 1, not -1.01"),
        ("from=2022-02-30", "not '2022-02-30': 2022-02 has 28 days"),
        ("from=2022-02-31", "2022-02 has 28 days"),
        ("to=2022-04-31", "to must be a date"),
        ("from=2022-02-29", "2022-02 has 28 days"),
        ("from=1900-02-29T10:00", "1900-02 has 28 days"),
        ("from=2022-02-32", "from must be a date"),
        ("from=2022-13-45", "from must be a date"),
    ] {
        let answer = get(&f.app, &format!("/v1/search?q=red&{query}")).await;
        assert_eq!(answer.status, 400, "{query}: {}", answer.body);
        assert!(
            error(&answer).contains(expected),
            "{query}: {}",
            answer.body
        );
    }
    // The same rules for a search by upload.
    let red = f.photos.path().join("red.png");
    for fields in [
        [("k", "0"), ("min_score", "0")],
        [("k", "3"), ("min_score", "NaN")],
        [("k", "3"), ("from", "2021-02-29")],
    ] {
        let answer = post_form(&f.app, "/v1/search", &fields, Some(&red)).await;
        assert_eq!(answer.status, 400, "{fields:?}: {}", answer.body);
    }
    for query in [
        "k=1",
        "k=1000",
        "k=5&offset=9995",
        "min_score=-1",
        "min_score=0.5",
        "from=2024-02-29&to=2024-02-29",
        "from=2000-02-29",
        "to=2022-04-30%2023:59",
        "from=2022-12-31T00:00:00",
    ] {
        let answer = get(&f.app, &format!("/v1/search?q=red&{query}")).await;
        assert_eq!(answer.status, 200, "{query}: {}", answer.body);
    }
    let one = get(&f.app, "/v1/search?q=red&k=1").await;
    assert_eq!(one.body["results"].as_array().unwrap().len(), 1);
    assert_eq!(one.body["more"], true);
}

#[test]
fn the_openapi_document_states_the_search_limits() {
    let doc = crate::openapi::document();
    let params = doc["paths"]["/v1/search"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let param = |name: &str| params.iter().find(|p| p["name"] == name).unwrap().clone();
    assert_eq!(
        (
            param("k")["schema"]["minimum"].as_u64(),
            param("k")["schema"]["maximum"].as_u64()
        ),
        (Some(1), Some(1000))
    );
    assert_eq!(param("offset")["schema"]["maximum"].as_u64(), Some(9999));
    assert!(param("min_score")["description"]
        .as_str()
        .unwrap()
        .contains("finite"));
    assert!(param("from")["description"]
        .as_str()
        .unwrap()
        .contains("calendar"));
    let classify = doc["paths"]["/v1/classify"]["post"]["summary"]
        .as_str()
        .unwrap();
    assert!(classify.contains("--queue"), "{classify}");
}

// ------------------------------------------------------------------ hostile clients

#[tokio::test(flavor = "multi_thread")]
async fn texts_longer_than_the_limit_are_400_before_they_are_queued() {
    let f = fixture(8);
    let long = "a".repeat(1001);
    let most = "a".repeat(1000);
    let answer = embed(&f.app, json!({ "texts": ["red", long] })).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(error(&answer).contains("\"texts[1]\" is longer than 1000 characters"));
    assert_eq!(embed(&f.app, json!({ "texts": [most] })).await.status, 200);

    let answer = get(&f.app, &format!("/v1/search?q={long}")).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(error(&answer).contains("\"q\" is longer than 1000 characters"));
    assert_eq!(
        get(&f.app, &format!("/v1/search?q={most}")).await.status,
        200
    );
    let red = f.photos.path().join("red.png");
    let answer = post_form(&f.app, "/v1/search", &[("q", &long)], Some(&red)).await;
    assert_eq!(answer.status, 400, "{}", answer.body);

    let labels = format!("red,{long}");
    let answer = post_form(&f.app, "/v1/classify", &[("labels", &labels)], Some(&red)).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(error(&answer).contains("is longer than 1000 characters"));
    let labels = format!("red,{most}");
    let answer = post_form(&f.app, "/v1/classify", &[("labels", &labels)], Some(&red)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tokenless_server_checks_every_name_a_request_is_addressed_by() {
    let f = fixture(8);
    let absolute = request("GET", "http://evil.example/v1/search?q=red")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&f.app, absolute).await.status, 403);
    let two_hosts = Request::builder()
        .uri("/v1/search?q=red")
        .header("host", "localhost")
        .header("host", "evil.example")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&f.app, two_hosts).await.status, 403);
    let local = request("GET", "http://localhost:7860/v1/search?q=red")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&f.app, local).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_form_field_that_is_not_utf8_is_400_not_reinterpreted() {
    let f = fixture(8);
    let red = std::fs::read(f.photos.path().join("red.png")).unwrap();
    for value in [
        &b"\xff\xfered,blue"[..],
        b"red,\xc3(",
        b"\xef\xbb\xbfred,blue\xff",
    ] {
        let boundary = "b";
        let mut body =
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"labels\"\r\n\r\n")
                .into_bytes();
        body.extend(value);
        body.extend(format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n\r\n").as_bytes());
        body.extend(&red);
        body.extend(format!("\r\n--{boundary}--\r\n").as_bytes());
        let r = request("POST", "/v1/classify")
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(Body::from(body))
            .unwrap();
        let answer = send(&f.app, r).await;
        assert_eq!(answer.status, 400, "{value:?}: {}", answer.body);
        assert!(
            error(&answer).contains("field labels is not UTF-8"),
            "{}",
            answer.body
        );
    }
}

/// Percent-decoded bytes that are not UTF-8 were read with U+FFFD in their
/// place, and the search answered 200 for a query nobody wrote.
#[tokio::test(flavor = "multi_thread")]
async fn a_query_parameter_that_is_not_utf8_is_400_naming_it() {
    let f = fixture(8);
    for (uri, name) in [
        ("/v1/search?q=%FF%FE", "q"),
        ("/v1/search?q=red&path=%C3(", "path"),
        ("/v1/search?q=red&from=2024-01-01%ED%A0%80", "from"),
        ("/v1/search?q=red&nothing=%FF", "nothing"),
        ("/v1/duplicates?threshold=0.9%FF", "threshold"),
        ("/v1/images/1/thumbnail?t=%E2%82", "t"),
    ] {
        let answer = get(&f.app, uri).await;
        assert_eq!(answer.status, 400, "{uri}: {}", answer.body);
        assert!(
            error(&answer).contains(&format!("query parameter {name} is not UTF-8")),
            "{uri}: {}",
            answer.body
        );
    }
    let answer = get(&f.app, "/v1/search?q=red&%FF=1").await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(
        error(&answer).contains("name is not UTF-8"),
        "{}",
        answer.body
    );
    // UTF-8 percent-encoded, `+` for a space, a `%` that encodes nothing.
    for uri in [
        "/v1/search?q=%C3%A9t%C3%A9+red",
        "/v1/search?q=red+100%",
        "/v1/search?q=red%zz&k=2",
    ] {
        let answer = get(&f.app, uri).await;
        assert_eq!(answer.status, 200, "{uri}: {}", answer.body);
    }
}

/// A glob that cannot be compiled is an error about the `path` parameter,
/// not the command line's `--path`.
#[tokio::test(flavor = "multi_thread")]
async fn a_bad_path_glob_names_the_path_parameter() {
    let f = fixture(8);
    let red = f.photos.path().join("red.png");
    let by_query = get(&f.app, "/v1/search?q=red&path=%5B").await;
    let by_form = post_form(&f.app, "/v1/search", &[("path", "[")], Some(&red)).await;
    for answer in [by_query, by_form] {
        assert_eq!(answer.status, 400, "{}", answer.body);
        let e = error(&answer);
        assert!(e.starts_with("path must be a glob"), "{e}");
        assert!(e.contains("'['") && e.contains("unclosed"), "{e}");
        assert!(!e.contains("--path"), "{e}");
    }
    let good = get(&f.app, "/v1/search?q=red&path=*.png").await;
    assert_eq!(good.status, 200, "{}", good.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_form_field_given_twice_is_400_like_a_repeated_query_parameter() {
    let f = fixture(8);
    let red = f.photos.path().join("red.png");
    // The query string's answer, which the forms follow.
    let query = get(&f.app, "/v1/search?q=red&k=1&k=3").await;
    assert_eq!(query.status, 400, "{}", query.body);
    assert!(
        error(&query).contains("duplicate field `k`"),
        "{}",
        query.body
    );
    for (uri, fields, name) in [
        (
            "/v1/search",
            vec![("q", "red"), ("k", "1"), ("k", "3")],
            "k",
        ),
        ("/v1/search", vec![("q", "red"), ("q", "blue")], "q"),
        (
            "/v1/classify",
            vec![("labels", "red,blue"), ("labels", "green")],
            "labels",
        ),
        (
            "/v1/classify",
            vec![
                ("labels", "red"),
                ("templates", "default"),
                ("templates", "imagenet"),
            ],
            "templates",
        ),
    ] {
        let answer = post_form(&f.app, uri, &fields, Some(&red)).await;
        assert_eq!(answer.status, 400, "{uri} {fields:?}: {}", answer.body);
        assert!(
            error(&answer).contains(&format!("duplicate field `{name}`")),
            "{uri} {fields:?}: {}",
            answer.body
        );
    }
    // Two uploads are one too many as well.
    let boundary = "b";
    let png = std::fs::read(&red).unwrap();
    let mut body = Vec::new();
    for _ in 0..2 {
        body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n\r\n").as_bytes());
        body.extend(&png);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").as_bytes());
    let r = request("POST", "/v1/search")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(body))
        .unwrap();
    let answer = send(&f.app, r).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(
        error(&answer).contains("duplicate field `image`"),
        "{}",
        answer.body
    );
    // Each field once is still answered.
    let once = post_form(
        &f.app,
        "/v1/search",
        &[("q", "red"), ("k", "1")],
        Some(&red),
    )
    .await;
    assert_eq!(once.status, 200, "{}", once.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tokenless_server_answers_no_request_another_page_made() {
    let f = fixture(8);
    let with = |uri: &str, pairs: &[(&str, &str)]| {
        let mut r = request("GET", uri);
        for (name, value) in pairs {
            r = r.header(*name, *value);
        }
        r.body(Body::empty()).unwrap()
    };
    let image = [
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-mode", "no-cors"),
        ("sec-fetch-dest", "image"),
    ];
    // An <img> on another site (or another localhost port) probing ids, a
    // search it triggers: refused, whether the id exists or not.
    for uri in [
        "/v1/images/1/thumbnail",
        "/v1/images/99999/thumbnail",
        "/v1/images/1",
        "/v1/search?q=red",
        "/healthz",
    ] {
        for site in ["cross-site", "same-site"] {
            let mut pairs = image;
            pairs[0].1 = site;
            let answer = send(&f.app, with(uri, &pairs)).await;
            assert_eq!(answer.status, 403, "{uri} {site}: {}", answer.body);
            assert!(
                error(&answer).contains("Sec-Fetch-Site"),
                "{uri}: {}",
                answer.body
            );
        }
    }
    // The page's own requests, a typed URL, curl.
    for site in [Some("same-origin"), Some("none"), None] {
        let pairs: Vec<_> = site.map(|s| ("sec-fetch-site", s)).into_iter().collect();
        let answer = send(&f.app, with("/v1/images/1/thumbnail", &pairs)).await;
        assert_eq!(answer.status, 200, "{site:?}: {}", answer.body);
        let answer = send(&f.app, with("/v1/search?q=red", &pairs)).await;
        assert_eq!(answer.status, 200, "{site:?}: {}", answer.body);
    }
    // A link from elsewhere opens the page in a tab of its own.
    let link = [
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-dest", "document"),
        ("sec-fetch-user", "?1"),
    ];
    let answer = send(&f.app, with("/", &link)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let answer = send(&f.app, with("/v1/images/1", &link)).await;
    assert_eq!(answer.status, 403, "{}", answer.body);
}
