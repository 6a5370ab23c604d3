//! `seer serve` as clients meet it: every route, the security rules, limits,
//! backpressure, and parity with the command line.

mod common;

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use common::server::{json_of, multipart, post_form, seer, start};

use base64::Engine;
use seer_testkit::{model_fixture, shared_data};
use serde_json::Value;

/// A bearer token long enough to be accepted.
const TOKEN: &str = "s3cret-long-enough";

#[test]
fn every_route_answers_as_documented() {
    let s = start(&[]);
    let chelsea = shared_data().join("smoke/skimage/chelsea.png");

    let (code, health) = json_of(ureq::get(&format!("{}/healthz", s.url)).call());
    assert_eq!((code, health["vectors"].as_u64()), (200, Some(34)));

    let (code, found) = json_of(ureq::get(&format!("{}/v1/search?q=a%20cat&k=5", s.url)).call());
    assert_eq!(code, 200);
    let results = found["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    let first = &results[0];

    // The original bytes and a thumbnail of an indexed file, by id.
    let mut bytes = Vec::new();
    ureq::get(&format!("{}{}", s.url, first["url"].as_str().unwrap()))
        .call()
        .unwrap()
        .into_reader()
        .read_to_end(&mut bytes)
        .unwrap();
    assert_eq!(
        bytes,
        std::fs::read(first["path"].as_str().unwrap()).unwrap()
    );
    let mut png = Vec::new();
    let r = ureq::get(&format!(
        "{}{}",
        s.url,
        first["thumbnail"].as_str().unwrap()
    ))
    .call()
    .unwrap();
    assert_eq!(r.content_type(), "image/png");
    r.into_reader().read_to_end(&mut png).unwrap();
    let thumb = seer_image_dims(&png);
    assert!(
        thumb.0 <= 256 && thumb.1 <= 256 && thumb.0.max(thumb.1) > 0,
        "{thumb:?}"
    );

    // More like this, by id: the file itself is left out.
    let (_, like) =
        json_of(ureq::get(&format!("{}/v1/search?like={}&k=1", s.url, first["id"])).call());
    assert_ne!(like["results"][0]["id"], first["id"]);

    // Search by upload: an indexed image finds itself.
    let (code, by_image) = post_form(
        &format!("{}/v1/search", s.url),
        &[("k", "1")],
        Some(&chelsea),
    );
    assert_eq!(code, 200, "{by_image}");
    assert_eq!(
        by_image["results"][0]["path"].as_str(),
        Some(chelsea.canonicalize().unwrap().to_str().unwrap())
    );

    let (code, classified) = post_form(
        &format!("{}/v1/classify", s.url),
        &[("labels", "cat, dog ,car"), ("templates", "imagenet")],
        Some(&chelsea),
    );
    assert_eq!(code, 200, "{classified}");
    let probs: Vec<f64> = classified["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["probability"].as_f64().unwrap())
        .collect();
    assert_eq!(probs.len(), 3);
    assert!(
        (probs.iter().sum::<f64>() - 1.0).abs() < 1e-4 && probs.windows(2).all(|w| w[0] >= w[1])
    );

    let (code, status) = json_of(ureq::post(&format!("{}/v1/index", s.url)).call());
    assert_eq!(code, 202, "{status}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, st) = json_of(ureq::get(&format!("{}/v1/index/status", s.url)).call());
        if st["running"] == false && !st["last"].is_null() {
            assert_eq!(st["last"]["skipped"].as_u64(), Some(34), "{st}");
            assert_eq!(st["files"].as_u64(), Some(34));
            break;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }

    let metrics = ureq::get(&format!("{}/metrics", s.url))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        metrics.contains("seer_requests_total{route=\"/v1/search\",status=\"200\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("seer_batches"));
}

/// Width and height from a PNG header.
fn seer_image_dims(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[1..4], b"PNG");
    (
        u32::from_be_bytes(png[16..20].try_into().unwrap()),
        u32::from_be_bytes(png[20..24].try_into().unwrap()),
    )
}

#[test]
fn embeddings_equal_the_command_line() {
    let s = start(&[]);
    let apple = shared_data().join("smoke/misc/red_apple.jpg");
    let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&apple).unwrap());
    let (code, body) = json_of(
        ureq::post(&format!("{}/v1/embed", s.url))
            .send_json(serde_json::json!({ "texts": ["a red apple"], "images": [b64] })),
    );
    assert_eq!(code, 200, "{body}");
    let served: Vec<Vec<f64>> = body["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect();
    let model = model_fixture("openclip-vit");
    let out = seer()
        .args([
            "embed",
            "--model",
            model.to_str().unwrap(),
            "--text",
            "a red apple",
            "--image",
            apple.to_str().unwrap(),
            "--json",
        ])
        .output()
        .unwrap();
    let cli: Vec<Vec<f64>> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect();
    // The CLI prints images before texts.
    for (a, b) in [(&served[0], &cli[1]), (&served[1], &cli[0])] {
        let diff = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        assert!(diff < 1e-5, "server and CLI differ by {diff}");
    }
}

#[test]
fn bad_requests_are_clear_errors() {
    let s = start(&["--max-body", "100000"]);
    let cases = [
        post_form(
            &format!("{}/v1/classify", s.url),
            &[("labels", "a,b")],
            Some(&shared_data().join("smoke/rclip-formats/not-an-image.txt")),
        ),
        post_form(
            &format!("{}/v1/classify", s.url),
            &[("labels", "")],
            Some(&shared_data().join("smoke/misc/red_apple.jpg")),
        ),
        json_of(ureq::get(&format!("{}/v1/search", s.url)).call()),
        json_of(ureq::get(&format!("{}/v1/search?q=x&k=abc", s.url)).call()),
        json_of(ureq::get(&format!("{}/v1/images/999999", s.url)).call()),
        json_of(ureq::get(&format!("{}/v1/images/..%2F..%2Fetc%2Fpasswd", s.url)).call()),
        json_of(
            ureq::post(&format!("{}/v1/embed", s.url))
                .set("Content-Type", "application/json")
                .send_string("{not json"),
        ),
        json_of(
            ureq::post(&format!("{}/v1/embed", s.url))
                .send_json(serde_json::json!({ "images": ["***"] })),
        ),
    ];
    for (i, (code, body)) in cases.iter().enumerate() {
        assert!((400..500).contains(code), "case {i}: status {code} {body}");
    }
    for (i, (_, body)) in cases.iter().enumerate() {
        assert!(
            body["error"].is_string(),
            "case {i}: no error message: {body}"
        );
    }
    // Streamed bodies (no declared length) over --max-body are refused once the
    // limit is reached, without reading the rest: the server may stop reading
    // (the client sees a broken pipe), so write what it takes and then read the answer.
    use std::io::Write;
    let addr = s.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "POST /v1/embed HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
    for _ in 0..100 {
        if stream.write_all(b"2000\r\n").is_err()
            || stream.write_all(&[b'a'; 8192]).is_err()
            || stream.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    let mut answer = [0u8; 64];
    let n = stream.read(&mut answer).unwrap();
    let head = String::from_utf8_lossy(&answer[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
}

#[test]
fn bearer_token_and_loopback_rules() {
    let s = start(&["--token", TOKEN]);
    let (code, _) = json_of(ureq::get(&format!("{}/v1/search?q=cat", s.url)).call());
    assert_eq!(code, 401);
    let (code, _) = json_of(
        ureq::get(&format!("{}/v1/search?q=cat", s.url))
            .set("Authorization", "Bearer wrong")
            .call(),
    );
    assert_eq!(code, 401);
    let (code, _) = json_of(
        ureq::get(&format!("{}/v1/search?q=cat", s.url))
            .set("Authorization", &format!("Bearer {TOKEN}"))
            .call(),
    );
    assert_eq!(code, 200);
    assert_eq!(
        json_of(ureq::get(&format!("{}/metrics", s.url)).call()).0,
        401
    );
    // Liveness for anyone; the model (a local path, here) and counts need the token.
    assert_eq!(
        json_of(ureq::get(&format!("{}/healthz", s.url)).call()),
        (200, serde_json::json!({ "status": "ok" }))
    );
    let (code, health) = json_of(
        ureq::get(&format!("{}/healthz", s.url))
            .set("Authorization", &format!("Bearer {TOKEN}"))
            .call(),
    );
    assert_eq!(
        (code, health["vectors"].as_u64()),
        (200, Some(34)),
        "{health}"
    );
    assert_eq!(
        ureq::get(&s.url).call().unwrap().status(),
        200,
        "the page itself stays open"
    );

    // Any non-loopback address needs a token.
    let index = tempfile::tempdir().unwrap();
    let out = seer()
        .args([
            "serve",
            "--bind",
            "0.0.0.0:0",
            "--model",
            model_fixture("openclip-vit").to_str().unwrap(),
        ])
        .env("SEER_INDEX", index.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("without --token"));
}

#[test]
fn a_full_queue_answers_503_with_retry_after() {
    // The queue holds one request's 64 texts (a request is queued whole or not at all).
    let s = start(&["--queue", "64", "--max-batch", "1", "--max-wait-ms", "0"]);
    let url = format!("{}/v1/embed", s.url);
    let texts: Vec<String> = (0..64)
        .map(|i| format!("a photo number {i} of something rather long to embed"))
        .collect();
    let handles: Vec<_> = (0..24)
        .map(|_| {
            let (url, texts) = (url.clone(), texts.clone());
            std::thread::spawn(move || {
                match ureq::post(&url).send_json(serde_json::json!({ "texts": texts })) {
                    Ok(r) => (r.status(), None),
                    Err(ureq::Error::Status(code, r)) => {
                        (code, r.header("Retry-After").map(str::to_string))
                    }
                    Err(e) => panic!("transport error: {e}"),
                }
            })
        })
        .collect();
    let outcomes: Vec<(u16, Option<String>)> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        outcomes.iter().all(|(c, _)| *c == 200 || *c == 503),
        "{outcomes:?}"
    );
    let busy: Vec<_> = outcomes.iter().filter(|(c, _)| *c == 503).collect();
    assert!(
        !busy.is_empty(),
        "no request was refused although the queue holds one request"
    );
    assert!(busy.iter().all(|(_, retry)| retry.as_deref() == Some("1")));
}

#[test]
fn the_openapi_document_matches_the_routes() {
    let s = start(&[]);
    let (code, doc) = json_of(ureq::get(&format!("{}/openapi.json", s.url)).call());
    assert_eq!(code, 200);
    let paths = doc["paths"].as_object().unwrap();
    for (method, path, _) in seer_server::openapi::ROUTES {
        assert!(
            paths[*path][*method].is_object(),
            "{method} {path} undocumented"
        );
        // Each documented route exists on the server: never 404 for the route itself or 405.
        let url = format!("{}{}", s.url, path.replace("{id}", "1"));
        let (code, body) = match *method {
            "get" => json_of(ureq::get(&url).call()),
            _ => json_of(ureq::post(&url).send_bytes(b"")),
        };
        assert_ne!(code, 405, "{method} {path}");
        if !path.contains("{id}") {
            assert_ne!(code, 404, "{method} {path}");
        }
        // An error the route really answers is documented, as JSON.
        if code >= 400 {
            let documented = &paths[*path][*method]["responses"][code.to_string()];
            assert_eq!(
                documented["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/Error",
                "{method} {path} answers {code}, undocumented: {body}"
            );
            assert!(body["error"].is_string(), "{method} {path}: {body}");
        }
    }
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(documented, seer_server::openapi::ROUTES.len());
}

// ------------------------------------------------------------ files on disk

/// Every indexed file the server knows, as (id, path), from a search for anything.
fn indexed(url: &str) -> Vec<(i64, String)> {
    let (code, found) = json_of(ureq::get(&format!("{url}/v1/search?q=a%20photo&k=1000")).call());
    assert_eq!(code, 200, "{found}");
    found["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_i64().unwrap(),
                r["path"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn id_of(url: &str, path: &Path) -> Option<i64> {
    let path = path.to_str().unwrap();
    indexed(url)
        .into_iter()
        .find(|(_, p)| p == path)
        .map(|(id, _)| id)
}

/// Status, content type and bytes of a GET.
fn get_bytes(url: &str) -> (u16, String, Vec<u8>) {
    let response = match ureq::get(url).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let (status, kind) = (response.status(), response.content_type().to_string());
    let mut bytes = Vec::new();
    response.into_reader().read_to_end(&mut bytes).unwrap();
    (status, kind, bytes)
}

/// The answer is a JSON error, 404.
fn assert_not_served(url: &str, what: &str) {
    let (status, kind, bytes) = get_bytes(url);
    assert_eq!(status, 404, "{what}: {}", String::from_utf8_lossy(&bytes));
    assert_eq!(kind, "application/json", "{what}");
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(body["error"].is_string(), "{what}: {body}");
}

fn reindex(url: &str) {
    let (code, body) = json_of(ureq::post(&format!("{url}/v1/index")).call());
    assert_eq!(code, 202, "{body}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, st) = json_of(ureq::get(&format!("{url}/v1/index/status")).call());
        if st["running"] == false && (!st["last"].is_null() || !st["error"].is_null()) {
            assert!(st["error"].is_null(), "{st}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "re-indexing did not finish: {st}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `to` with the same bytes and mtime as `from`, so that only where it really
/// lies tells them apart.
fn twin(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap();
    let mtime = std::fs::metadata(from).unwrap().modified().unwrap();
    std::fs::File::options()
        .write(true)
        .open(to)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
}

#[test]
fn files_swapped_for_symlinks_out_of_the_roots_are_never_served() {
    let photos = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let (photos_dir, outside_dir) = (
        photos.path().canonicalize().unwrap(),
        outside.path().canonicalize().unwrap(),
    );
    let smoke = shared_data().join("smoke");
    let apple = photos_dir.join("apple.jpg");
    let cat = photos_dir.join("cat.png");
    let clip = photos_dir.join("clip.png");
    twin(&smoke.join("misc/red_apple.jpg"), &apple);
    std::fs::copy(smoke.join("skimage/chelsea.png"), &cat).unwrap();
    std::fs::copy(smoke.join("misc/CLIP.png"), &clip).unwrap();
    // Symlinks present at indexing time: one out of the root, one within it.
    std::fs::copy(
        smoke.join("skimage/astronaut.png"),
        outside_dir.join("astronaut.png"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        outside_dir.join("astronaut.png"),
        photos_dir.join("away.png"),
    )
    .unwrap();
    std::os::unix::fs::symlink(&cat, photos_dir.join("alias.png")).unwrap();

    let s = common::server::start_on(&[&photos_dir], &[]);
    let apple_id = id_of(&s.url, &apple).expect("apple.jpg is indexed");
    let cat_id = id_of(&s.url, &cat).expect("cat.png is indexed");
    let image = |id: i64| format!("{}/v1/images/{id}", s.url);
    let thumbnail = |id: i64| format!("{}/v1/images/{id}/thumbnail", s.url);

    // Served while they are what was indexed (and the thumbnails get cached).
    assert_eq!(
        get_bytes(&image(apple_id)).2,
        std::fs::read(&apple).unwrap()
    );
    assert_eq!(get_bytes(&thumbnail(apple_id)).0, 200);
    assert_eq!(get_bytes(&thumbnail(cat_id)).0, 200);
    // A symlink within the root is fine; one out of it is never served
    // (whether or not indexing took it in).
    let alias = id_of(&s.url, &photos_dir.join("alias.png")).expect("alias.png is indexed");
    assert_eq!(get_bytes(&image(alias)).2, std::fs::read(&cat).unwrap());
    if let Some(away) = id_of(&s.url, &photos_dir.join("away.png")) {
        assert_not_served(&image(away), "a symlink out of the root");
        assert_not_served(&thumbnail(away), "a symlink out of the root");
    }

    // apple.jpg becomes a symlink to an identical twin outside the root (same
    // size and mtime), cat.png one to a secret that is no image at all.
    let twin_outside = outside_dir.join("apple.jpg");
    twin(&apple, &twin_outside);
    std::fs::remove_file(&apple).unwrap();
    std::os::unix::fs::symlink(&twin_outside, &apple).unwrap();
    let secret = outside_dir.join("secret.png");
    std::fs::write(&secret, b"root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::remove_file(&cat).unwrap();
    std::os::unix::fs::symlink(&secret, &cat).unwrap();
    for id in [apple_id, cat_id] {
        assert_not_served(&image(id), "a file swapped for a symlink out of the root");
        assert_not_served(&thumbnail(id), "the cached thumbnail of a swapped file");
    }

    // After re-indexing, still never: whatever the index now holds for them.
    reindex(&s.url);
    let outside_bytes = [
        std::fs::read(&twin_outside).unwrap(),
        std::fs::read(&secret).unwrap(),
        std::fs::read(outside_dir.join("astronaut.png")).unwrap(),
    ];
    for (id, path) in indexed(&s.url)
        .into_iter()
        .chain([(apple_id, String::new()), (cat_id, String::new())])
    {
        let (status, _, bytes) = get_bytes(&image(id));
        let real = Path::new(&path).canonicalize().ok();
        if status == 200 {
            assert!(
                real.is_some_and(|r| r.starts_with(&photos_dir)),
                "{path} served although it lies outside the root"
            );
            assert!(
                !outside_bytes.contains(&bytes),
                "{path}: bytes from outside the root"
            );
        } else {
            assert_eq!(status, 404, "{path}");
        }
    }
    for id in [apple_id, cat_id] {
        assert_not_served(&image(id), "after re-indexing");
        assert_not_served(&thumbnail(id), "after re-indexing");
    }
}

#[test]
fn a_file_changed_since_indexing_is_not_served_until_reindexed() {
    let photos = tempfile::tempdir().unwrap();
    let dir = photos.path().canonicalize().unwrap();
    let apple = dir.join("apple.jpg");
    std::fs::copy(shared_data().join("smoke/misc/red_apple.jpg"), &apple).unwrap();
    std::fs::copy(
        shared_data().join("smoke/misc/CLIP.png"),
        dir.join("clip.png"),
    )
    .unwrap();
    let s = common::server::start_on(&[&dir], &[]);
    let id = id_of(&s.url, &apple).unwrap();
    assert_eq!(get_bytes(&format!("{}/v1/images/{id}", s.url)).0, 200);

    // Different content (and size): the id stood for the old content.
    let mut changed = std::fs::read(&apple).unwrap();
    changed.extend_from_slice(b"appended");
    std::fs::write(&apple, &changed).unwrap();
    assert_not_served(&format!("{}/v1/images/{id}", s.url), "a changed file");
    assert_not_served(
        &format!("{}/v1/images/{id}/thumbnail", s.url),
        "a changed file",
    );

    // Re-indexed, the new content is served (under its new id).
    reindex(&s.url);
    let new_id = id_of(&s.url, &apple).unwrap();
    assert_eq!(
        get_bytes(&format!("{}/v1/images/{new_id}", s.url)).2,
        changed
    );
}

// ------------------------------------------------------------ connections

/// Reads until the server closes the connection (bounded by a generous read
/// timeout, which fails the test); returns what it sent.
fn read_until_closed(stream: &mut std::net::TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server kept the connection open: {e}"),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn slow_headers_and_idle_connections_are_closed() {
    use std::io::Write;
    let s = start(&["--header-timeout", "1"]);
    let addr = s.url.trim_start_matches("http://");
    // Slowloris: a request whose headers never end.
    let mut slow = std::net::TcpStream::connect(addr).unwrap();
    write!(
        slow,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nX-Slow: 1\r\n"
    )
    .unwrap();
    let answer = read_until_closed(&mut slow);
    assert!(!answer.contains("200 OK"), "{answer}");

    // An idle keep-alive connection after a complete request.
    let mut idle = std::net::TcpStream::connect(addr).unwrap();
    write!(idle, "GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let answer = read_until_closed(&mut idle);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn a_declared_body_over_the_limit_is_refused_before_it_is_sent() {
    use std::io::Write;
    let s = start(&["--max-body", "100000"]);
    let addr = s.url.trim_start_matches("http://");
    for route in ["/v1/embed", "/v1/classify", "/v1/search"] {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        // Headers only: the body is never sent, so only the header can decide.
        write!(stream, "POST {route} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 999999999999\r\n\r\n").unwrap();
        let answer = read_until_closed(&mut stream);
        assert!(answer.starts_with("HTTP/1.1 413"), "{route}: {answer}");
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        let body: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        assert!(body["error"].is_string(), "{route}: {answer}");
    }

    // A multipart upload over the limit is 413 too, with a length or streamed.
    let big = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(big.path(), vec![b'x'; 150_000]).unwrap();
    let (ct, body) = multipart(&[("labels", "a,b")], Some(big.path()));
    // The server answers without reading the body and may close before the
    // client is done writing (a broken pipe), so write what it takes, then read.
    for chunked in [false, true] {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        let length = match chunked {
            false => format!("Content-Length: {}", body.len()),
            true => "Transfer-Encoding: chunked".to_string(),
        };
        write!(
            stream,
            "POST /v1/classify HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {ct}\r\n{length}\r\n\r\n"
        )
        .unwrap();
        for chunk in body.chunks(8192) {
            let mut framed = Vec::new();
            if chunked {
                framed.extend(format!("{:x}\r\n", chunk.len()).into_bytes());
            }
            framed.extend_from_slice(chunk);
            if chunked {
                framed.extend_from_slice(b"\r\n");
            }
            if stream.write_all(&framed).is_err() {
                break;
            }
        }
        if chunked {
            let _ = stream.write_all(b"0\r\n\r\n");
        }
        let answer = read_until_closed(&mut stream);
        assert!(answer.starts_with("HTTP/1.1 413"), "{length}: {answer}");
        assert!(answer.contains("{\"error\":"), "{length}: {answer}");
    }
}

#[test]
fn every_error_is_json() {
    // (413 is checked, as JSON, by a_declared_body_over_the_limit_is_refused_before_it_is_sent.)
    let s = start(&["--max-body", "100000"]);
    let u = |path: &str| format!("{}{path}", s.url);
    let cases: Vec<(&str, u16, Result<ureq::Response, ureq::Error>)> = vec![
        ("bad id", 400, ureq::get(&u("/v1/images/abc")).call()),
        (
            "bad thumbnail id",
            400,
            ureq::get(&u("/v1/images/abc/thumbnail")).call(),
        ),
        (
            "unknown image",
            404,
            ureq::get(&u("/v1/images/999999")).call(),
        ),
        ("unknown route", 404, ureq::get(&u("/nowhere")).call()),
        (
            "unknown API route",
            404,
            ureq::get(&u("/v1/nowhere")).call(),
        ),
        (
            "wrong method",
            405,
            ureq::request("DELETE", &u("/v1/search")).call(),
        ),
        (
            "wrong method on healthz",
            405,
            ureq::post(&u("/healthz")).send_bytes(b""),
        ),
        (
            "wrong content type",
            415,
            ureq::post(&u("/v1/embed"))
                .set("Content-Type", "text/plain")
                .send_string("{}"),
        ),
        (
            "malformed JSON",
            400,
            ureq::post(&u("/v1/embed"))
                .set("Content-Type", "application/json")
                .send_string("{not json"),
        ),
        (
            "JSON of the wrong shape",
            422,
            ureq::post(&u("/v1/embed")).send_json(serde_json::json!({ "texts": 5 })),
        ),
        (
            "not multipart",
            415,
            ureq::post(&u("/v1/classify"))
                .set("Content-Type", "application/json")
                .send_string("{}"),
        ),
        (
            "bad query",
            400,
            ureq::get(&u("/v1/search?q=x&k=abc")).call(),
        ),
    ];
    for (what, expected, result) in cases {
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{what}: transport error: {e}"),
        };
        assert_eq!(response.status(), expected, "{what}");
        assert_eq!(response.content_type(), "application/json", "{what}");
        if expected == 405 {
            assert!(
                response.header("Allow").is_some(),
                "{what}: no Allow header"
            );
        }
        let body: Value = response.into_json().unwrap();
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: {body}"
        );
    }
}

#[test]
fn blank_tokens_are_refused_at_start() {
    for (flag, env) in [
        (Some("   "), None),
        (None, Some("")),
        (Some(""), None),
        (None, Some(" ")),
        (Some(" s3cret "), None),
        // Too short to stand against guessing.
        (Some("s3cret"), None),
        (None, Some("s3cret")),
    ] {
        let index = tempfile::tempdir().unwrap();
        let mut cmd = seer();
        cmd.args([
            "serve",
            "--bind",
            "0.0.0.0:0",
            "--model",
            model_fixture("openclip-vit").to_str().unwrap(),
        ])
        .env("SEER_INDEX", index.path())
        .env_remove("SEER_TOKEN");
        if let Some(token) = flag {
            cmd.args(["--token", token]);
        }
        if let Some(token) = env {
            cmd.env("SEER_TOKEN", token);
        }
        // Bounded: a server that wrongly starts would serve forever.
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag:?} {env:?}: started: {stderr}");
        assert!(stderr.contains("token"), "{flag:?} {env:?}: {stderr}");
        assert!(
            !stderr.contains("without --token"),
            "{flag:?} {env:?}: taken for no token: {stderr}"
        );
    }
}

/// The status line of a raw GET with these extra header lines.
fn raw_get(addr: &str, path: &str, headers: &str) -> String {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let answer = read_until_closed(&mut stream);
    answer.lines().next().unwrap_or_default().to_string()
}

#[test]
fn without_a_token_only_loopback_names_and_pages_are_answered() {
    let s = start(&[]);
    let addr = s.url.trim_start_matches("http://");
    let port = addr.rsplit(':').next().unwrap();
    // DNS rebinding: a page of evil.example whose name now resolves to 127.0.0.1.
    let rebound = raw_get(
        addr,
        "/v1/images/1",
        &format!("Host: evil.example:{port}\r\n"),
    );
    assert!(rebound.starts_with("HTTP/1.1 403"), "{rebound}");
    let no_host = raw_get(addr, "/healthz", "");
    assert!(no_host.starts_with("HTTP/1.1 403"), "{no_host}");
    // A request another site's page makes.
    let cross = raw_get(
        addr,
        "/v1/images/1",
        &format!("Host: {addr}\r\nOrigin: http://evil.example\r\n"),
    );
    assert!(cross.starts_with("HTTP/1.1 403"), "{cross}");
    // A page on another port of this machine, from a browser that sends no
    // Sec-Fetch-Site: another origin all the same.
    let other_port = raw_get(
        addr,
        "/v1/images/1",
        &format!("Host: {addr}\r\nOrigin: http://localhost:1\r\n"),
    );
    assert!(other_port.starts_with("HTTP/1.1 403"), "{other_port}");
    for host in [addr.to_string(), format!("localhost:{port}")] {
        let fine = raw_get(
            addr,
            "/v1/images/1",
            &format!("Host: {host}\r\nOrigin: http://{host}\r\n"),
        );
        assert!(fine.starts_with("HTTP/1.1 200"), "{host}: {fine}");
    }
    // The refusal is a JSON error like any other.
    let (code, body) = json_of(
        ureq::get(&format!("{}/healthz", s.url))
            .set("Origin", "https://evil.example")
            .call(),
    );
    assert_eq!(code, 403);
    assert!(body["error"].is_string(), "{body}");

    // With a token, the token decides, whatever the name.
    let t = start(&["--token", TOKEN]);
    let addr = t.url.trim_start_matches("http://");
    let named = raw_get(
        addr,
        "/v1/images/1",
        &format!("Host: photos.example\r\nAuthorization: Bearer {TOKEN}\r\n"),
    );
    assert!(named.starts_with("HTTP/1.1 200"), "{named}");
}

#[test]
fn connections_past_the_cap_wait_for_a_free_slot() {
    use std::io::Write;
    let s = start(&["--max-connections", "1", "--header-timeout", "1"]);
    let addr = s.url.trim_start_matches("http://");
    // The one slot is taken by a connection that sends nothing...
    let mut first = std::net::TcpStream::connect(addr).unwrap();
    // ...so the next one is answered only once the header deadline closed it.
    let mut second = std::net::TcpStream::connect(addr).unwrap();
    write!(
        second,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let answer = read_until_closed(&mut second);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    first
        .set_read_timeout(Some(Duration::from_millis(1)))
        .unwrap();
    // Closed before the slot was freed, so its end is already here.
    let closed = match first.read(&mut [0u8; 16]) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    };
    assert!(
        closed,
        "the second connection was served while the first still held the only slot"
    );
}
