//! `seer serve` as clients meet it: every route, the security rules, limits,
//! backpressure, and parity with the command line.

mod common;

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use common::server::{seer, start};

use base64::Engine;
use seer_testkit::{model_fixture, shared_data};
use serde_json::Value;

/// Status and JSON body of a response, whatever the status.
fn json_of(r: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    let response = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = response.status();
    let body: Value = response.into_json().unwrap_or(Value::Null);
    (status, body)
}

fn multipart(fields: &[(&str, &str)], image: Option<&Path>) -> (String, Vec<u8>) {
    let boundary = "seer-test-boundary-7d1f";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes());
    }
    if let Some(path) = image {
        let name = path.file_name().unwrap().to_string_lossy();
        body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
        body.extend(std::fs::read(path).unwrap());
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn post_form(url: &str, fields: &[(&str, &str)], image: Option<&Path>) -> (u16, Value) {
    let (ct, body) = multipart(fields, image);
    json_of(ureq::post(url).set("Content-Type", &ct).send_bytes(&body))
}

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
    for (i, (_, body)) in cases
        .iter()
        .enumerate()
        .filter(|(i, _)| ![3, 5, 6].contains(i))
    {
        assert!(
            body["error"].is_string(),
            "case {i}: no error message: {body}"
        );
    }
    // Bodies over --max-body are refused once the limit is reached, without
    // reading the rest: the server may stop reading (the client sees a broken
    // pipe), so write what it takes and then read the answer.
    use std::io::Write;
    let addr = s.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "POST /v1/embed HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n").unwrap();
    for _ in 0..100 {
        if stream.write_all(&[b'a'; 8192]).is_err() {
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
    let s = start(&["--token", "s3cret"]);
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
            .set("Authorization", "Bearer s3cret")
            .call(),
    );
    assert_eq!(code, 200);
    assert_eq!(
        json_of(ureq::get(&format!("{}/metrics", s.url)).call()).0,
        401
    );
    assert_eq!(
        json_of(ureq::get(&format!("{}/healthz", s.url)).call()).0,
        200
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
    let s = start(&["--queue", "1", "--max-batch", "1", "--max-wait-ms", "0"]);
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
        "no request was refused although the queue holds 1"
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
        let code = match *method {
            "get" => json_of(ureq::get(&url).call()).0,
            _ => json_of(ureq::post(&url).send_bytes(b"")).0,
        };
        assert_ne!(code, 405, "{method} {path}");
        if !path.contains("{id}") {
            assert_ne!(code, 404, "{method} {path}");
        }
    }
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(documented, seer_server::openapi::ROUTES.len());
}
