//! The caption, ask and match routes, captions in search answers, hybrid
//! search and reranking over HTTP, with small fake models whose output follows
//! the colour of solid-colour test photos (the real BLIP models are tested end
//! to end by the command line's tests).

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use seer_engine::{
    Captioner, GenerateOptions, Generated, ImageEncoder, ImageTextMatcher, LoadedModel, MatchScore,
    PixelInput, QuestionAnswerer, ScoreRule, TextEncoder,
};
use seer_image::{DecodedImage, PreprocessConfig};
use serde_json::Value;
use tower::ServiceExt;

use crate::{app, app_with, ServerConfig, TaskModels};

// ------------------------------------------------------------------ fakes

const COLOURS: [&str; 3] = ["red", "green", "blue"];

fn mean_rgb(image: &DecodedImage) -> Vec<f32> {
    let rgb = image.to_rgb();
    let n = (rgb.width() * rgb.height()).max(1) as f32;
    let mut sum = [0f32; 3];
    for p in rgb.pixels() {
        for (s, v) in sum.iter_mut().zip(p.0) {
            *s += v as f32 / 255.0;
        }
    }
    sum.iter().map(|s| s / n).collect()
}

fn colour(rgb: &[f32]) -> &'static str {
    let max = rgb.iter().cloned().fold(f32::MIN, f32::max);
    COLOURS[rgb.iter().position(|&c| c == max).unwrap_or(2)]
}

pub(crate) fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
    v.iter().map(|x| x / n).collect()
}

/// The colours a text names, in its order.
fn named(text: &str) -> Vec<&'static str> {
    let mut found: Vec<(usize, &'static str)> = COLOURS
        .iter()
        .filter_map(|c| text.find(c).map(|at| (at, *c)))
        .collect();
    found.sort();
    found.into_iter().map(|(_, c)| c).collect()
}

/// Images embed as their mean colour; a text as the colours it names, the
/// last one most (a bag of words that blurs who does what to whom).
pub(crate) struct FakeImage(pub(crate) PreprocessConfig);

impl ImageEncoder for FakeImage {
    fn embed_dim(&self) -> usize {
        3
    }
    fn preprocess_config(&self) -> &PreprocessConfig {
        &self.0
    }
    fn pixels_len(&self) -> usize {
        3
    }
    fn preprocess(&self, image: &DecodedImage) -> Vec<f32> {
        mean_rgb(image)
    }
    fn embed_pixels(&self, p: Vec<f32>, n: usize, _: bool) -> seer_engine::Result<Vec<Vec<f32>>> {
        Ok((0..n).map(|i| unit(&p[i * 3..i * 3 + 3])).collect())
    }
}

struct FakeText;

impl TextEncoder for FakeText {
    fn embed_dim(&self) -> usize {
        3
    }
    fn tokenize(&self, text: &str) -> Vec<u32> {
        text.bytes().map(u32::from).collect()
    }
    fn embed_text_batch(&self, texts: &[String], _: bool) -> seer_engine::Result<Vec<Vec<f32>>> {
        Ok(texts
            .iter()
            .map(|t| {
                let named = named(t);
                let v: Vec<f32> = COLOURS
                    .iter()
                    .map(|c| match named.iter().position(|n| n == c) {
                        Some(i) if i + 1 == named.len() => 1.0,
                        Some(_) => 0.5,
                        None => 0.1,
                    })
                    .collect();
                unit(&v)
            })
            .collect())
    }
    fn score_rule(&self) -> ScoreRule {
        ScoreRule::Softmax { scale: 100.0 }
    }
}

/// "a COLOUR square", after the prompt when there is one.
struct FakeCaptioner;

impl PixelInput for FakeCaptioner {
    fn preprocess(&self, image: &DecodedImage) -> Vec<f32> {
        mean_rgb(image)
    }
    fn pixels_len(&self) -> usize {
        3
    }
}

impl Captioner for FakeCaptioner {
    fn caption(
        &self,
        pixels: Vec<f32>,
        n: usize,
        prompt: Option<&str>,
        _: &GenerateOptions,
    ) -> seer_engine::Result<Vec<Generated>> {
        Ok((0..n)
            .map(|i| Generated {
                text: format!(
                    "{}a {} square",
                    prompt.map(|p| format!("{p} ")).unwrap_or_default(),
                    colour(&pixels[i * 3..i * 3 + 3])
                ),
                tokens: vec![1, 2, 3],
            })
            .collect())
    }
}

