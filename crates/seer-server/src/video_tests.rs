//! Videos through the server: the time of a video hit, its frame as the
//! thumbnail (`?t=`), the frame times of its detail, the original in byte
//! ranges, a damaged video, a server without ffmpeg and the index job.
//!
//! These need ffmpeg, and FAIL (never skip) without it, saying to install it.
//! fixtures/video/colors.mkv: 6.4 s, each second one colour (colors.json); the
//! index samples it every 2 s, at 1 (green), 3 (yellow) and 5 s (magenta).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use seer_engine::{LoadedModel, ScoreRule, TextEncoder};
use seer_image::PreprocessConfig;
use serde_json::Value;
use tower::ServiceExt;

use crate::task_tests::{unit, FakeImage};
use crate::{app, ServerConfig};

/// A text embeds as the colours it names (red, green, blue).
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
                let v: Vec<f32> = ["red", "green", "blue"]
                    .iter()
                    .map(|c| if t.contains(c) { 1.0 } else { 0.01 })
                    .collect();
                unit(&v)
            })
            .collect())
    }
    fn score_rule(&self) -> ScoreRule {
        ScoreRule::Softmax { scale: 100.0 }
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

fn ffmpeg() -> seer_video::Ffmpeg {
    seer_video::Ffmpeg::find(None).unwrap_or_else(|e| {
        panic!("the video tests need ffmpeg and ffprobe on PATH; install ffmpeg (e.g. `apt install ffmpeg`): {e}")
    })
}

fn fixture_video(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/video")
        .join(name)
}

struct Fixture {
    media: tempfile::TempDir,
    index: tempfile::TempDir,
    video: i64,
    photo: i64,
}

impl Fixture {
    fn app(&self, ffmpeg: Option<seer_video::Ffmpeg>) -> Router {
        let config = ServerConfig {
            index_dir: self.index.path().to_path_buf(),
            max_wait: std::time::Duration::from_millis(1),
            ann_threshold: usize::MAX,
            ffmpeg,
            ..Default::default()
        };
        app(vec![encoder()], &config)
    }

    fn video_path(&self) -> PathBuf {
        self.media.path().join("colors.mkv")
    }
}

fn index(media: &Path, index: &Path, videos: Option<seer_index::VideoOptions>) {
    let mut store = seer_index::Store::open(index).unwrap();
    let options = seer_index::IndexOptions {
        roots: vec![media.to_path_buf()],
        include_hidden: false,
        encoding: seer_index::Encoding::F32,
        embed: Default::default(),
        ann_threshold: usize::MAX,
        videos,
    };
    seer_index::index(&mut store, &encoder(), &options, &mut |_| {}).unwrap();
}

/// Indexes `media` into `index_dir` with ffmpeg; the ids of `names` (files
/// in `media`).
fn index_with_ffmpeg<const N: usize>(media: &Path, index_dir: &Path, names: [&str; N]) -> [i64; N] {
    index(
        media,
        index_dir,
        Some(seer_index::VideoOptions {
            ffmpeg: Some(ffmpeg()),
            sampling: Default::default(),
        }),
    );
    let store = seer_index::Store::open_read_only(index_dir).unwrap();
    let model = store.choose_model(Some("fake-clip")).unwrap();
    names.map(|name| {
        let path = media.join(name);
        (1..10)
            .find(|&id| {
                store
                    .file_by_id(id, model.id)
                    .unwrap()
                    .is_some_and(|r| seer_index::pathcodec::to_path(&r.path) == path)
            })
            .unwrap_or_else(|| panic!("{name} is not indexed"))
    })
}

/// A folder holding colors.mkv and a gray photo, gray.png.
fn video_and_photo() -> tempfile::TempDir {
    let media = tempfile::tempdir().unwrap();
    std::fs::copy(fixture_video("colors.mkv"), media.path().join("colors.mkv")).unwrap();
    seer_image::image::RgbImage::from_pixel(8, 8, seer_image::image::Rgb([128, 128, 128]))
        .save(media.path().join("gray.png"))
        .unwrap();
    media
}

/// colors.mkv and a gray photo, indexed with ffmpeg.
fn fixture() -> Fixture {
    let media = video_and_photo();
    let index_dir = tempfile::tempdir().unwrap();
    let [video, photo] =
        index_with_ffmpeg(media.path(), index_dir.path(), ["colors.mkv", "gray.png"]);
    Fixture {
        media,
        index: index_dir,
        video,
        photo,
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// The app's response to `request` from a loopback host, without a body.
async fn respond(app: &Router, request: axum::http::request::Builder) -> axum::response::Response {
    let request = request.header("host", "127.0.0.1").body(Body::empty());
    app.clone().oneshot(request.unwrap()).await.unwrap()
}

async fn get_with(app: &Router, uri: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = Request::get(uri);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = respond(app, request).await;
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .unwrap()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

async fn get(app: &Router, uri: &str) -> Answer {
    get_with(app, uri, &[]).await
}

/// The colour in the middle of a PNG.
fn middle(png: &[u8]) -> [u8; 3] {
    let img = seer_image::image::load_from_memory(png).unwrap().to_rgb8();
    img.get_pixel(img.width() / 2, img.height() / 2).0
}

fn near(got: [u8; 3], want: [u8; 3]) -> bool {
    got.iter().zip(want).all(|(&g, w)| g.abs_diff(w) <= 12)
}

const GREEN: [u8; 3] = [0, 255, 0];
const YELLOW: [u8; 3] = [255, 255, 0];
const BLUE: [u8; 3] = [0, 0, 255];
const MAGENTA: [u8; 3] = [255, 0, 255];
const BROWN: [u8; 3] = [0x80, 0x40, 0x20];

fn hit_of(answer: &Answer, id: i64) -> Value {
    answer.json()["results"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", answer.text()))
        .iter()
        .find(|h| h["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no hit {id} in {}", answer.text()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_video_hit_carries_the_time_of_its_best_frame_and_a_photo_none() {
    let f = fixture();
    let app = f.app(Some(ffmpeg()));
    for (query, time) in [("green", 1.0), ("red blue", 5.0), ("red green", 3.0)] {
        let answer = get(&app, &format!("/v1/search?q={}", query.replace(' ', "+"))).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        let hit = &answer.json()["results"][0];
        assert_eq!(hit["id"], f.video, "{query}: {}", answer.text());
        assert_eq!(hit["time"], time, "{query}: {}", answer.text());
        assert_eq!(
            hit["thumbnail"],
            format!("/v1/images/{}/thumbnail?t={time}", f.video),
            "{query}"
        );
    }
    // A photo's hit is as it always was: no time, the plain thumbnail.
    let answer = get(&app, "/v1/search?q=red+green+blue").await;
    let photo = hit_of(&answer, f.photo);
    assert!(photo.get("time").is_none(), "{photo}");
    assert_eq!(
        photo["thumbnail"],
        format!("/v1/images/{}/thumbnail", f.photo)
    );
    // "More like this" and the form POST answer with the time too.
    let like = get(&app, &format!("/v1/search?like={}", f.photo)).await;
    assert!(hit_of(&like, f.video)["time"].is_f64(), "{}", like.text());
    let boundary = "XyZ";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\ngreen\r\n--{boundary}--\r\n"
    );
    let response = app
        .clone()
        .oneshot(
            Request::post("/v1/search")
                .header("host", "127.0.0.1")
                .header(
                    header::CONTENT_TYPE,
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(Body::from(body))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let posted: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(posted["results"][0]["time"], 1.0, "{posted}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_video_thumbnail_is_its_frame_at_t_cached_by_content_and_time() {
    let f = fixture();
    let app = f.app(Some(ffmpeg()));
    let thumb = |t: &str| format!("/v1/images/{}/thumbnail{t}", f.video);
    for (t, colour) in [
        ("", GREEN), // the first sampled frame, at 1 s
        ("?t=3", YELLOW),
        ("?t=1", GREEN),
        ("?t=2.5", BLUE),
        ("?t=5", MAGENTA),
        ("?t=1000", BROWN), // past the end: the last frame
    ] {
        let answer = get(&app, &thumb(t)).await;
        assert_eq!(answer.status, StatusCode::OK, "{t}: {}", answer.text());
        assert_eq!(answer.header(header::CONTENT_TYPE), Some("image/png"));
        let got = middle(&answer.body);
        assert!(near(got, colour), "{t}: {got:?}, not {colour:?}");
    }
    // Cached: the sampled times (1 and 3 s; 5 s too), each apart; not 2.5 or 1000.
    let cached = std::fs::read_dir(f.index.path().join("thumbnails"))
        .unwrap()
        .count();
    assert_eq!(cached, 3, "one cached frame per sampled time asked for");
    // A second ask is answered from the cache, the right frame still.
    let again = get(&app, &thumb("?t=3")).await;
    assert!(near(middle(&again.body), YELLOW));

    for bad in ["-1", "abc", "NaN", "inf", ""] {
        let answer = get(&app, &thumb(&format!("?t={bad}"))).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "t={bad}");
        let error = answer.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(error.starts_with("t must be"), "t={bad}: {error}");
    }
    // On a photo a valid t is ignored; a bad one is 400 all the same.
    let photo = get(&app, &format!("/v1/images/{}/thumbnail?t=3", f.photo)).await;
    assert_eq!(photo.status, StatusCode::OK);
    assert!(near(middle(&photo.body), [128, 128, 128]));
    let photo = get(&app, &format!("/v1/images/{}/thumbnail?t=-3", f.photo)).await;
    assert_eq!(photo.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_detail_of_a_video_lists_its_frame_times() {
    let f = fixture();
    let app = f.app(Some(ffmpeg()));
    let video = get(&app, &format!("/v1/images/{}/info", f.video)).await;
    assert_eq!(video.status, StatusCode::OK, "{}", video.text());
    let v = video.json();
    assert_eq!(
        v["video"]["frames"],
        serde_json::json!([1.0, 3.0, 5.0]),
        "{v}"
    );
    assert_eq!(v["id"], f.video);
    assert_eq!(v["url"], format!("/v1/images/{}", f.video));
    let photo = get(&app, &format!("/v1/images/{}/info", f.photo)).await;
    assert_eq!(photo.status, StatusCode::OK);
    assert!(photo.json().get("video").is_none(), "{}", photo.text());
    let missing = get(&app, "/v1/images/999/info").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

/// The index status counts the videos and their frames (the page's index
/// panel shows them).
#[tokio::test(flavor = "multi_thread")]
async fn the_index_status_counts_videos_and_frames() {
    let f = fixture();
    let app = f.app(Some(ffmpeg()));
    let status = get(&app, "/v1/index/status").await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.text());
    let s = status.json();
    assert_eq!(
        (s["videos"].clone(), s["frames"].clone()),
        (1.into(), 3.into()),
        "{s}"
    );
    assert_eq!(s["files"], 2, "{s}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_video_original_is_served_in_byte_ranges() {
    let f = fixture();
    let app = f.app(Some(ffmpeg()));
    let bytes = std::fs::read(f.video_path()).unwrap();
    let size = bytes.len();
    let url = format!("/v1/images/{}", f.video);

    let whole = get(&app, &url).await;
    assert_eq!(whole.status, StatusCode::OK);
    assert_eq!(whole.body, bytes);
    assert_eq!(whole.header(header::ACCEPT_RANGES), Some("bytes"));
    assert_eq!(whole.header(header::CONTENT_TYPE), Some("video/x-matroska"));
    assert_eq!(
        whole.header(header::CONTENT_LENGTH),
        Some(size.to_string().as_str())
    );

    for (range, from, to) in [
        ("bytes=0-99".to_string(), 0, 99),
        ("bytes=100-".to_string(), 100, size - 1),
        ("bytes=-100".to_string(), size - 100, size - 1),
        (format!("bytes=10-{}", size * 2), 10, size - 1),
    ] {
        let part = get_with(&app, &url, &[("range", &range)]).await;
        assert_eq!(part.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(part.body, bytes[from..=to], "{range}");
        assert_eq!(
            part.header(header::CONTENT_RANGE),
            Some(format!("bytes {from}-{to}/{size}").as_str()),
            "{range}"
        );
        assert_eq!(part.header(header::ACCEPT_RANGES), Some("bytes"));
    }
    for range in [
        format!("bytes={size}-"),
        "bytes=9-2".into(),
        "bytes=x".into(),
    ] {
        let bad = get_with(&app, &url, &[("range", &range)]).await;
        assert_eq!(bad.status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(
            bad.header(header::CONTENT_RANGE),
            Some(format!("bytes */{size}").as_str())
        );
        assert!(bad.json()["error"].is_string(), "{}", bad.text());
    }

    // No validator this server sends can match an If-Range: the Range is
    // ignored and the whole file sent (RFC 9110 §13.1.5), a bad range too.
    for if_range in [
        "foo",
        "\"abc\"",
        "W/\"abc\"",
        "Wed, 21 Oct 2015 07:28:00 GMT",
    ] {
        for range in ["bytes=1000-2000", "bytes=0-0", &format!("bytes={size}-")] {
            let headers = [("range", range), ("if-range", if_range)];
            let answer = get_with(&app, &url, &headers).await;
            assert_eq!(answer.status, StatusCode::OK, "{headers:?}");
            assert_eq!(answer.body, bytes, "{headers:?}");
            assert_eq!(answer.header(header::CONTENT_RANGE), None, "{headers:?}");
        }
    }
    // A photo comes whole with or without them.
    let photo = std::fs::read(f.media.path().join("gray.png")).unwrap();
    let photo_url = format!("/v1/images/{}", f.photo);
    for headers in [
        &[("range", "bytes=10-20")][..],
        &[("range", "bytes=10-20"), ("if-range", "foo")][..],
    ] {
        let answer = get_with(&app, &photo_url, headers).await;
        assert_eq!(answer.status, StatusCode::OK, "{headers:?}");
        assert_eq!(answer.body, photo, "{headers:?}");
    }

    // The checks of every file route hold: a video replaced by a symlink out
    // of the indexed folder is not served, in whole or in part.
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.mkv");
    std::fs::copy(f.video_path(), &secret).unwrap();
    std::fs::remove_file(f.video_path()).unwrap();
    std::os::unix::fs::symlink(&secret, f.video_path()).unwrap();
    for headers in [&[][..], &[("range", "bytes=0-9")][..]] {
        let answer = get_with(&app, &url, headers).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{headers:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_video_thumbnail_is_a_422_naming_the_file() {
    let f = fixture();
    let app = f.app(Some(ffmpeg()));
    // Damaged in place: other bytes of the same size and modification time,
    // so that the file still passes as the one indexed.
    let path = f.video_path();
    let meta = std::fs::metadata(&path).unwrap();
    std::fs::write(&path, vec![7u8; meta.len() as usize]).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(meta.modified().unwrap())
        .unwrap();
    let answer = get(&app, &format!("/v1/images/{}/thumbnail?t=3", f.video)).await;
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        answer.text()
    );
    let error = answer.json()["error"].as_str().unwrap().to_string();
    assert!(error.contains("colors.mkv"), "{error}");
    // A video gone from disk: not found, as a photo.
    std::fs::remove_file(&path).unwrap();
    let answer = get(&app, &format!("/v1/images/{}/thumbnail", f.video)).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn without_ffmpeg_videos_stay_searchable_and_their_frames_say_to_install_it() {
    let f = fixture();
    let app = f.app(None);
    let answer = get(&app, "/v1/search?q=green").await;
    assert_eq!(
        answer.json()["results"][0]["time"],
        1.0,
        "{}",
        answer.text()
    );
    let info = get(&app, &format!("/v1/images/{}/info", f.video)).await;
    assert_eq!(info.json()["video"]["frames"][0], 1.0);
    let original = get_with(
        &app,
        &format!("/v1/images/{}", f.video),
        &[("range", "bytes=0-3")],
    )
    .await;
    assert_eq!(original.status, StatusCode::PARTIAL_CONTENT);
    let thumb = get(&app, &format!("/v1/images/{}/thumbnail?t=3", f.video)).await;
    assert_eq!(
        thumb.status,
        StatusCode::NOT_IMPLEMENTED,
        "{}",
        thumb.text()
    );
    assert!(
        thumb.header(header::RETRY_AFTER).is_none(),
        "not worth retrying"
    );
    let error = thumb.json()["error"].as_str().unwrap().to_string();
    assert!(error.contains("install ffmpeg"), "{error}");
    // Photos' thumbnails are as ever.
    let photo = get(&app, &format!("/v1/images/{}/thumbnail", f.photo)).await;
    assert_eq!(photo.status, StatusCode::OK);
}

async fn run_job(app: &Router) -> Value {
    let started = respond(app, Request::post("/v1/index")).await;
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    loop {
        let status = get(app, "/v1/index/status").await.json();
        if status["running"] == false {
            return status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_index_job_indexes_videos_with_the_servers_ffmpeg_or_leaves_them_for_later() {
    // Indexed first without videos: the job of a server without ffmpeg
    // leaves the video for later, that of one with ffmpeg indexes it.
    let media = video_and_photo();
    let index_dir = tempfile::tempdir().unwrap();
    index(media.path(), index_dir.path(), None);
    let f = Fixture {
        media,
        index: index_dir,
        video: 0,
        photo: 0,
    };

    let status = run_job(&f.app(None)).await;
    assert_eq!(status["error"], Value::Null, "{status}");
    assert_eq!(status["last"]["videos_without_ffmpeg"], 1, "{status}");
    let answer = get(&f.app(None), "/v1/search?q=green").await;
    assert!(
        answer.json()["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h.get("time").is_none()),
        "{}",
        answer.text()
    );

    let app = f.app(Some(ffmpeg()));
    let status = run_job(&app).await;
    assert_eq!(status["error"], Value::Null, "{status}");
    assert_eq!(status["last"]["video_frames"], 3, "{status}");
    let answer = get(&app, "/v1/search?q=green").await;
    assert_eq!(
        answer.json()["results"][0]["time"],
        1.0,
        "{}",
        answer.text()
    );
}

#[test]
fn the_openapi_document_states_the_video_answers() {
    let doc = crate::openapi::document();
    let thumb = &doc["paths"]["/v1/images/{id}/thumbnail"]["get"];
    for status in ["400", "404", "422", "501"] {
        assert!(thumb["responses"][status].is_object(), "thumbnail {status}");
    }
    let t = thumb["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "t")
        .expect("the t parameter");
    assert_eq!(t["schema"]["minimum"], 0);
    assert!(t["description"].as_str().unwrap().contains("photo"));
    let original = &doc["paths"]["/v1/images/{id}"]["get"];
    for status in ["206", "416"] {
        assert!(
            original["responses"][status].is_object(),
            "original {status}"
        );
    }
    let info = &doc["paths"]["/v1/images/{id}/info"]["get"];
    assert!(info["summary"].as_str().unwrap().contains("frames"));
    let search = doc["paths"]["/v1/search"]["get"]["summary"]
        .as_str()
        .unwrap();
    assert!(search.contains("time"), "{search}");
}

/// A position past what u64 holds is past the end of any file: the last
/// position clamps to the end and a suffix that long is the whole file
/// (RFC 9110), a first position that long is unsatisfiable.
#[test]
fn range_positions_too_long_for_u64_clamp_to_the_end() {
    use crate::video::{wanted, Wanted};
    let huge = "99999999999999999999999999";
    assert_eq!(
        wanted(Some(&format!("bytes=0-{huge}")), 100),
        Wanted::Part(0, 99)
    );
    assert_eq!(
        wanted(Some(&format!("bytes=-{huge}")), 100),
        Wanted::Part(0, 99)
    );
    assert_eq!(
        wanted(Some(&format!("bytes={huge}-")), 100),
        Wanted::Unsatisfiable
    );
    assert_eq!(
        wanted(Some(&format!("bytes={huge}-{huge}")), 100),
        Wanted::Unsatisfiable
    );
}

/// The answer to a bad `t` names it, cut short when it is very long.
#[test]
fn a_very_long_bad_time_is_not_echoed_whole() {
    let raw = "9".repeat(100_000) + "s";
    let e = crate::video::parse_time(Some(&raw)).unwrap_err();
    assert_eq!(e.status, StatusCode::BAD_REQUEST);
    assert!(e.message.len() < 200, "{}", e.message.len());
    for t in ["1e-400", "-0", " 3"] {
        assert!(crate::video::parse_time(Some(t)).unwrap().is_some(), "{t}");
    }
}

/// ffmpeg and ffprobe as shell scripts in `dir` that run `prelude` and then
/// become the real ones (`exec`, same pid).
fn wrapped_ffmpeg(dir: &Path, prelude: &str) -> seer_video::Ffmpeg {
    ffmpeg(); // the real ones, with the message saying to install them
    for program in ["ffmpeg", "ffprobe"] {
        let target = String::from_utf8(
            std::process::Command::new("sh")
                .args(["-c", &format!("command -v {program}")])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let script = format!("#!/bin/sh\n{prelude}exec '{}' \"$@\"\n", target.trim());
        seer_testkit::write_script(&dir.join(program), &script);
    }
    seer_video::Ffmpeg::find(Some(&dir.join("ffmpeg"))).unwrap()
}

/// ffmpeg and ffprobe that record how many of them are alive (unreaped) as
/// each starts.
fn counting_ffmpeg(dir: &Path) -> seer_video::Ffmpeg {
    let running = dir.join("running");
    std::fs::create_dir_all(&running).unwrap();
    let prelude = format!(
        ": > '{run}'/$$\nn=0\nfor m in '{run}'/*; do kill -0 \"${{m##*/}}\" 2>/dev/null && n=$((n+1)); done\necho $n >> '{counts}'\n",
        run = running.display(),
        counts = dir.join("counts").display(),
    );
    wrapped_ffmpeg(dir, &prelude)
}

/// 64 thumbnails at distinct times at once: no more ffmpeg processes run
/// than the server's slots, and each request gets its frame or a 503 with
/// Retry-After (never an error of another kind).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_video_thumbnails_run_a_bounded_number_of_ffmpegs() {
    let f = fixture();
    let bin = tempfile::tempdir().unwrap();
    let app = f.app(Some(counting_ffmpeg(bin.path())));
    let slots = crate::video::Slots::for_cores().max();
    let mut requests = Vec::new();
    for i in 0..64 {
        let app = app.clone();
        let uri = format!(
            "/v1/images/{}/thumbnail?t={:.3}",
            f.video,
            0.013 + i as f64 * 0.097
        );
        requests.push(tokio::spawn(async move { get(&app, &uri).await }));
    }
    let mut made = 0;
    for r in requests {
        let a = r.await.unwrap();
        match a.status {
            StatusCode::OK => made += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(a.header(header::RETRY_AFTER), Some("1"), "{}", a.text())
            }
            other => panic!("{other}: {}", a.text()),
        }
    }
    assert!(made > 0, "every request was refused");
    let counts = std::fs::read_to_string(bin.path().join("counts")).unwrap();
    let most = counts
        .lines()
        .map(|l| l.trim().parse::<usize>().unwrap())
        .max()
        .unwrap();
    assert!(
        most <= slots,
        "{most} ffmpeg processes at once, over {slots}"
    );
}

#[test]
fn slots_beyond_the_queue_are_refused_with_503_and_freed_on_drop() {
    let slots = crate::video::Slots::new(2, 0);
    let a = slots.acquire().unwrap();
    let _b = slots.acquire().unwrap();
    let refused = slots.acquire().err().unwrap();
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    drop(a);
    assert!(slots.acquire().is_ok());
}

/// The server's pixel limit holds for the frames its index job samples: a
/// video with larger frames fails by name with the limit as its cause.
#[tokio::test(flavor = "multi_thread")]
async fn an_index_job_refuses_video_frames_over_the_servers_pixel_limit() {
    let media = tempfile::tempdir().unwrap();
    std::fs::copy(fixture_video("colors.mkv"), media.path().join("colors.mkv")).unwrap();
    let index_dir = tempfile::tempdir().unwrap();
    index(media.path(), index_dir.path(), None);
    let config = ServerConfig {
        index_dir: index_dir.path().to_path_buf(),
        max_wait: std::time::Duration::from_millis(1),
        ann_threshold: usize::MAX,
        ffmpeg: Some(ffmpeg()),
        limits: seer_image::DecodeLimits {
            max_pixels: 100,
            ..Default::default()
        },
        ..Default::default()
    };
    let status = run_job(&app(vec![encoder()], &config)).await;
    assert_eq!(status["last"]["failed"], 1, "{status}");
    assert_eq!(status["last"]["video_frames"], 0, "{status}");
    let failures = status["last"]["failures"].to_string();
    assert!(
        failures.contains("colors.mkv") && failures.contains("over the limit of 100 pixels"),
        "{status}"
    );
}

// ------------------------------------------------- a video stream's idle bound

/// A server whose request timeout, and so the idle bound of its video
/// streams, is `timeout`, over a video of about 2.2 MiB (9 chunks of a
/// stream) indexed with ffmpeg: (the server, the video's id, its bytes, the
/// folders to keep).
fn streaming_fixture(
    timeout: std::time::Duration,
) -> (Router, i64, Vec<u8>, [tempfile::TempDir; 2]) {
    let media = tempfile::tempdir().unwrap();
    let path = media.path().join("bars.avi");
    // Raw frames, which do not compress: 160x120, 10 a second for 4 s.
    let made = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i"])
        .arg("testsrc=size=160x120:rate=10:duration=4")
        .args(["-c:v", "rawvideo", "-pix_fmt", "bgr24"])
        .arg(&path)
        .output()
        .expect("the video tests need ffmpeg on PATH");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let index_dir = tempfile::tempdir().unwrap();
    let [id] = index_with_ffmpeg(media.path(), index_dir.path(), ["bars.avi"]);
    let config = ServerConfig {
        index_dir: index_dir.path().to_path_buf(),
        max_wait: std::time::Duration::from_millis(1),
        ann_threshold: usize::MAX,
        ffmpeg: Some(ffmpeg()),
        request_timeout: timeout,
        ..Default::default()
    };
    let bytes = std::fs::read(&path).unwrap();
    (app(vec![encoder()], &config), id, bytes, [media, index_dir])
}

/// The body of the whole original of video `id`, to be taken piece by piece.
async fn open_stream(app: &Router, id: i64) -> axum::body::BodyDataStream {
    let response = respond(app, Request::get(format!("/v1/images/{id}"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().into_data_stream()
}

/// The next piece of a body, as a client takes it.
async fn next_piece(
    body: &mut axum::body::BodyDataStream,
) -> Option<Result<axum::body::Bytes, axum::Error>> {
    std::future::poll_fn(|cx| futures_core::Stream::poll_next(std::pin::Pin::new(&mut *body), cx))
        .await
}

/// A client that takes the start of a video and then nothing more is given
/// up on after the request timeout: after the chunks already read ahead, its
/// body ends with an error (on which hyper closes the connection), and the
/// reader is gone (the body's channel is closed).
#[tokio::test(flavor = "multi_thread")]
async fn a_video_stream_whose_client_stops_reading_ends_with_an_error() {
    let bound = std::time::Duration::from_secs(1);
    let (app, id, bytes, _dirs) = streaming_fixture(bound);
    let mut body = open_stream(&app, id).await;
    let mut got = next_piece(&mut body).await.unwrap().unwrap().len();
    // Many times the bound without taking a byte.
    tokio::time::sleep(bound * 5).await;
    let error = loop {
        match next_piece(&mut body).await {
            Some(Ok(piece)) => got += piece.len(),
            Some(Err(e)) => break e.to_string(),
            None => panic!(
                "the stream went on for a client that stopped reading: {got} of {} bytes, no error",
                bytes.len()
            ),
        }
    };
    assert!(got < bytes.len(), "{got} of {} bytes", bytes.len());
    assert!(error.contains("took no data"), "{error}");
    assert!(next_piece(&mut body).await.is_none(), "the body is over");
}

/// A client that keeps taking chunks, each well within the bound, gets the
/// whole video, however long that takes in all (here several bounds).
#[tokio::test(flavor = "multi_thread")]
async fn a_video_stream_read_slowly_but_steadily_is_never_cut_off() {
    let bound = std::time::Duration::from_secs(1);
    let (app, id, bytes, _dirs) = streaming_fixture(bound);
    let mut body = open_stream(&app, id).await;
    let (mut got, mut pieces) = (Vec::new(), 0);
    while let Some(piece) = next_piece(&mut body).await {
        let piece = piece.unwrap_or_else(|e| {
            panic!("a steady client was cut off after {} bytes: {e}", got.len())
        });
        got.extend_from_slice(&piece);
        pieces += 1;
        tokio::time::sleep(bound * 2 / 5).await;
    }
    assert!(got == bytes, "{} of {} bytes", got.len(), bytes.len());
    // Pieces at 0.4 bound each: the stream lasted several bounds in all.
    assert!(pieces >= 6, "{pieces} pieces");
}

/// ffmpeg reads the file the server opened and checked, not its path again:
/// the path swapped for a symlink to a file outside the index's folders as
/// ffprobe starts (after the check) still gives the checked video's frame.
#[tokio::test(flavor = "multi_thread")]
async fn a_thumbnail_is_of_the_checked_file_when_its_path_is_swapped_after_the_check() {
    let f = fixture();
    let outside = tempfile::tempdir().unwrap();
    let other = outside.path().join("other.mkv");
    std::fs::write(&other, b"not the video that was checked").unwrap();
    let video = f.video_path();
    let bin = tempfile::tempdir().unwrap();
    // The first real run (not `-version`) swaps the path, atomically.
    let prelude = format!(
        "if [ \"$1\" != -version ] && [ ! -L '{video}' ]; then\n  ln -s '{other}' '{video}.swap' && mv -f '{video}.swap' '{video}'\nfi\n",
        video = video.display(),
        other = other.display(),
    );
    let swapping = wrapped_ffmpeg(bin.path(), &prelude);
    let app = f.app(Some(swapping));
    let answer = get(&app, &format!("/v1/images/{}/thumbnail?t=1", f.video)).await;
    assert!(
        std::fs::symlink_metadata(&video)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the path was not swapped"
    );
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let got = middle(&answer.body);
    assert!(near(got, GREEN), "{got:?}, not the checked video's green");
}

/// A thumbnail request given up on (its future dropped, as a request timeout
/// or a gone client does) stops its ffmpeg rather than let it decode on for
/// nobody until its stall limit.
#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_thumbnail_request_stops_its_ffmpeg() {
    let f = fixture();
    let bin = tempfile::tempdir().unwrap();
    let pid_file = bin.path().join("ffmpeg.pid");
    // ffprobe is the real one; ffmpeg records its pid and never writes a
    // frame (`exec`: the pid is the process that sleeps).
    let prelude = format!(
        "if [ \"$1\" != -version ]; then\n  case \"$0\" in *ffmpeg) echo $$ > '{pid}.tmp' && mv '{pid}.tmp' '{pid}'; exec sleep 60;; esac\nfi\n",
        pid = pid_file.display(),
    );
    let app = f.app(Some(wrapped_ffmpeg(bin.path(), &prelude)));
    let uri = format!("/v1/images/{}/thumbnail?t=2.5", f.video);
    let answer = tokio::select! {
        a = get(&app, &uri) => Some(a),
        _ = async {
            while !pid_file.exists() {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        } => None,
    };
    // Leaving the select dropped the request's future.
    assert!(
        answer.is_none(),
        "answered before ffmpeg ran: {}",
        answer.unwrap().text()
    );
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let mut gone = false;
    for _ in 0..200 {
        if !proc.exists() {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    if !gone {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
    assert!(gone, "ffmpeg {pid} ran on after its request was dropped");
}

/// A waiter whose request is gone leaves the queue: its place is free for
/// another request.
#[test]
fn a_cancelled_slot_waiter_leaves_the_queue() {
    use std::time::Duration;
    let slots = Arc::new(crate::video::Slots::new(1, 1));
    let held = slots.acquire().unwrap();
    let wait_for = |n: usize| {
        for _ in 0..1000 {
            if slots.waiting() == n {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("{} waiting, not {n}", slots.waiting());
    };
    let cancel = seer_video::Cancel::new();
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let (slots, cancel) = (Arc::clone(&slots), cancel.clone());
        std::thread::spawn(move || {
            let got = slots
                .acquire_unless(&cancel)
                .map(|_| ())
                .map_err(|e| e.status);
            let _ = tx.send(got);
        });
    }
    wait_for(1);
    // The queue (of one) is full.
    assert_eq!(
        slots.acquire().err().unwrap().status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    cancel.cancel();
    let got = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the cancelled waiter still waits");
    assert_eq!(got, Err(StatusCode::GATEWAY_TIMEOUT));
    wait_for(0);
    // Its place is another's, which gets the slot once it is free.
    let next = {
        let slots = Arc::clone(&slots);
        std::thread::spawn(move || slots.acquire().is_ok())
    };
    wait_for(1);
    drop(held);
    assert!(next.join().unwrap());
}