/// Answers "what colour" questions with the colour, anything else "yes".
struct FakeAnswerer;

impl PixelInput for FakeAnswerer {
    fn preprocess(&self, image: &DecodedImage) -> Vec<f32> {
        mean_rgb(image)
    }
    fn pixels_len(&self) -> usize {
        3
    }
}

impl QuestionAnswerer for FakeAnswerer {
    fn answer(
        &self,
        pixels: Vec<f32>,
        n: usize,
        questions: &[String],
        _: &GenerateOptions,
    ) -> seer_engine::Result<Vec<Generated>> {
        Ok((0..n)
            .map(|i| Generated {
                text: match questions[i].contains("colour") {
                    true => colour(&pixels[i * 3..i * 3 + 3]).into(),
                    false => "yes".into(),
                },
                tokens: vec![],
            })
            .collect())
    }
}

/// A match when the text names the image's colour first (it reads the
/// order), half one when it names it later.
struct FakeMatcher;

impl PixelInput for FakeMatcher {
    fn preprocess(&self, image: &DecodedImage) -> Vec<f32> {
        mean_rgb(image)
    }
    fn pixels_len(&self) -> usize {
        3
    }
}

impl ImageTextMatcher for FakeMatcher {
    fn match_texts(
        &self,
        pixels: Vec<f32>,
        n: usize,
        texts: &[String],
    ) -> seer_engine::Result<Vec<MatchScore>> {
        Ok((0..n)
            .map(|i| {
                let at = named(&texts[i])
                    .iter()
                    .position(|c| *c == colour(&pixels[i * 3..i * 3 + 3]));
                let p = match at {
                    Some(0) => 0.9,
                    Some(_) => 0.5,
                    None => 0.1,
                };
                MatchScore {
                    itm_probability: p,
                    similarity: p / 2.0,
                }
            })
            .collect())
    }
}

fn encoder() -> LoadedModel {
    LoadedModel::encoders(
        "fake-clip".into(),
        "fake",
        Some(Arc::new(FakeImage(PreprocessConfig::openai_clip(224)))),
        Some(Arc::new(FakeText)),
    )
}

fn head(id: &str, set: impl FnOnce(&mut LoadedModel)) -> LoadedModel {
    let mut m = LoadedModel::encoders(id.into(), "fake-blip", None, None);
    set(&mut m);
    m
}

fn tasks() -> TaskModels {
    TaskModels {
        caption: Some(head("fake-caption", |m| {
            m.captioner = Some(Arc::new(FakeCaptioner))
        })),
        vqa: Some(head("fake-vqa", |m| {
            m.answerer = Some(Arc::new(FakeAnswerer))
        })),
        matcher: Some(head("fake-itm", |m| {
            m.matcher = Some(Arc::new(FakeMatcher))
        })),
        ..Default::default()
    }
}

// ------------------------------------------------------------------ the index

fn write_png(path: &Path, rgb: [u8; 3], variant: u8) {
    let mut image = seer_image::image::RgbImage::from_pixel(8, 8, seer_image::image::Rgb(rgb));
    image.put_pixel(0, 0, seer_image::image::Rgb([variant, variant, variant]));
    image.save(path).unwrap();
}

struct Fixture {
    photos: tempfile::TempDir,
    index: tempfile::TempDir,
}

/// Red, green and blue photos indexed with the fake encoder; captioned when
/// `captions`.
fn fixture(captions: bool) -> Fixture {
    let photos = tempfile::tempdir().unwrap();
    write_png(&photos.path().join("red.png"), [220, 20, 20], 1);
    write_png(&photos.path().join("green.png"), [20, 220, 20], 2);
    write_png(&photos.path().join("blue.png"), [20, 20, 220], 3);
    let index = tempfile::tempdir().unwrap();
    let mut store = seer_index::Store::open(index.path()).unwrap();
    let roots = vec![photos.path().to_path_buf()];
    let options = seer_index::IndexOptions {
        roots: roots.clone(),
        include_hidden: false,
        encoding: seer_index::Encoding::F32,
        embed: Default::default(),
        ann_threshold: usize::MAX,
        videos: None,
    };
    seer_index::index(&mut store, &encoder(), &options, &mut |_| {}).unwrap();
    if captions {
        let lock = seer_index::IndexLock::try_acquire(index.path()).unwrap();
        let options = seer_index::CaptionOptions {
            roots,
            batch_size: 2,
            limits: Default::default(),
            generate: Default::default(),
            ffmpeg: None,
        };
        let captioner = tasks().caption.unwrap();
        seer_index::caption_locked(&mut store, &lock, &captioner, &options, &mut |_| {}).unwrap();
    }
    Fixture { photos, index }
}

fn config(index: &Path) -> ServerConfig {
    ServerConfig {
        index_dir: index.to_path_buf(),
        max_wait: std::time::Duration::from_millis(1),
        ann_threshold: usize::MAX,
        ..Default::default()
    }
}

// ------------------------------------------------------------------ requests

async fn call(app: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn get(app: &Router, uri: &str) -> (StatusCode, Value) {
    let request = Request::get(uri)
        .header("host", "127.0.0.1")
        .body(Body::empty())
        .unwrap();
    call(app, request).await
}

/// A multipart POST of `fields` and, when given, the file `image`.
async fn post(
    app: &Router,
    uri: &str,
    fields: &[(&str, &str)],
    image: Option<&Path>,
) -> (StatusCode, Value) {
    let boundary = "seer-task-test";
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
    let request = Request::post(uri)
        .header("host", "127.0.0.1")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(body))
        .unwrap();
    call(app, request).await
}

/// The id of the indexed photo named `name`, from a search.
async fn id_of(app: &Router, name: &str) -> i64 {
    let (_, found) = get(app, "/v1/search?q=red&k=10&mode=vector").await;
    found["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["path"].as_str().unwrap().ends_with(name))
        .unwrap_or_else(|| panic!("{name} not found: {found}"))["id"]
        .as_i64()
        .unwrap()
}

fn names(answer: &Value) -> Vec<String> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["path"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

// ------------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread")]
async fn caption_ask_and_match_take_an_upload_or_an_indexed_photo() {
    let f = fixture(false);
    let app = app_with(vec![encoder()], tasks(), &config(f.index.path()));
    let green = id_of(&app, "green.png").await;
    let green_id = green.to_string();

    let (code, body) = post(&app, "/v1/caption", &[("id", &green_id)], None).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["caption"], "a green square");
    assert_eq!(
        (body["model"].as_str(), body["id"].as_i64()),
        (Some("fake-caption"), Some(green))
    );
    let red = f.photos.path().join("red.png");
    let (code, body) = post(
        &app,
        "/v1/caption",
        &[("prompt", " a picture of ")],
        Some(&red),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["caption"], "a picture of a red square");
    assert!(body.get("id").is_none());

    let (code, body) = post(
        &app,
        "/v1/ask",
        &[("id", &green_id), ("question", "what colour is it?")],
        None,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        (body["answer"].as_str(), body["question"].as_str()),
        (Some("green"), Some("what colour is it?"))
    );

    // Texts in the order given, each scored against the one image.
    let (code, body) = post(
        &app,
        "/v1/match",
        &[
            ("text", "a blue square"),
            ("text", "a green square"),
            ("texts", "green\n\nred"),
        ],
        None,
    )
    .await;
    assert_eq!(code, 400, "no image: {body}");
    let (code, body) = post(
        &app,
        "/v1/match",
        &[
            ("id", &green_id),
            ("text", "a blue square"),
            ("text", "a green square"),
            ("texts", "green\n\nred"),
        ],
        None,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let matches = body["matches"].as_array().unwrap();
    let got: Vec<(&str, f64)> = matches
        .iter()
        .map(|m| {
            (
                m["text"].as_str().unwrap(),
                m["itm_probability"].as_f64().unwrap(),
            )
        })
        .collect();
    let p = |x: f32| x as f64;
    assert_eq!(
        got,
        [
            ("a blue square", p(0.1)),
            ("a green square", p(0.9)),
            ("green", p(0.9)),
            ("red", p(0.1))
        ]
    );
    assert!(matches.iter().all(|m| m["similarity"].is_number()));

    // What a request gets wrong, said.
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, &'a str)>,
        Option<&'a Path>,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "/v1/caption",
            vec![("id", &green_id)],
            Some(&red),
            400,
            "not both",
        ),
        ("/v1/caption", vec![], None, 400, "\"image\""),
        (
            "/v1/caption",
            vec![("id", "x1")],
            None,
            400,
            "not an image id",
        ),
        (
            "/v1/caption",
            vec![("id", "987654")],
            None,
            404,
            "no indexed image 987654",
        ),
        (
            "/v1/ask",
            vec![("id", &green_id)],
            None,
            400,
            "\"question\"",
        ),
        (
            "/v1/ask",
            vec![("id", &green_id), ("question", "   ")],
            None,
            400,
            "\"question\"",
        ),
        (
            "/v1/match",
            vec![("id", &green_id)],
            None,
            400,
            "1 to 32 texts",
        ),
    ];
    for (uri, fields, image, status, says) in cases {
        let (code, body) = post(&app, uri, &fields, image).await;
        let error = body["error"].as_str().unwrap_or_default();
        assert_eq!(
            (code.as_u16(), error.contains(says)),
            (status, true),
            "{uri} {fields:?}: {body}"
        );
    }
    let long = "x".repeat(1001);
    let (code, body) = post(
        &app,
        "/v1/ask",
        &[("id", &green_id), ("question", &long)],
        None,
    )
    .await;
    assert_eq!(code, 400, "{body}");
    let many: Vec<(&str, &str)> = std::iter::repeat_n(("text", "red"), 33)
        .chain([("id", green_id.as_str())])
        .collect();
    let (code, _) = post(&app, "/v1/match", &many, None).await;
    assert_eq!(code, 400);
    let junk = f.index.path().join("junk.png");
    std::fs::write(&junk, b"not a png").unwrap();
    let (code, _) = post(&app, "/v1/caption", &[], Some(&junk)).await;
    assert_eq!(code, 422);

    // With a token, these routes need it like every /v1 route.
    let guarded = app_with(
        vec![encoder()],
        tasks(),
        &ServerConfig {
            token: Some("s3cret".into()),
            ..config(f.index.path())
        },
    );
    let (code, _) = post(&guarded, "/v1/caption", &[("id", &green_id)], None).await;
    assert_eq!(code, 401);

    let (code, models) = get(&app, "/v1/models").await;
    assert_eq!(code, 200);
    assert_eq!(
        models["tasks"],
        serde_json::json!({ "caption": "fake-caption", "ask": "fake-vqa", "match": "fake-itm", "segment": null, "detect": null })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_without_a_language_model_says_how_to_start_one() {
    let f = fixture(false);
    let app = app(vec![encoder()], &config(f.index.path()));
    let red = f.photos.path().join("red.png");
    for (uri, option) in [
        ("/v1/caption", "--caption-model"),
        ("/v1/ask", "--vqa-model"),
        ("/v1/match", "--match-model"),
    ] {
        let (code, body) = post(&app, uri, &[("question", "q"), ("text", "t")], Some(&red)).await;
        assert_eq!(code, 400, "{uri}: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(option), "{uri}: {error}");
    }
    let (code, body) = get(&app, "/v1/search?q=red&rerank=true").await;
    assert_eq!(code, 400);
    assert!(
        body["error"].as_str().unwrap().contains("--match-model"),
        "{body}"
    );
    let (_, models) = get(&app, "/v1/models").await;
    assert_eq!(
        models["tasks"],
        serde_json::json!({ "caption": null, "ask": null, "match": null, "segment": null, "detect": null })
    );
    // A model given for a head it lacks is refused at start, by name.
    let wrong = TaskModels {
        caption: Some(encoder()),
        ..Default::default()
    };
    let e = wrong.check().unwrap_err().to_string();
    assert!(
        e.contains("--caption-model")
            && e.contains("fake-clip")
            && e.contains("writes no captions"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn search_answers_carry_captions_fuse_words_and_rerank() {
    // Without captions: the answer and its hits are as before captions existed.
    let plain = fixture(false);
    let app_plain = app_with(vec![encoder()], tasks(), &config(plain.index.path()));
    let (code, body) = get(&app_plain, "/v1/search?q=blue&k=3").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.get("mode").is_none(), "{body}");
    for hit in body["results"].as_array().unwrap() {
        for absent in ["caption", "matched", "fused", "bm25", "itm_probability"] {
            assert!(hit.get(absent).is_none(), "{absent} in {hit}");
        }
    }
    let (code, body) = get(&app_plain, "/v1/search?q=blue&mode=hybrid").await;
    assert_eq!(code, 400);
    assert!(
        body["error"].as_str().unwrap().contains("no captions"),
        "{body}"
    );

    let f = fixture(true);
    let app = app_with(vec![encoder()], tasks(), &config(f.index.path()));
    // Auto is hybrid with captions: red and blue are found by their vectors
    // and their captions' words, green by its vector alone (last); every hit
    // carries its caption.
    let (code, body) = get(&app, "/v1/search?q=blue%20red&k=3").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["mode"], "hybrid");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for hit in results {
        let name = hit["path"].as_str().unwrap().rsplit('/').next().unwrap();
        let colour = name.trim_end_matches(".png");
        assert_eq!(hit["caption"], format!("a {colour} square"), "{hit}");
        assert!(
            hit["score"].is_number() && hit["fused"].is_number(),
            "{hit}"
        );
        let matched: Vec<&str> = hit["matched"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap())
            .collect();
        match colour {
            "green" => assert_eq!(matched, ["vector"], "{hit}"),
            _ => assert_eq!(matched, ["vector", "words"], "{hit}"),
        }
    }
    assert_eq!(names(&body)[2], "green.png", "{body}");
    // Vector mode: captions, nothing of the fusion.
    let (_, body) = get(&app, "/v1/search?q=blue&mode=vector&k=1").await;
    assert!(
        body.get("mode").is_none() && body["results"][0].get("matched").is_none(),
        "{body}"
    );
    assert_eq!(body["results"][0]["caption"], "a blue square");
    // Words mode: ranked by BM25, which is the score.
    let (_, body) = get(&app, "/v1/search?q=green&mode=words").await;
    assert_eq!(body["mode"], "words");
    assert_eq!(names(&body), ["green.png"]);
    assert_eq!(body["results"][0]["score"], body["results"][0]["bm25"]);
    for bad in ["mode=sideways", "mode=words&min_score=0.1"] {
        let (code, _) = get(&app, &format!("/v1/search?q=green&{bad}")).await;
        assert_eq!(code, 400, "{bad}");
    }

    // Reranking: the query vector prefers blue, the matching model red.
    let (_, body) = get(&app, "/v1/search?q=red%20beside%20blue&mode=vector&k=3").await;
    assert_eq!(names(&body), ["blue.png", "red.png", "green.png"]);
    let (code, body) = get(
        &app,
        "/v1/search?q=red%20beside%20blue&mode=vector&k=2&rerank=true&rerank_depth=3",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["reranked"], 3);
    assert_eq!(names(&body), ["red.png", "blue.png"], "{body}");
    let first = &body["results"][0];
    assert!(
        (first["itm_probability"].as_f64().unwrap() - 0.9).abs() < 1e-6,
        "{first}"
    );
    assert!(body["more"].as_bool().unwrap());
    // A page below the reranked depth needs no model run and has no scores.
    let (_, page) = get(
        &app,
        "/v1/search?q=red%20beside%20blue&mode=vector&k=1&offset=2&rerank=true&rerank_depth=1",
    )
    .await;
    assert_eq!(names(&page), ["green.png"]);
    assert!(
        page["results"][0].get("itm_probability").is_none() && page.get("reranked").is_none(),
        "{page}"
    );
    for bad in [
        "rerank=maybe",
        "rerank=true&rerank_depth=0",
        "rerank=true&rerank_depth=101",
    ] {
        let (code, _) = get(&app, &format!("/v1/search?q=red&{bad}")).await;
        assert_eq!(code, 400, "{bad}");
    }
    let (code, body) = get(&app, "/v1/search?like=1&rerank=1").await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("needs q"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_index_job_captions_new_photos_with_the_servers_caption_model() {
    let f = fixture(true);
    let app = app_with(vec![encoder()], tasks(), &config(f.index.path()));
    write_png(&f.photos.path().join("new-blue.png"), [10, 10, 250], 9);
    let request = Request::post("/v1/index")
        .header("host", "127.0.0.1")
        .body(Body::empty())
        .unwrap();
    let (code, _) = call(&app, request).await;
    assert_eq!(code, 202);
    let status = loop {
        let (_, status) = get(&app, "/v1/index/status").await;
        if status["running"] == false {
            break status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(status["error"].is_null(), "{status}");
    assert_eq!(status["last"]["added"], 1, "{status}");
    assert_eq!(
        (
            status["captions"]["captioned"].as_u64(),
            status["captions"]["unchanged"].as_u64()
        ),
        (Some(1), Some(3)),
        "{status}"
    );
    let (_, found) = get(&app, "/v1/search?q=blue&mode=words&k=5").await;
    assert_eq!(names(&found).len(), 2, "{found}");
}
